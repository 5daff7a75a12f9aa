-- The seed is kept sealed (encrypted under the services' seed key) until the close,
-- so reading this table, or a backup of it, no longer tells who will win. `seed`
-- holds it in the clear from the moment it is revealed. Events created before this
-- migration keep their clear seed; they have no sealed one.
alter table events add column seed_sealed text;
alter table events alter column seed drop not null;
alter table events add constraint events_seed_kept_check
    check (seed is not null or seed_sealed is not null);
-- A sealed seed is in the clear only once revealed.
alter table events add constraint events_seed_hidden_check
    check (seed_sealed is null or seed is null or seed_revealed_at is not null);
