//! `dropgate demo` end to end in one process: queue-api, the admitter, two
//! goods-workers and result-relay run as tasks against the test stack (topics, database
//! and event of this test's own), and the crowd drives a few hundred users through the
//! real HTTP API until each has a final state, then closes and verifies the event.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use dropgate_functions::admitter::{Admitter, AdmitterArgs};
use dropgate_functions::auth::dev::DevKeys;
use dropgate_functions::config::{DatabaseArgs, KafkaArgs, RedisArgs, TopicArgs};
use dropgate_functions::goods_worker::{GoodsArgs, GoodsWorker};
use dropgate_functions::ops_server::{OpsArgs, Readiness};
use dropgate_functions::queue_api::Application;
use dropgate_functions::result_relay::{Relay, RelayArgs};
use dropgate_tests::TestStack;
use dropgate_tests::api::default_args;
use dropgate_tools::demo::{self, DemoArgs, Verdict};
use dropgate_tools::events;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

/// The four functions as tasks; stopped when dropped, so a failing test leaves
/// nothing running.
struct Functions {
    api_url: String,
    /// queue-api's ops port: its /metrics renders every function's metrics here, since
    /// they share the process's recorder.
    ops_url: String,
    stop: watch::Sender<bool>,
    stop_api: Option<oneshot::Sender<()>>,
    tasks: Vec<JoinHandle<Result<()>>>,
}

impl Functions {
    /// Starts queue-api (trusting the stack's dev key, as `dropgate local up` does),
    /// an admitter serving only `event`, two goods-workers on `database_url` and a
    /// result-relay.
    async fn start(stack: &TestStack, event: &str, database_url: &str) -> Result<Self> {
        let (waiting_queue, results) = stack.fresh_topics(3)?;
        let kafka = KafkaArgs::brokers(stack.env.kafka_brokers.clone());
        let topics = TopicArgs::new(waiting_queue, results);
        let redis = RedisArgs::url(stack.env.redis_url.clone());
        let ops = OpsArgs {
            health_addr: "127.0.0.1:0".parse()?,
        };
        let (stop, stopped) = watch::channel(false);
        let mut functions = Self {
            api_url: String::new(),
            ops_url: String::new(),
            stop,
            stop_api: None,
            tasks: Vec::new(),
        };

        let api_args = default_args(stack, DevKeys::in_state_dir(stack.state_dir()).jwks);
        let application = Application::build(&api_args).await?;
        functions.api_url = format!("http://127.0.0.1:{}", application.port());
        functions.ops_url = format!("http://127.0.0.1:{}", application.ops_port());
        let (stop_api, api_stopped) = oneshot::channel::<()>();
        functions.stop_api = Some(stop_api);
        functions
            .tasks
            .push(tokio::spawn(application.run_until_stopped(async move {
                let _ = api_stopped.await;
            })));

        let admitter = Admitter::connect(
            &AdmitterArgs {
                redis: redis.clone(),
                database: DatabaseArgs::url(database_url.to_owned()),
                kafka: kafka.clone(),
                topics: topics.clone(),
                ops: ops.clone(),
                seed_key: stack.env.seed_key_args(),
                tick_ms: 100,
                lease_ms: 2_000,
                events: vec![event.to_owned()],
                sweep_batch: 5_000,
                close_drain_ms: 300_000,
                redeliver_ms: 30_000,
                decision_log_max_bytes: 32 << 20,
            },
            Readiness::default(),
        )
        .await?;
        functions
            .tasks
            .push(tokio::spawn(admitter.run(stopped.clone())));

        let goods = GoodsArgs {
            database: DatabaseArgs::url(database_url.to_owned()),
            kafka: kafka.clone(),
            topics: topics.clone(),
            ops: ops.clone(),
            seed_key: stack.env.seed_key_args(),
            group: TestStack::unique("goods"),
            batch_size: 500,
            batch_wait_ms: 5,
            db_pool: 4,
        };
        for _ in 0..2 {
            let worker = GoodsWorker::connect(&goods, Readiness::default()).await?;
            functions
                .tasks
                .push(tokio::spawn(worker.run(stopped.clone())));
        }

        let relay = Relay::connect(
            &RelayArgs {
                redis,
                kafka,
                topics,
                ops,
                group: TestStack::unique("relay"),
                batch_size: 100,
                batch_wait_ms: 5,
            },
            Readiness::default(),
        )
        .await?;
        functions.tasks.push(tokio::spawn(relay.run(stopped)));
        Ok(functions)
    }

