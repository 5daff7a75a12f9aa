-- Results committed with their draws and published afterwards: a worker that dies
-- between commit and publish leaves rows here, and the re-send loop delivers them.
create table outbox (
    outbox_id    bigserial   not null,
    event_id     text        not null,
    message_key  text        not null,
    payload      bytea       not null,
    created_at   timestamptz not null default now(),
    sent_at      timestamptz,
    constraint outbox_pkey primary key (outbox_id),
    constraint outbox_event_fkey foreign key (event_id) references events (event_id)
);

-- The re-send loop scans only unsent rows, oldest first.
create index outbox_unsent_idx on outbox (outbox_id) where sent_at is null;
