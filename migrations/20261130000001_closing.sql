-- Closing is a phase of its own: entry and admission stop at once and everyone still
-- in line is told `closed`, while the users already admitted are still drawn. Only
-- then is the event closed and its seed revealed; nothing is drawn after that.
alter table events drop constraint events_state_check;
alter table events add constraint events_state_check
    check (state in ('scheduled', 'open', 'paused', 'sold_out', 'closing', 'closed'));
-- When closing began: the admitter stops waiting for undecided admissions a while
-- after it (its close drain timeout) and closes the event anyway.
alter table events add column closing_at timestamptz;
-- The seed is public exactly when the event is closed.
alter table events add constraint events_seed_revealed_check
    check ((state = 'closed') = (seed_revealed_at is not null));

-- Users who reached a final state without a draw: told `sold_out` or `closed` while
-- still in line (the admitter records them here before it tells them), and
-- admissions that reached the goods side after the seed was revealed (`closed`,
-- never drawn). With `draws`, PostgreSQL knows every decided user's final state, and
-- a user recorded here is never drawn afterwards.
create table final_states (
    event_id     text        not null,
    platform_id  text        not null,
    user_id      text        not null,
    ticket       bigint      not null,
    state        text        not null,
    decided_at   timestamptz not null default now(),
    constraint final_states_pkey primary key (event_id, platform_id, user_id),
    constraint final_states_event_fkey foreign key (event_id) references events (event_id),
    constraint final_states_state_check check (state in ('sold_out', 'closed'))
);

-- The highest ticket the admitter has seen handed out, recorded before it admits any
-- user up to it: a Redis that lost recent writes has its ticket counter raised back
-- above it, so no ticket that reached the draw is ever handed out again.
alter table events add column tickets_issued bigint not null default 0;
