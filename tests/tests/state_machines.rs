//! Core's state machines and the code that moves state agree, pair by pair: every Lua
//! script that writes a user's state runs against real Redis for every starting state
//! and is compared with `UserState::step` (or `UserState::record_outcome` for recorded
//! draws); the scripts, the admitter and the goods SQL that depend on an event's state
//! are run for every `EventState` and compared with `EventState`'s rules. The
//! admitter's own writes (the sold-out mark, the token bucket) are made only by the
//! lease holder, and the stock left only ever goes down.

use dropgate_core::{
    DrawResult, EventConfig, EventId, EventSeed, EventState, MESSAGE_VERSION, Outcome, Step,
    UserKey, UserRecord, UserState,
};
use dropgate_functions::admitter::Admitter;
use dropgate_functions::config::TopicArgs;
use dropgate_functions::goods_worker::store::record_batch;
use dropgate_functions::ops_server::Readiness;
use dropgate_functions::queue::RedisConn;
use dropgate_functions::queue::scripts::admit::{AdmitReply, AdmitRequest, AdmitScript};
use dropgate_functions::queue::scripts::apply_result::{Applied, ApplyResultScript};
use dropgate_functions::queue::scripts::enter::EnterScript;
use dropgate_functions::queue::scripts::lease::{Lease, LeaseScript};
use dropgate_functions::queue::scripts::mark_sold_out::{MarkSoldOutReply, MarkSoldOutScript};
use dropgate_functions::queue::scripts::retick::{RetickScript, Reticked};
use dropgate_functions::queue::scripts::sweep::{SweepReply, SweepScript};
use dropgate_functions::queue::{EventKeys, EventMeta, LineEntry, Lookup, QueueStore};
use dropgate_tests::TestStack;
use dropgate_tests::clock::now_s;
use dropgate_tools::events;
use redis::AsyncCommands;

const TICKET: u64 = 7;

/// One event in Redis, with this test holding its admitter lease.
struct Event {
    store: QueueStore,
    redis: RedisConn,
    event: EventId,
    keys: EventKeys,
    lease_value: String,
}

impl Event {
    async fn new(stack: &TestStack, state: EventState) -> Self {
        let store = QueueStore::connect(&stack.env.redis())
            .await
            .expect("redis");
        let event = EventId::parse(TestStack::unique("sm")).expect("valid");
        let meta = EventMeta {
            state,
            rate_per_s: 100,
            abandon_timeout_ms: 60_000,
            opens_at_ms: 0,
            allowed_platforms: Vec::new(),
        };
        store.put_event_meta(&event, &meta).await.expect("meta");
        let keys = EventKeys::new(&event);
        let mut redis = store.connection();
        let Lease::Held(token) = LeaseScript::default()
            .take(&mut redis, &keys, "test", 60_000)
            .await
            .expect("lease")
        else {
            panic!("a fresh event's lease is free");
        };
        Self {
            lease_value: Lease::value("test", token),
            store,
            redis,
            event,
            keys,
        }
    }

    fn user() -> UserKey {
        UserKey::parse("shop", "u1").expect("valid")
    }

    /// Puts the user in `state`, queued as a waiting user would be.
    async fn place(&mut self, state: UserState, last_seen_s: u64) {
        let record = UserRecord {
            state,
            ticket: TICKET,
            last_seen_s,
            decided: None,
        };
        let entry = LineEntry {
            ticket: TICKET,
            member: Self::user().member(),
        };
        let _: () = redis::pipe()
            .hset(self.keys.users(), &entry.member, record.encode())
            .del(self.keys.line())
            .rpush(self.keys.line(), entry.encode())
            .del(self.keys.admitting())
            .query_async(&mut self.redis)
            .await
            .expect("place");
    }

    async fn record(&mut self) -> UserRecord {
        let text: String = self
            .redis
            .hget(self.keys.users(), Self::user().member())
            .await
            .expect("HGET");
        UserRecord::decode(&text).expect("record")
    }

