-- The functions' database role: read and write rows, nothing more. The migrations run
-- as the schema's owner; goods-worker, the admitter and the operator CLI log in as a
-- user granted this role (`dropgate db migrate --runtime-user`), which can neither
-- change the schema nor drop a table, so a compromised function cannot rewrite the
-- rules it is held to. A role is shared by every database of a server: creating it
-- twice (another database, a concurrent migration) is not an error.
do $$
begin
    create role dropgate_runtime nologin;
exception
    when duplicate_object or unique_violation then null;
end
$$;
-- Nobody but the owner creates objects here (PostgreSQL 15 made that the default;
-- older servers granted it to everyone).
revoke create on schema public from public;
grant usage on schema public to dropgate_runtime;
grant select, insert, update, delete on all tables in schema public to dropgate_runtime;
grant usage, select, update on all sequences in schema public to dropgate_runtime;
-- Which migrations ran is the owner's to write; the functions may read it.
revoke insert, update, delete on _sqlx_migrations from dropgate_runtime;
-- Tables and sequences later migrations create get the same grants.
alter default privileges in schema public
    grant select, insert, update, delete on tables to dropgate_runtime;
alter default privileges in schema public
    grant usage, select, update on sequences to dropgate_runtime;
