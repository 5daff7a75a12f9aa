-- The outbox also carries each batch's winners message (topic `winners`, for a
-- downstream checkout), committed with the draws like the results are.
alter table outbox add column stream text not null default 'results';
alter table outbox add constraint outbox_stream_check check (stream in ('results', 'winners'));