    /// Asks every function to finish what it holds and waits for them.
    async fn stop(mut self) -> Result<()> {
        let _ = self.stop.send(true);
        if let Some(stop_api) = self.stop_api.take() {
            let _ = stop_api.send(());
        }
        for task in self.tasks.drain(..) {
            tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .context("a function did not stop within 30 s")?
                .context("a function panicked")??;
        }
        Ok(())
    }
}

impl Drop for Functions {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(stop_api) = self.stop_api.take() {
            let _ = stop_api.send(());
        }
        for task in &self.tasks {
            task.abort();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_demo_drop_ends_with_every_user_final_and_the_draw_verified() {
    let stack = TestStack::shared().await;
    let (pool, database_url) = stack.fresh_database().await.expect("database");
    let event = TestStack::unique("demo");
    let functions = Functions::start(stack, &event, &database_url)
        .await
        .expect("the four functions start");
    let report_dir = tempfile::tempdir().expect("report dir");
    let users = 600;
    let args = DemoArgs {
        api_url: Some(functions.api_url.clone()),
        database: DatabaseArgs::url(database_url),
        redis: stack.env.redis(),
        seed_key: stack.env.seed_key_args(),
        state_dir: stack.state_dir().to_path_buf(),
        users,
        stock: 20,
        win_probability: 0.2,
        // Slow enough that the stock runs out with most of the line still waiting:
        // the drop then has users told sold out without a draw, too.
        rate: 50,
        sse_share: 0.5,
        concurrency: 64,
        event: Some(event.clone()),
        report_dir: Some(report_dir.path().to_path_buf()),
        timeout: Duration::from_secs(150),
    };
    let started = Instant::now();
    let report = demo::run(&args).await;
    eprintln!("demo ran in {:.1} s", started.elapsed().as_secs_f64());
    // The public API serves the decision log once the drop is closed, to anyone.
    let published = reqwest::get(format!(
        "{}/v1/events/{event}/fairness/log",
        functions.api_url
    ))
    .await;
    let missing_metrics = metrics_every_drop_lacks(&functions.ops_url).await;
    functions.stop().await.expect("the functions stop cleanly");
    let report = report.expect("the demo runs");
    assert!(
        missing_metrics.is_empty(),
        "deploy/monitoring/metrics.tsv says every drop exports these, and this one did not: {missing_metrics:?}"
    );

    let users = u64::from(users);
    // Each user's answer through the API is what PostgreSQL recorded for them; users
    // never drawn can only have found it sold out or expired.
    let draws: HashMap<(String, String), String> = sqlx::query_as::<_, (String, String, String)>(
        "select platform_id, user_id, outcome from draws where event_id = $1",
    )
    .bind(&event)
    .fetch_all(&pool)
    .await
    .expect("draws")
    .into_iter()
    .map(|(platform, user, outcome)| ((platform, user), outcome))
    .collect();
    assert_eq!(report.user_finals.len() as u64, users);
    let disagreements: Vec<String> = report
        .user_finals
        .iter()
        .filter_map(|seen| {
            let recorded = draws.get(&(seen.platform.clone(), seen.user.clone()));
            let agrees = match recorded {
                Some(outcome) => outcome == seen.state,
                None => matches!(seen.state, "sold_out" | "expired"),
            };
            (!agrees).then(|| {
                format!(
                    "{}:{} ({}) saw {}, recorded {recorded:?}",
                    seen.platform,
                    seen.user,
                    if seen.streamed { "stream" } else { "poll" },
                    seen.state
                )
            })
        })
        .collect();
    assert!(
        disagreements.is_empty(),
        "users told something else than the database holds: {disagreements:#?}"
    );

    assert_eq!(report.unfinished, 0, "{}", report.summary());
    assert_eq!(report.errors, 0, "{}", report.summary());
    assert_eq!(report.finals(), users, "{}", report.summary());
    assert!(report.succeeded(), "{}", report.summary());
    assert!(report.won <= u64::from(report.stock_total));
    assert_eq!(
        report.won,
        u64::from(report.stock_total - report.stock_left),
        "winners seen by users match the stock taken"
    );
    assert_eq!(report.verify, Verdict::Pass, "{}", report.verify_detail);
    // Asked again after the close, every user answered, from the API, what their
    // client saw and what PostgreSQL holds.
    assert!(report.recheck.passed(), "{}", report.summary());
    assert_eq!(report.recheck.users, users);
    assert_eq!(
        report.recheck.final_states + report.recheck.never_entered,
        users
    );
    assert_eq!(
        report.recheck.final_states,
        report.won + report.lost + report.expired + report.sold_out + report.closed
            - report.sold_out_at_entry
            - report.closed_at_entry
    );
    assert!(report.entered > 0 && report.admitted > 0);
    assert!(report.enter_p50_ms.is_some() && report.seconds_to_last_result.is_some());

    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report.json_path).expect("JSON report written"))
            .expect("the report is JSON");
    for key in [
        "entered",
        "admitted",
        "won",
        "lost",
        "sold_out",
        "expired",
        "stock_total",
        "stock_left",
        "seconds_to_last_result",
        "enter_p50_ms",
        "enter_p99_ms",
        "verify",
        "users",
        "errors",
        "event_id",
        "timeline",
    ] {
        assert!(json.get(key).is_some(), "the report lacks {key}: {json}");
    }
    assert_eq!(json["verify"], "pass");
    assert_eq!(json["recheck"]["disagreements"], 0, "{json}");
    assert!(
        json["timeline"].as_array().is_some_and(|t| !t.is_empty()),
        "the timeline has samples"
    );
    let svg = std::fs::read_to_string(&report.svg_path).expect("SVG timeline written");
    assert!(svg.starts_with("<svg") && svg.contains("<polyline") && svg.contains("queue"));
    eprintln!("{}", report.summary());

