-- One row per drop. stock_left is decremented by the goods worker with a guarded
-- update inside the same transaction that records the draws, so it can never go
-- below zero (events_stock_left_check) nor above the total.
create table events (
    event_id              text        not null,
    platform_scope        text,
    stock_total           integer     not null,
    stock_left            integer     not null,
    win_probability       double precision not null,
    admission_rate_per_s  integer     not null,
    max_in_flight         integer     not null,
    opens_at              timestamptz not null,
    closes_at             timestamptz,
    queue_mode            text        not null default 'fifo',
    abandon_timeout_ms    bigint      not null,
    -- The seed decides every draw; it stays secret until the event closes, when
    -- seed_revealed_at is set and the seed may be published. Its SHA-256 is public
    -- from creation.
    seed                  text        not null,
    seed_commitment       text        not null,
    seed_revealed_at      timestamptz,
    -- The event-wide decision order: the goods worker takes the next numbers for a
    -- batch while holding the event row's lock, so orders are gap-free and unique.
    decisions_made        bigint      not null default 0,
    state                 text        not null default 'scheduled',
    created_at            timestamptz not null default now(),
    updated_at            timestamptz not null default now(),
    constraint events_pkey primary key (event_id),
    constraint events_stock_total_check check (stock_total > 0),
    constraint events_stock_left_check check (stock_left >= 0 and stock_left <= stock_total),
    constraint events_win_probability_check check (win_probability > 0 and win_probability <= 1),
    constraint events_admission_rate_check check (admission_rate_per_s > 0),
    constraint events_max_in_flight_check check (max_in_flight > 0),
    constraint events_window_check check (closes_at is null or closes_at > opens_at),
    constraint events_queue_mode_check check (queue_mode in ('fifo', 'randomized_pre_queue')),
    constraint events_state_check check (state in ('scheduled', 'open', 'paused', 'sold_out', 'closed')),
    constraint events_seed_commitment_check check (seed_commitment ~ '^[0-9a-f]{64}$'),
    constraint events_seed_check check (seed ~ '^[0-9a-f]{64}$')
);
