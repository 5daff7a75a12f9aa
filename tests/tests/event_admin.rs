//! `dropgate event ...` as an operator runs it against the local stack: a drop's life
//! from create to export, mirrored into Redis for queue-api, and clear errors.

use std::process::{Command, Output};

use dropgate_core::EventId;
use dropgate_functions::queue::EventKeys;
use dropgate_tests::api::{ApiServer, error_code, token};
use dropgate_tests::{TestStack, dropgate_binary};

/// Runs the CLI as an operator with the stack's seed key would.
fn dropgate(stack: &TestStack, database_url: &str, redis_url: &str, args: &[&str]) -> Output {
    Command::new(dropgate_binary().expect("built"))
        .args(args)
        .env("DATABASE_URL", database_url)
        .env("DROPGATE_REDIS_URL", redis_url)
        .env(
            "DROPGATE_SEED_KEY_FILE",
            stack.env.seed_key_args().seed_key_file,
        )
        .output()
        .expect("dropgate runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_drop_goes_from_create_to_export_and_queue_api_sees_each_step() {
    let stack = TestStack::shared().await;
    let (pool, database_url) = stack.fresh_database().await.expect("database");
    let redis_url = stack.env.redis_url.clone();
    let id = TestStack::unique("admin");
    let run = |args: &[&str]| dropgate(stack, &database_url, &redis_url, args);

    let keyless = Command::new(dropgate_binary().expect("built"))
        .args(["event", "create", "--id", &id, "--stock", "10"])
        .env("DATABASE_URL", &database_url)
        .env_remove("DROPGATE_SEED_KEY_FILE")
        .output()
        .expect("dropgate runs");
    assert_eq!(keyless.status.code(), Some(1));
    assert!(
        text(&keyless.stderr).contains("DROPGATE_SEED_KEY_FILE"),
        "{}",
        text(&keyless.stderr)
    );

    let created = run(&[
        "event", "create", "--id", &id, "--stock", "10", "--rate", "50",
    ]);
    assert!(created.status.success(), "{}", text(&created.stderr));
    let stdout = text(&created.stdout);
    let commitment = stdout
        .lines()
        .find_map(|line| line.strip_prefix("seed commitment (SHA-256, publish it now): "))
        .expect("the commitment is printed")
        .to_owned();
    assert_eq!(commitment.len(), 64);
    let (clear, sealed): (Option<String>, String) =
        sqlx::query_as("select seed, seed_sealed from events where event_id = $1")
            .bind(&id)
            .fetch_one(&pool)
            .await
            .expect("the event row");
    assert_eq!(
        clear, None,
        "the database holds no readable seed before close"
    );
    assert!(sealed.starts_with("xchacha20poly1305:"), "{sealed}");

    let mut redis = redis::Client::open(redis_url.as_str())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let keys = EventKeys::new(&EventId::parse(id.as_str()).expect("valid"));
    let state: Option<String> = redis::cmd("HGET")
        .arg(keys.meta())
        .arg("state")
        .query_async(&mut redis)
        .await
        .expect("HGET");
    assert_eq!(state.as_deref(), Some("scheduled"));

    let again = run(&["event", "create", "--id", &id, "--stock", "10"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        text(&again.stderr).contains("already exists"),
        "{}",
        text(&again.stderr)
    );

    assert!(run(&["event", "open", "--id", &id]).status.success());
    let state: Option<String> = redis::cmd("HGET")
        .arg(keys.meta())
        .arg("state")
        .query_async(&mut redis)
        .await
        .expect("HGET");
    assert_eq!(state.as_deref(), Some("open"));
    let rate: Option<String> = redis::cmd("HGET")
        .arg(keys.meta())
        .arg("rate")
        .query_async(&mut redis)
        .await
        .expect("HGET");
    assert_eq!(rate.as_deref(), Some("50"));
    assert!(run(&["event", "pause", "--id", &id]).status.success());

    let shown = run(&["event", "show", "--id", &id]);
    assert!(shown.status.success(), "{}", text(&shown.stderr));
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).expect("JSON");
    assert_eq!(shown["event"]["state"], "paused");
    assert_eq!(shown["event"]["stock_left"], 10);
    assert_eq!(shown["event"]["seed_commitment"], commitment.as_str());
    assert_eq!(
        shown["event"]["seed"],
        serde_json::Value::Null,
        "the seed stays secret until close"
    );

    // The admitter finishes the close (it reveals the seed once the line is told and
    // nobody admitted is undecided).
    let event_id = EventId::parse(id.as_str()).expect("valid");
    let _admitter = dropgate_tests::admitter::serve(stack, &database_url, &event_id).await;
    let closed = run(&["event", "close", "--id", &id, "--wait-secs", "30"]);
    assert!(closed.status.success(), "{}", text(&closed.stderr));
    assert!(
        text(&closed.stdout).contains("seed (revealed"),
        "{}",
        text(&closed.stdout)
    );
    let revealed: String = sqlx::query_scalar("select seed from events where event_id = $1")
        .bind(&id)
        .fetch_one(&pool)
        .await
        .expect("the revealed seed");
    assert_eq!(
        dropgate_core::EventSeed::from_hex(&revealed)
            .expect("64 hex digits")
            .commitment()
            .to_hex(),
        commitment,
        "the admitter reveals the seed the commitment names"
    );
    let reopened = run(&["event", "open", "--id", &id]);
    assert_eq!(
        reopened.status.code(),
        Some(1),
        "a closed event stays closed"
    );

    let verified = run(&["event", "verify", "--id", &id]);
    assert!(verified.status.success(), "{}", text(&verified.stdout));
    let csv = run(&["event", "export", "--id", &id]);
    assert!(csv.status.success());
    assert_eq!(
        text(&csv.stdout).trim(),
        "decision_order,platform_id,user_id,ticket,decided_at"
    );
    let json = run(&["event", "export", "--id", &id, "--format", "json"]);
    assert_eq!(text(&json.stdout).trim(), "[]");
}

/// One person with identities on several platforms would hold several tickets: an
/// event names the platforms it takes, and that holds at entry, also after Redis lost
/// the event and the admitter rebuilt it from PostgreSQL.
#[tokio::test(flavor = "multi_thread")]
async fn an_event_takes_only_its_platforms_even_after_redis_loses_the_event() {
    let stack = TestStack::shared().await;
    let (_pool, database_url) = stack.fresh_database().await.expect("database");
    let redis_url = stack.env.redis_url.clone();
    let id = TestStack::unique("scoped");
    let run = |args: &[&str]| dropgate(stack, &database_url, &redis_url, args);
    let created = run(&[
        "event",
        "create",
        "--id",
        &id,
        "--stock",
        "10",
        "--allowed-platforms",
        "shop,app",
    ]);
    assert!(created.status.success(), "{}", text(&created.stderr));
    assert!(run(&["event", "open", "--id", &id]).status.success());
    let shown = run(&["event", "show", "--id", &id]);
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).expect("JSON");
    assert_eq!(
        shown["event"]["allowed_platforms"],
        serde_json::json!(["shop", "app"])
    );

    let event = EventId::parse(id.as_str()).expect("valid");
    let server = ApiServer::start(stack).await.expect("queue-api starts");
    let refused = |user: &'static str| {
        let server = &server;
        let event = &event;
        async move {
            let (code, body) = server.enter(event, &token("market", user)).await;
            assert_eq!(code, 403, "{body}");
            assert_eq!(error_code(&body), "platform_not_allowed", "{body}");
        }
    };
    refused("ana").await;
    let (code, body) = server.enter(&event, &token("shop", "ana")).await;
    assert_eq!(code, 201, "{body}");
    let (code, body) = server.enter(&event, &token("app", "ana")).await;
    assert_eq!(code, 201, "{body}");
    // A refused user has no place: there is nothing to read.
    let (code, body) = server.status(&event, &token("market", "ana")).await;
    assert_eq!(code, 404, "{body}");

    let mut redis = redis::Client::open(redis_url.as_str())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let keys = EventKeys::new(&event);
    let _: () = redis::cmd("DEL")
        .arg(keys.meta())
        .query_async(&mut redis)
        .await
        .expect("DEL");
    let (code, _) = server.enter(&event, &token("market", "bo")).await;
    assert_eq!(
        code, 404,
        "without its mirror the event is unknown, not open to all"
    );
    let _admitter = dropgate_tests::admitter::serve(stack, &database_url, &event).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let platforms: Option<String> = redis::cmd("HGET")
            .arg(keys.meta())
            .arg("platforms")
            .query_async(&mut redis)
            .await
            .expect("HGET");
        if platforms.is_some() {
            assert_eq!(platforms.as_deref(), Some("shop,app"));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the admitter did not rebuild the event's mirror"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    refused("bo").await;
    let (code, body) = server.enter(&event, &token("shop", "bo")).await;
    assert_eq!(code, 201, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_arguments_get_clear_errors_not_panics() {
    let stack = TestStack::shared().await;
    let (_pool, database_url) = stack.fresh_database().await.expect("database");
    let redis_url = stack.env.redis_url.clone();
    let cases: [(&[&str], i32, &str); 6] = [
        (
            &[
                "event",
                "create",
                "--id",
                "ok-id",
                "--stock",
                "5",
                "--beacon-round",
                "not a round",
            ],
            1,
            "beacon round",
        ),
        (
            &["event", "create", "--id", "bad id", "--stock", "5"],
            1,
            "--id",
        ),
        (
            &["event", "create", "--id", "ok-id", "--stock", "0"],
            1,
            "stock must be at least 1",
        ),
        (
            &[
                "event",
                "create",
                "--id",
                "ok-id",
                "--stock",
                "5",
                "--win-probability",
                "1.5",
            ],
            1,
            "win probability",
        ),
        (
            &["event", "open", "--id", "never-created"],
            1,
            "no event never-created",
        ),
        (
            &["event", "export", "--id", "x", "--format", "xml"],
            2,
            "invalid value",
        ),
    ];
    for (args, code, expected) in cases {
        let out = dropgate(stack, &database_url, &redis_url, args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_randomized_pre_queue_is_shuffled_at_open_with_the_event_seed() {
    let stack = TestStack::shared().await;
    let (_pool, database_url) = stack.fresh_database().await.expect("database");
    let redis_url = stack.env.redis_url.clone();
    let id = TestStack::unique("shuffle");
    let run = |args: &[&str]| dropgate(stack, &database_url, &redis_url, args);
    let created = run(&[
        "event",
        "create",
        "--id",
        &id,
        "--stock",
        "5",
        "--mode",
        "randomized_pre_queue",
    ]);
    assert!(created.status.success(), "{}", text(&created.stderr));

    let event = EventId::parse(id.as_str()).expect("valid");
    let store = dropgate_functions::queue::QueueStore::connect(
        &dropgate_functions::config::RedisArgs::url(redis_url.clone()),
    )
    .await
    .expect("redis");
    let users: Vec<dropgate_core::UserKey> = (1..=50)
        .map(|n| dropgate_core::UserKey::parse("shop", &format!("early{n}")).expect("valid"))
        .collect();
    for user in &users {
        store
            .enter(&event, user, 0)
            .await
            .expect("enter while scheduled");
    }
    let opened = run(&["event", "open", "--id", &id]);
    assert!(opened.status.success(), "{}", text(&opened.stderr));
    assert!(
        text(&opened.stdout).contains("pre-queue of 50 users shuffled"),
        "{}",
        text(&opened.stdout)
    );

    let queued = store.in_line(&event).await.expect("line");
    let tickets: Vec<u64> = queued.iter().map(|place| place.ticket).collect();
    assert_eq!(
        tickets,
        (1..=50).collect::<Vec<u64>>(),
        "the same tickets, all still there"
    );
    let order: Vec<String> = queued.into_iter().map(|place| place.member).collect();
    let arrival: Vec<String> = users.iter().map(|user| user.member()).collect();
    assert_ne!(
        order, arrival,
        "arriving first in the pre-queue buys nothing"
    );
    let status = store.status(&event, &users[0], 0).await.expect("status");
    let dropgate_functions::queue::Lookup::Found(standing) = status else {
        panic!("early1 is in the queue");
    };
    let position_in_order = order
        .iter()
        .position(|member| *member == users[0].member())
        .expect("queued");
    assert_eq!(
        standing.record.ticket,
        position_in_order as u64 + 1,
        "the record holds the new ticket"
    );

    // Anyone can re-derive the order once the seed is revealed.
    let _admitter = dropgate_tests::admitter::serve(stack, &database_url, &event).await;
    let closed = run(&["event", "close", "--id", &id, "--wait-secs", "30"]);
    let seed = text(&closed.stdout)
        .lines()
        .find_map(|line| {
            line.strip_prefix("seed (revealed; anyone can now verify the draw): ")
                .map(str::to_owned)
        })
        .expect("seed printed");
    let mut replayed = arrival.clone();
    dropgate_core::shuffle_pre_queue(
        &dropgate_core::EventSeed::from_hex(&seed).expect("hex"),
        &event,
        &mut replayed,
    );
    assert_eq!(replayed, order);
}