    // The API's decision log is the one the verifiers check.
    let published: serde_json::Value = published
        .expect("the decision log route answers")
        .json()
        .await
        .expect("the decision log is JSON");
    let mut conn = pool.acquire().await.expect("connection");
    let event_id = dropgate_core::EventId::parse(event.as_str()).expect("valid");
    let recorded = events::fairness_data(&mut conn, &event_id)
        .await
        .expect("fairness data");
    assert_eq!(published, recorded, "the API's log is the database's");
    let draws: i64 = sqlx::query_scalar("select count(*) from draws where event_id = $1")
        .bind(event.as_str())
        .fetch_one(&pool)
        .await
        .expect("count");
    assert!(
        draws > 0
            && published["decisions"]
                .as_array()
                .is_some_and(|decisions| decisions.len() as i64 == draws),
        "every draw is in the published log"
    );
    assert!(
        !published.to_string().contains("\"user_id\""),
        "the public log names nobody by id"
    );

    every_tampering_is_caught(&pool, &event).await;
}

/// Each rule of verify, broken on this real drop's records (inside a transaction that
/// is rolled back), is named by `dropgate event verify`'s check; the untouched records
/// pass.
async fn every_tampering_is_caught(pool: &sqlx::PgPool, event: &str) {
    let id = dropgate_core::EventId::parse(event).expect("valid");
    let honest = events::verify_event(pool, &id).await.expect("verify");
    assert!(honest.passed(), "{:?}", honest.findings);
    // The independent verifier, from the public fairness data alone, agrees.
    let mut conn = pool.acquire().await.expect("connection");
    let (code, kinds) = independent_verdict(&mut conn, &id).await;
    assert_eq!(
        (code, kinds),
        (Some(0), Vec::new()),
        "the independent verifier"
    );
    drop(conn);
    let undrawn: i64 = sqlx::query_scalar(
        "select count(*) from final_states where event_id = $1 and state = 'sold_out'",
    )
    .bind(event)
    .fetch_one(pool)
    .await
    .expect("count");
    assert!(
        undrawn > 0,
        "the drop swept its line: there is something to tamper with"
    );

    // (what, the SQL, the finding kind verify must report)
    let one_sold_out = "(select user_id from final_states where event_id = $1 and state = 'sold_out' order by ticket limit 1)";
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "a draw removed",
            "delete from draws where event_id = $1 and decision_order = 3".into(),
            "decision_order_gap",
        ),
        (
            "a draw inserted for someone who never entered",
            "insert into draws (event_id, platform_id, user_id, ticket, draw_value, outcome, decision_order)
             select $1, 'web', 'stranger', 999999, 0, 'lost', max(decision_order) + 1 from draws where event_id = $1"
                .into(),
            "decision_count_mismatch",
        ),
        (
            "the count of decisions changed",
            "update events set decisions_made = decisions_made - 1 where event_id = $1".into(),
            "decision_count_mismatch",
        ),
        (
            "a unit put back",
            "update events set stock_left = stock_left + 1 where event_id = $1".into(),
            "stock_mismatch",
        ),
        (
            "a draw made after the reveal",
            "update draws set decided_at = (select seed_revealed_at from events where event_id = $1) + interval '10 seconds'
              where event_id = $1 and decision_order = 2"
                .into(),
            "drawn_after_the_reveal",
        ),
        (
            "two users' places in line swapped",
            "update draws set ticket = case decision_order when 2 then (select ticket from draws where event_id = $1 and decision_order = 40)
                                                          else (select ticket from draws where event_id = $1 and decision_order = 2) end
              where event_id = $1 and decision_order in (2, 40)"
                .into(),
            "decided_before_an_earlier_ticket",
        ),
        (
            "a drawn user also recorded sold out",
            "insert into final_states (event_id, platform_id, user_id, ticket, state)
             select $1, platform_id, user_id, 0, 'sold_out' from draws where event_id = $1 and decision_order = 1"
                .into(),
            "drawn_and_undrawn",
        ),
        (
            "a swept user given a drawn user's ticket",
            format!(
                "update final_states set ticket = (select ticket from draws where event_id = $1 and decision_order = 1)
                  where event_id = $1 and user_id = {one_sold_out}"
            ),
            "duplicate_ticket",
        ),
        (
            "a user told sold out from ahead of the drawn",
            format!("update final_states set ticket = 0 where event_id = $1 and user_id = {one_sold_out}"),
            "swept_ahead_of_a_draw",
        ),
        (
            "a user told sold out before the stock ran out",
            format!(
                "update final_states set decided_at = '2000-01-01' where event_id = $1 and user_id = {one_sold_out}"
            ),
            "told_too_early",
        ),
        (
            "a lost draw turned into a win",
            "update draws set outcome = 'won' where event_id = $1
                and decision_order = (select min(decision_order) from draws where event_id = $1 and outcome = 'lost')"
                .into(),
            "wrong_outcome",
        ),
        (
            "another commitment",
            "update events set seed_commitment = repeat('0', 64) where event_id = $1".into(),
            "commitment_mismatch",
        ),
    ];
    for (what, sql, kind) in cases {
        let mut tx = pool.begin().await.expect("begin");
        let changed = sqlx::query(&sql)
            .bind(event)
            .execute(&mut *tx)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"))
            .rows_affected();
        assert!(changed > 0, "{what}: the tampering changed nothing");
        let report = events::verify_event_on(&mut tx, &id).await.expect("verify");
        let kinds: Vec<String> = report
            .findings
            .iter()
            .map(|finding| serde_json::to_value(finding).expect("json")["kind"].to_string())
            .collect();
        assert!(
            kinds.iter().any(|k| k.trim_matches('"') == kind),
            "{what}: verify did not report {kind}, only {kinds:?}"
        );
        let (code, independent) = independent_verdict(&mut tx, &id).await;
        assert_eq!(code, Some(2), "{what}: the independent verifier passed it");
        assert!(
            independent.iter().any(|k| k == kind),
            "{what}: the independent verifier did not report {kind}, only {independent:?}"
        );
        tx.rollback().await.expect("rollback");
    }
}

