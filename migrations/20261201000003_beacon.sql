-- An event may name a public randomness beacon round when it is created; the round's
-- value is supplied when the event opens and mixed into the key every draw derives
-- from, so nobody, not even whoever holds the seed, knows an outcome before that
-- round is published.
alter table events add column beacon_round text;
alter table events add column beacon_value text;
alter table events add constraint events_beacon_value_check
    check (beacon_value is null or beacon_round is not null);
-- Nothing is drawn under a named beacon without its value.
alter table events add constraint events_beacon_drawn_check
    check (beacon_round is null or beacon_value is not null or decisions_made = 0);
