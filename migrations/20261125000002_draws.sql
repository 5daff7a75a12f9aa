-- One draw per user per event, ever (draws_pkey): a redelivered admission finds its
-- row and re-announces the recorded outcome instead of drawing again.
create table draws (
    event_id        text        not null,
    platform_id     text        not null,
    user_id         text        not null,
    ticket          bigint      not null,
    -- The u64 draw value stored bit-for-bit in a signed bigint (values >= 2^63 read
    -- back negative); `dropgate event export` and verify convert it back.
    draw_value      bigint      not null,
    outcome         text        not null,
    decision_order  bigint      not null,
    decided_at      timestamptz not null default now(),
    constraint draws_pkey primary key (event_id, platform_id, user_id),
    constraint draws_event_fkey foreign key (event_id) references events (event_id),
    constraint draws_decision_order_key unique (event_id, decision_order),
    constraint draws_outcome_check check (outcome in ('won', 'lost', 'sold_out'))
);

-- Winners export and the oversell check read only the winners.
create index draws_winners_idx on draws (event_id, decision_order) where outcome = 'won';