/// `verifier/dropgate_verify.py drop` on the event's public fairness data as read on
/// `conn`: its exit code and the kinds of finding it reported.
async fn independent_verdict(
    conn: &mut sqlx::PgConnection,
    event: &dropgate_core::EventId,
) -> (Option<i32>, Vec<String>) {
    let data = events::fairness_data(conn, event)
        .await
        .expect("fairness data");
    dropgate_tests::independent_verdict(&data)
}

/// The metrics deploy/monitoring/metrics.tsv marks as exported by every drop that the
/// functions' /metrics does not show (the consumer lag comes every 10 s: waited for).
async fn metrics_every_drop_lacks(ops_url: &str) -> Vec<String> {
    let listed = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/monitoring/metrics.tsv"),
    )
    .expect("the metric list");
    let expected: Vec<String> = listed
        .lines()
        .filter(|line| !line.starts_with('#') && !line.starts_with("name\t"))
        .filter_map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            (fields.get(4) == Some(&"yes")).then(|| fields[0].to_owned())
        })
        .collect();
    assert!(
        expected.len() > 10,
        "the list names the metrics of every drop"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = reqwest::get(format!("{ops_url}/metrics"))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        let missing: Vec<String> = expected
            .iter()
            .filter(|name| {
                !text.lines().any(|line| {
                    line.starts_with(name.as_str())
                        && line[name.len()..].starts_with(['{', ' ', '_'])
                })
            })
            .cloned()
            .collect();
        if missing.is_empty() || Instant::now() >= deadline {
            return missing;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