    /// Enters users `shop:early1` to `shop:early<count>`, in that order.
    async fn enter_early(&self, count: usize) -> Vec<UserKey> {
        let users: Vec<UserKey> = (1..=count)
            .map(|n| UserKey::parse("shop", &format!("early{n}")).expect("valid"))
            .collect();
        for user in &users {
            self.store
                .enter(&self.event, user, now_s())
                .await
                .expect("enter");
        }
        users
    }

    /// The members waiting in line, head first (stale entries left out).
    async fn members_in_line(&self) -> Vec<String> {
        self.store
            .in_line(&self.event)
            .await
            .expect("line")
            .into_iter()
            .map(|place| place.member)
            .collect()
    }

    /// Entries in line, stale ones included.
    async fn line_length(&mut self) -> u64 {
        self.redis.llen(self.keys.line()).await.expect("LLEN")
    }

    async fn admitting(&mut self) -> bool {
        let score: Option<u64> = self
            .redis
            .zscore(self.keys.admitting(), Self::user().member())
            .await
            .expect("ZSCORE");
        score.is_some()
    }

    async fn admit(&mut self, now_s: u64, abandon_s: u64) -> AdmitReply {
        self.admit_up_to(now_s, abandon_s, u64::MAX).await
    }

    async fn admit_up_to(&mut self, now_s: u64, abandon_s: u64, highest_ticket: u64) -> AdmitReply {
        let request = AdmitRequest {
            lease_value: &self.lease_value,
            want: 10,
            now_s,
            abandon_s,
            look_budget: 10,
            bucket_after: (0, 0),
            highest_ticket,
        };
        AdmitScript::default()
            .call(&mut self.redis, &self.keys, request)
            .await
            .expect("admit")
    }
}

/// What a script did to the record compared with what core says it should do.
fn expect_move(rule: Result<Step, dropgate_core::IllegalTransition>, from: UserState) -> UserState {
    match rule {
        Ok(Step::Moved(to)) => to,
        _ => from,
    }
}

/// A ticket PostgreSQL has not recorded as issued is never admitted (a Redis that
/// lost writes could have handed it out before), and an admitted user is in flight
/// until a result, of whatever kind, lands.
#[tokio::test(flavor = "multi_thread")]
async fn admission_stops_above_the_recorded_tickets_and_tracks_the_user_until_a_result() {
    let stack = TestStack::shared().await;
    let mut event = Event::new(stack, EventState::Open).await;
    let member = Event::user().member();
    event.place(UserState::Waiting, now_s()).await;
    let reply = event.admit_up_to(now_s(), 60, TICKET - 1).await;
    assert_eq!(
        reply,
        AdmitReply::Done {
            admitted: 0,
            expired: 0
        }
    );
    assert_eq!(event.record().await.state, UserState::Waiting);
    let queued = event.store.in_line(&event.event).await.expect("line");
    assert_eq!(
        queued
            .iter()
            .map(|place| (place.ticket, place.member.as_str()))
            .collect::<Vec<_>>(),
        [(TICKET, member.as_str())],
        "a ticket not yet recorded stays in line"
    );

    let reply = event.admit_up_to(now_s(), 60, TICKET).await;
    assert_eq!(
        reply,
        AdmitReply::Done {
            admitted: 1,
            expired: 0
        }
    );
    let in_flight: Option<u64> = event
        .redis
        .zscore(event.keys.inflight(), &member)
        .await
        .expect("ZSCORE");
    assert!(in_flight.is_some(), "an admitted user is in flight");

    let result = DrawResult {
        version: MESSAGE_VERSION,
        event_id: event.event.clone(),
        user: Event::user(),
        ticket: TICKET,
        outcome: Outcome::Closed,
        decision_order: 0,
        stock_left: 5,
        decided_at_ms: 1_000,
    };
    ApplyResultScript::default()
        .apply_all(&mut event.redis, std::slice::from_ref(&result))
        .await
        .expect("apply");
    let in_flight: Option<u64> = event
        .redis
        .zscore(event.keys.inflight(), &member)
        .await
        .expect("ZSCORE");
    assert_eq!(
        in_flight, None,
        "a user with a result is no longer in flight"
    );
    assert_eq!(event.record().await.state, UserState::Closed);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admit_script_moves_exactly_the_users_step_allows() {
    let stack = TestStack::shared().await;
    let mut event = Event::new(stack, EventState::Open).await;
    let now = now_s();
    // (the target the script aims at, how long ago the user was seen)
    for (target, seen_ago) in [(UserState::Admitted, 0), (UserState::Expired, 3_600)] {
        for from in UserState::ALL {
            event.place(from, now - seen_ago).await;
            let reply = event.admit(now, 60).await;
            let expected = expect_move(from.step(target), from);
            let moved = expected != from;
            assert_eq!(
                event.record().await.state,
                expected,
                "admit of a {from} user aiming at {target}"
            );
            assert_eq!(
                reply,
                AdmitReply::Done {
                    admitted: u64::from(moved && target == UserState::Admitted),
                    expired: u64::from(moved && target == UserState::Expired),
                },
                "{from} -> {target}"
            );
            assert_eq!(
                event.admitting().await,
                moved && target == UserState::Admitted,
                "{from} -> {target}: only an admitted user is sent to the draw"
            );
            let expiring: Option<u64> = event
                .redis
                .zscore(event.keys.expiring(), Event::user().member())
                .await
                .expect("ZSCORE");
            assert_eq!(
                expiring.is_some(),
                moved && target == UserState::Expired,
                "{from} -> {target}: only an expired user waits to be recorded as such"
            );
            let _: () = event.redis.del(event.keys.expiring()).await.expect("DEL");
            assert_eq!(
                event.line_length().await,
                0,
                "{from}: the head of the line is passed"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sweeps_move_exactly_the_users_step_allows() {
    let stack = TestStack::shared().await;
    let head = [LineEntry {
        ticket: TICKET,
        member: Event::user().member(),
    }
    .encode()];
    for (event_state, to) in [
        (EventState::SoldOut, UserState::SoldOut),
        (EventState::Closing, UserState::Closed),
    ] {
        let mut event = Event::new(stack, event_state).await;
        for from in UserState::ALL {
            event.place(from, now_s()).await;
            let reply = SweepScript::default()
                .call(&mut event.redis, &event.keys, &event.lease_value, to, &head)
                .await
                .expect("sweep");
            let expected = expect_move(from.step(to), from);
            assert_eq!(
                event.record().await.state,
                expected,
                "sweep to {to} of a {from} user"
            );
            assert_eq!(
                reply,
                SweepReply::Swept(u64::from(expected != from)),
                "{from} -> {to}"
            );
            assert_eq!(
                event.line_length().await,
                0,
                "{from}: a swept user has left the line"
            );
        }
        // The caller read another head (the line moved since): nobody it did not
        // record is told anything or taken off the line.
        event.place(UserState::Waiting, now_s()).await;
        let other = [LineEntry {
            ticket: TICKET + 1,
            member: Event::user().member(),
        }
        .encode()];
        let reply = SweepScript::default()
            .call(
                &mut event.redis,
                &event.keys,
                &event.lease_value,
                to,
                &other,
            )
            .await
            .expect("sweep");
        assert_eq!(reply, SweepReply::Swept(0), "another head: nobody moved");
        assert_eq!(event.record().await.state, UserState::Waiting);
        assert_eq!(event.line_length().await, 1, "another head: nobody leaves");
        let reply = SweepScript::default()
            .call(&mut event.redis, &event.keys, "someone|else", to, &head)
            .await
            .expect("sweep");
        assert_eq!(reply, SweepReply::NotLeader);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_recorded_result_lands_exactly_as_record_outcome_says() {
    results_land_as_core_says(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_correction_from_postgresql_lands_exactly_as_correct_to_says() {
    results_land_as_core_says(true).await;
}

/// Every recorded outcome on every starting record, through apply_result as a result
/// off the bus (`record_outcome`) or as the admitter's correction (`correct_to`).
async fn results_land_as_core_says(correction: bool) {
    let stack = TestStack::shared().await;
    let mut event = Event::new(stack, EventState::Open).await;
    let script = ApplyResultScript::default();
    for outcome in [
        Outcome::Won,
        Outcome::Lost,
        Outcome::SoldOut,
        Outcome::Closed,
        Outcome::Expired,
    ] {
        let to = outcome.user_state();
        for from in UserState::ALL {
            event.place(from, now_s()).await;
            let result = DrawResult {
                version: MESSAGE_VERSION,
                event_id: event.event.clone(),
                user: Event::user(),
                ticket: TICKET,
                outcome,
                decision_order: 1,
                stock_left: 5,
                decided_at_ms: 1_000,
            };
            let results = std::slice::from_ref(&result);
            let (applied, rule) = if correction {
                let applied = script.correct_all(&mut event.redis, results).await;
                (applied, from.correct_to(to))
            } else {
                let applied = script.apply_all(&mut event.redis, results).await;
                (applied, from.record_outcome(to))
            };
            let applied = applied.expect("apply");
            let kept = event.record().await;
            match (rule, &applied[..]) {
                (Ok(Step::Moved(_)), [Applied::New { .. }]) => {
                    assert_eq!(kept.state, to, "{from} -> {to}");
                    assert_eq!(kept.ticket, TICKET);
                    assert!(kept.decided.is_some(), "{from} -> {to}: decision kept");
                }
                (Ok(Step::Repeated(_)), [Applied::Duplicate { .. }])
                | (Err(_), [Applied::Conflict { .. }]) => {
                    assert_eq!(kept.state, from, "{from} -> {to} must not be written");
                }
                (rule, applied) => {
                    panic!("{from} -> {to}: core says {rule:?}, the script did {applied:?}")
                }
            }
            if from == UserState::Waiting {
                // Drawn while Redis still had them waiting: their line entry stays
                // but is stale, and the head passes it without admitting them.
                let before = event.record().await;
                let reply = event.admit(now_s(), 60).await;
                assert_eq!(
                    reply,
                    AdmitReply::Done {
                        admitted: 0,
                        expired: 0
                    },
                    "a drawn user is never admitted again ({to})"
                );
                assert_eq!(event.record().await, before, "{to}: record untouched");
                assert_eq!(event.line_length().await, 0, "the stale entry is dropped");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn entering_and_admitting_follow_the_event_state() {
    let stack = TestStack::shared().await;
    for state in EventState::ALL {
        let mut event = Event::new(stack, state).await;
        let lookup = EnterScript::default()
            .call(&mut event.redis, &event.keys, &Event::user(), now_s())
            .await
            .expect("enter");
        match lookup {
            Lookup::Found(standing) => {
                assert!(state.accepts_entries(), "a {state} event let a user in");
                assert!(standing.created);
                assert_eq!(standing.record.state, UserState::Waiting);
                assert_eq!(standing.event_state, state);
            }
            Lookup::SoldOut => assert_eq!(state, EventState::SoldOut),
            Lookup::Closed => assert!(
                matches!(state, EventState::Closing | EventState::Closed),
                "a {state} event answered closed"
            ),
            other => panic!("a {state} event answered {other:?}"),
        }
        event.place(UserState::Waiting, now_s()).await;
        let reply = event.admit(now_s(), 60).await;
        if state.admits() {
            assert_eq!(
                reply,
                AdmitReply::Done {
                    admitted: 1,
                    expired: 0
                }
            );
        } else {
            assert_eq!(reply, AdmitReply::NotAdmitting, "a {state} event");
            assert_eq!(event.record().await.state, UserState::Waiting);
            let queued = event.store.in_line(&event.event).await.expect("line");
            assert_eq!(queued.len(), 1, "a {state} event keeps its line");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sold_out_mark_follows_event_step_and_only_the_lease_holder_writes_it() {
    let stack = TestStack::shared().await;
    for state in EventState::ALL {
        let mut event = Event::new(stack, state).await;
        let script = MarkSoldOutScript::default();
        let refused = script
            .call(&mut event.redis, &event.keys, "ex-leader|1")
            .await
            .expect("mark");
        assert_eq!(refused, MarkSoldOutReply::NotLeader, "a {state} event");
        let stored: String = event
            .redis
            .hget(event.keys.meta(), "state")
            .await
            .expect("HGET");
        assert_eq!(
            stored,
            state.as_str(),
            "an ex-leader changed a {state} event"
        );

        let reply = script
            .call(&mut event.redis, &event.keys, &event.lease_value)
            .await
            .expect("mark");
        let stored: String = event
            .redis
            .hget(event.keys.meta(), "state")
            .await
            .expect("HGET");
        match state.step(EventState::SoldOut) {
            Ok(to) => {
                assert_eq!(reply, MarkSoldOutReply::Marked, "a {state} event");
                assert_eq!(stored, to.as_str());
            }
            Err(_) => {
                assert_eq!(reply, MarkSoldOutReply::NotAllowed, "a {state} event");
                assert_eq!(stored, state.as_str());
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_lease_holder_carries_the_token_bucket() {
    let stack = TestStack::shared().await;
    let mut event = Event::new(stack, EventState::Open).await;
    let bucket = |redis: &mut RedisConn, keys: &EventKeys| {
        let key = keys.bucket();
        let mut redis = redis.clone();
        async move {
            let parts: (Option<u64>, Option<u64>) =
                redis.hget(&key, &["milli", "at_ms"]).await.expect("HGET");
            parts
        }
    };
    event.place(UserState::Waiting, now_s()).await;
    // The leader asked for 3 tokens (7,000 thousandths left) and found one user: the
    // two it did not use go back.
    let lease_value = event.lease_value.clone();
    let leader = AdmitRequest {
        lease_value: &lease_value,
        want: 3,
        now_s: now_s(),
        abandon_s: 60,
        look_budget: 10,
        bucket_after: (7_000, 1_234),
        highest_ticket: u64::MAX,
    };
    let reply = AdmitScript::default()
        .call(&mut event.redis, &event.keys, leader)
        .await
        .expect("admit");
    assert_eq!(
        reply,
        AdmitReply::Done {
            admitted: 1,
            expired: 0
        }
    );
    assert_eq!(
        bucket(&mut event.redis, &event.keys).await,
        (Some(9_000), Some(1_234))
    );

    // An ex-leader whose lease lapsed mid-tick writes nothing, bucket included.
    event.place(UserState::Waiting, now_s()).await;
    let stale = AdmitRequest {
        lease_value: "ex-leader|1",
        bucket_after: (1_000_000, 99),
        ..leader
    };
    let reply = AdmitScript::default()
        .call(&mut event.redis, &event.keys, stale)
        .await
        .expect("admit");
    assert_eq!(reply, AdmitReply::NotLeader);
    assert_eq!(
        bucket(&mut event.redis, &event.keys).await,
        (Some(9_000), Some(1_234))
    );
    assert_eq!(event.record().await.state, UserState::Waiting);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_stock_left_never_goes_back_up() {
    let stack = TestStack::shared().await;
    let event = Event::new(stack, EventState::Open).await;
    let meta = event.keys.meta();
    event
        .store
        .put_draw_limits(&event.event, 100, 400)
        .await
        .expect("limits");
    // The event admin keeps writing its older figure while result-relay lowers the
    // stock unit by unit: the stored figure must never climb back above the latest.
    let store = event.store.clone();
    let id = event.event.clone();
    let admin = tokio::spawn(async move {
        for _ in 0..2_000 {
            store.put_draw_limits(&id, 100, 400).await.expect("limits");
        }
    });
    let mut redis = event.redis.clone();
    for stock in (0..400u64).rev() {
        let _: () = redis.hset(&meta, "stock_left", stock).await.expect("HSET");
        let stored: u64 = redis.hget(&meta, "stock_left").await.expect("HGET");
        assert!(
            stored <= stock,
            "stock went back up from {stock} to {stored}"
        );
    }
    admin.await.expect("admin task");
    let stored: u64 = redis.hget(&meta, "stock_left").await.expect("HGET");
    assert_eq!(stored, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admitter_marks_sold_out_only_where_event_step_allows() {
    let stack = TestStack::shared().await;
    let (waiting_topic, results_topic) = stack.fresh_topics(1).expect("topics");
    for state in EventState::ALL {
        let mut event = Event::new(stack, state).await;
        // Another instance's lease would keep the admitter out: free it.
        let _: () = event.redis.del(event.keys.leader()).await.expect("DEL");
        event
            .store
            .put_draw_limits(&event.event, 100, 0)
            .await
            .expect("limits");
        let args = dropgate_tests::admitter::args_for(
            &stack.env.redis_url,
            &stack.env.database_url,
            &stack.env.kafka_brokers,
            TopicArgs::new(waiting_topic.clone(), results_topic.clone()),
            &event.event,
            stack.env.seed_key_args(),
        );
        let mut admitter = Admitter::connect(&args, Readiness::default())
            .await
            .expect("admitter");
        admitter.tick_once().await.expect("tick");
        let stored: String = event
            .redis
            .hget(event.keys.meta(), "state")
            .await
            .expect("HGET");
        let expected = state.step(EventState::SoldOut).unwrap_or(state);
        assert_eq!(
            stored,
            expected.as_str(),
            "a {state} event whose stock is gone"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_draw_marks_sold_out_only_where_event_step_allows() {
    let stack = TestStack::shared().await;
    let (pool, _) = stack.fresh_database().await.expect("database");
    let seed_key = stack.env.seed_key().expect("seed key");
    for state in EventState::ALL {
        let event = EventId::parse(TestStack::unique("sql")).expect("valid");
        let mut config = EventConfig::new(1, 0);
        config.win_probability = 1.0;
        events::create(
            &pool,
            &event,
            &config,
            &EventSeed::from_bytes([3; 32]),
            &seed_key,
        )
        .await
        .expect("create");
        // Put the row in `state` directly: this checks the SQL's rule, not the way
        // there.
        sqlx::query(
            "update events set state = $2,
                    seed_revealed_at = case when $3 then now() end
              where event_id = $1",
        )
        .bind(event.as_str())
        .bind(state.as_str())
        .bind(state.seed_revealed())
        .execute(&pool)
        .await
        .expect("state");
        let admitted = dropgate_core::Admitted {
            version: MESSAGE_VERSION,
            event_id: event.clone(),
            user: Event::user(),
            ticket: 1,
            admitted_at_ms: 0,
        };
        let batch = record_batch(&pool, &seed_key, &event, &[admitted], 1_000, || {})
            .await
            .expect("batch")
            .expect("decided");
        let stored = events::load(&pool, &event).await.expect("load");
        let draws: i64 = sqlx::query_scalar("select count(*) from draws where event_id = $1")
            .bind(event.as_str())
            .fetch_one(&pool)
            .await
            .expect("count");
        if !state.draws() {
            // The seed is public: nobody is drawn any more, the admission is recorded
            // closed and the stock stays.
            assert_eq!(draws, 0, "a draw in a {state} event");
            assert_eq!(stored.stock_left, 1, "a {state} event's stock");
            assert_eq!(batch.decided.get(&Outcome::Closed), Some(&1));
            assert_eq!(stored.state, state);
            continue;
        }
        assert_eq!(draws, 1, "a {state} event draws");
        assert_eq!(stored.stock_left, 0, "a certain win takes the only unit");
        let expected = state.step(EventState::SoldOut).unwrap_or(state);
        assert_eq!(
            stored.state, expected,
            "a {state} event whose last unit went"
        );
    }
}

/// The pre-queue shuffle cut short after its first steps (the operator's command
/// stopped): while its plan is in Redis nobody is admitted or swept off the line (the
/// steps address line positions), and the next shuffle finishes the same plan rather
/// than shuffling the half-shuffled line again. Every user ends with one place.
#[tokio::test(flavor = "multi_thread")]
async fn a_shuffle_cut_short_is_finished_from_its_own_plan() {
    let stack = TestStack::shared().await;
    let mut event = Event::new(stack, EventState::Open).await;
    let users = event.enter_early(6).await;
    event
        .store
        .plan_shuffle(&event.event, |members| members.reverse())
        .await
        .expect("plan");
    let ttl: i64 = event
        .redis
        .ttl(event.keys.shuffle_plan())
        .await
        .expect("TTL");
    assert_eq!(ttl, -1, "a whole plan never expires");
    let first = RetickScript::default()
        .call(&mut event.redis, &event.keys, 2)
        .await
        .expect("two steps");
    assert_eq!(first, Reticked { moved: 2, left: 4 });

    assert_eq!(
        event.admit(now_s(), 60).await,
        AdmitReply::Done {
            admitted: 0,
            expired: 0
        },
        "nobody admitted from a line half shuffled"
    );
    let head: Vec<String> = event
        .redis
        .lrange(event.keys.line(), 0, -1)
        .await
        .expect("LRANGE");
    let swept = SweepScript::default()
        .call(
            &mut event.redis,
            &event.keys,
            &event.lease_value,
            UserState::Closed,
            &head,
        )
        .await
        .expect("sweep");
    assert_eq!(swept, SweepReply::Swept(0), "nobody swept meanwhile");
    assert_eq!(event.line_length().await, 6);

    let moved = event
        .store
        .shuffle_line(&event.event, |_| {
            panic!("a plan is in Redis: the line is not shuffled again")
        })
        .await
        .expect("finish");
    assert_eq!(moved, 4, "the rest of the plan");
    let line = event.store.in_line(&event.event).await.expect("line");
    let expected: Vec<(u64, String)> = users
        .iter()
        .rev()
        .zip(1..)
        .map(|(user, ticket)| (ticket, user.member()))
        .collect();
    assert_eq!(
        line.iter()
            .map(|place| (place.ticket, place.member.clone()))
            .collect::<Vec<_>>(),
        expected,
        "the planned order, each user once, with the line's tickets"
    );
    assert_eq!(
        event.admit(now_s(), 60).await,
        AdmitReply::Done {
            admitted: 6,
            expired: 0
        },
        "once the plan is applied the line moves again"
    );
}

/// Two operators open the same pre-queue at once, each with its own order: only one
/// plan is applied, whole, and nobody ends with two places or none. A third, later,
/// finds the line shuffled and leaves it as it is.
#[tokio::test(flavor = "multi_thread")]
async fn two_shuffles_at_once_apply_one_plan() {
    let stack = TestStack::shared().await;
    let event = Event::new(stack, EventState::Scheduled).await;
    let users = event.enter_early(40).await;
    let reversed = event
        .store
        .shuffle_line(&event.event, |members| members.reverse());
    let rotated = event
        .store
        .shuffle_line(&event.event, |members| members.rotate_left(7));
    let (first, second) = tokio::join!(reversed, rotated);
    let moved = first.expect("first shuffle") + second.expect("second shuffle");
    assert_eq!(moved, 40, "every user moved once, by one of the two");

    let line = event.members_in_line().await;
    let arrival: Vec<String> = users.iter().map(UserKey::member).collect();
    let mut by_reversal = arrival.clone();
    by_reversal.reverse();
    let mut by_rotation = arrival;
    by_rotation.rotate_left(7);
    assert!(
        line == by_reversal || line == by_rotation,
        "one whole plan, not a mix: {line:?}"
    );

    let again = event
        .store
        .shuffle_line(&event.event, |_| {
            panic!("a shuffled line is not planned again")
        })
        .await
        .expect("a late shuffle");
    assert_eq!(again, 0);
    let after = event.members_in_line().await;
    assert_eq!(after, line, "the order stands");
}
