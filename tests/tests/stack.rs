//! The local stack itself: it starts real servers, keeps them single, stops exactly
//! them, survives a killed launcher, and the broker keeps messages and committed
//! offsets across a restart.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use dropgate_tests::{TestStack, dropgate_binary, pid_alive};
use dropgate_tools::stack::{self, Component, StopMode};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use sqlx::Connection;

fn running_pids(state_dir: &std::path::Path) -> Vec<(Component, u32)> {
    stack::status(state_dir)
        .expect("status")
        .into_iter()
        .filter(|line| line.running)
        .filter_map(|line| Some((line.component, line.server?.pid)))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn up_starts_three_answering_servers_once_and_down_stops_them() {
    let test_stack = TestStack::dedicated().await.expect("stack starts");
    let dir = test_stack.state_dir().to_path_buf();
    let env = &test_stack.env;

    let redis = redis::Client::open(env.redis_url.as_str()).expect("redis url");
    let mut connection = redis
        .get_multiplexed_async_connection()
        .await
        .expect("redis answers");
    let pong: String = redis::cmd("PING")
        .query_async(&mut connection)
        .await
        .expect("PING");
    assert_eq!(pong, "PONG");
    let aof: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("appendonly")
        .query_async(&mut connection)
        .await
        .expect("CONFIG GET");
    assert_eq!(aof, ["appendonly", "yes"]);

    let mut pg = sqlx::PgConnection::connect(&env.database_url)
        .await
        .expect("postgres answers");
    let tables: Vec<String> = sqlx::query_scalar(
        "select table_name::text from information_schema.tables where table_schema = 'public' order by 1",
    )
    .fetch_all(&mut pg)
    .await
    .expect("tables");
    for table in ["draws", "events", "outbox"] {
        assert!(
            tables.iter().any(|t| t == table),
            "{table} missing from {tables:?}"
        );
    }
    pg.close().await.ok();

    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &env.kafka_brokers)
        .set("group.id", "metadata-probe")
        .create()
        .expect("consumer");
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(20))
        .expect("broker answers metadata");
    for topic in stack::TOPICS {
        let found = metadata.topics().iter().find(|t| t.name() == topic);
        assert_eq!(
            found.map(|t| t.partitions().len()),
            Some(3),
            "topic {topic}"
        );
    }
    drop(consumer);

    let first = running_pids(&dir);
    assert_eq!(first.len(), 3, "{first:?}");
    let mut quiet = |_: &str| {};
    let again = stack::up(&test_stack.options, &mut quiet)
        .await
        .expect("second up");
    assert_eq!(&again, env, "a second up changes no address");
    assert_eq!(running_pids(&dir), first, "a second up starts nothing new");

    let stopped = stack::down(&dir, false).expect("down");
    assert_eq!(stopped.len(), 3);
    for (component, pid) in first {
        assert!(!pid_alive(pid), "{component:?} pid {pid} survived down");
    }
    assert!(running_pids(&dir).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn migrations_apply_to_an_empty_database_and_again() {
    let test_stack = TestStack::shared().await;
    let name = TestStack::unique("empty").replace('-', "_");
    let mut admin = sqlx::PgConnection::connect(&test_stack.env.database_url)
        .await
        .expect("admin");
    stack::create_database_if_missing(&mut admin, &name, None)
        .await
        .expect("create");
    admin.close().await.ok();
    let url = test_stack
        .env
        .database_url
        .rsplit_once('/')
        .map(|(base, _)| format!("{base}/{name}"));
    let pool = sqlx::PgPool::connect(&url.expect("url has a database"))
        .await
        .expect("connect");
    dropgate_functions::postgres::migrate(&pool)
        .await
        .expect("first run");
    dropgate_functions::postgres::migrate(&pool)
        .await
        .expect("second run is a no-op");
    let applied: i64 = sqlx::query_scalar("select count(*) from _sqlx_migrations where success")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(
        applied as usize,
        dropgate_functions::postgres::MIGRATOR.iter().count()
    );
    // A named constraint turns a would-be oversell into an error.
    sqlx::query(
        "insert into events (event_id, stock_total, stock_left, win_probability, admission_rate_per_s,
            max_in_flight, opens_at, abandon_timeout_ms, seed, seed_commitment)
         values ('e', 1, 1, 0.05, 10, 10, now(), 60000, repeat('a', 64), repeat('b', 64))",
    )
    .execute(&pool)
    .await
    .expect("insert event");
    let oversell =
        sqlx::query("update events set stock_left = stock_left - 2 where event_id = 'e'")
            .execute(&pool)
            .await
            .expect_err("stock cannot go negative");
    let constraint = oversell
        .as_database_error()
        .and_then(|e| e.constraint().map(str::to_owned));
    assert_eq!(constraint.as_deref(), Some("events_stock_left_check"));
}

fn producer(brokers: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", "30000")
        .create()
        .expect("producer")
}

fn consumer(brokers: &str, group: &str) -> StreamConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .create()
        .expect("consumer")
}

/// Receives `count` messages (payloads) within `timeout`, storing nothing.
async fn receive(
    consumer: &StreamConsumer,
    count: usize,
    timeout: Duration,
) -> Vec<(String, TopicPartitionList)> {
    let deadline = Instant::now() + timeout;
    let mut received = Vec::new();
    while received.len() < count {
        let left = deadline.saturating_duration_since(Instant::now());
        let message = tokio::time::timeout(left, consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("only {} of {count} messages arrived", received.len()))
            .expect("consume");
        let payload =
            String::from_utf8(message.payload().unwrap_or_default().to_vec()).expect("utf-8");
        let mut position = TopicPartitionList::new();
        position
            .add_partition_offset(
                message.topic(),
                message.partition(),
                Offset::Offset(message.offset() + 1),
            )
            .expect("offset");
        received.push((payload, position));
    }
    received
}

#[tokio::test(flavor = "multi_thread")]
async fn broker_keeps_messages_and_committed_offsets_across_a_restart() {
    let test_stack = TestStack::dedicated().await.expect("stack starts");
    let brokers = test_stack.env.kafka_brokers.clone();
    let topic = "round-trip";
    stack::create_topic(test_stack.state_dir(), topic, 3).expect("topic");

    let sent: BTreeSet<String> = (0..100).map(|i| format!("message-{i}")).collect();
    let producer = producer(&brokers);
    for payload in &sent {
        producer
            .send(
                FutureRecord::to(topic)
                    .key(payload.as_str())
                    .payload(payload.as_str()),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("delivered");
    }
    drop(producer);

    let first = consumer(&brokers, "round-trip-group");
    first.subscribe(&[topic]).expect("subscribe");
    let got = receive(&first, 60, Duration::from_secs(90)).await;
    // Commit exactly what was processed, per partition (the later offset wins).
    let mut commit = TopicPartitionList::new();
    for (_, position) in &got {
        for element in position.elements() {
            commit
                .add_partition_offset(element.topic(), element.partition(), element.offset())
                .expect("offset");
        }
    }
    first.commit(&commit, CommitMode::Sync).expect("commit");
    let consumed: BTreeSet<String> = got.into_iter().map(|(payload, _)| payload).collect();
    drop(first);

    let mut quiet = |_: &str| {};
    stack::restart_component(
        &test_stack.options,
        Component::Broker,
        StopMode::Graceful,
        &mut quiet,
    )
    .await
    .expect("broker restarts");

    // The group resumes after its committed offsets: it sees every message it did not
    // commit (at-least-once), and none that it did.
    let second = consumer(&brokers, "round-trip-group");
    second.subscribe(&[topic]).expect("subscribe");
    let remaining = sent.len() - consumed.len();
    let rest: BTreeSet<String> = receive(&second, remaining, Duration::from_secs(90))
        .await
        .into_iter()
        .map(|(payload, _)| payload)
        .collect();
    assert!(rest.is_disjoint(&consumed), "committed messages came back");
    assert_eq!(rest.len() + consumed.len(), sent.len());
    drop(second);

    // And the log itself survived: a new group reads all 100.
    let fresh = consumer(&brokers, "round-trip-fresh");
    fresh.subscribe(&[topic]).expect("subscribe");
    let all: BTreeSet<String> = receive(&fresh, sent.len(), Duration::from_secs(90))
        .await
        .into_iter()
        .map(|(payload, _)| payload)
        .collect();
    assert_eq!(all, sent);
}

#[tokio::test(flavor = "multi_thread")]
async fn down_stops_everything_after_the_launcher_was_killed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let state_dir = dir.path().join("stack");
    let binary = dropgate_binary().expect("dropgate binary");
    let mut launcher = Command::new(&binary)
        .args(["stack", "up", "--partitions", "1", "--state-dir"])
        .arg(&state_dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("launcher starts");
    // Kill it mid-start-up: once PostgreSQL's pid is on record.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let recorded = stack::StackState::load(&state_dir)
            .ok()
            .and_then(|state| state.postgres);
        if recorded.is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "launcher never recorded PostgreSQL"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    launcher.kill().expect("SIGKILL the launcher");
    launcher.wait().expect("reap");
    let state = stack::StackState::load(&state_dir).expect("state survives");
    let recorded: Vec<u32> = Component::ALL
        .into_iter()
        .filter_map(|c| state.server(c).map(|s| s.pid))
        .collect();
    assert!(
        recorded.len() >= 2,
        "redis and postgres were on record: {state:?}"
    );

    let down = Command::new(&binary)
        .args(["stack", "down", "--purge", "--state-dir"])
        .arg(&state_dir)
        .output()
        .expect("down runs");
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    for pid in recorded {
        assert!(!pid_alive(pid), "pid {pid} survived down");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn local_up_runs_the_four_functions_and_stack_down_stops_them() {
    let dir = tempfile::Builder::new()
        .prefix("dropgate-local-")
        .tempdir()
        .expect("temp dir")
        .keep();
    let dropgate = dropgate_binary().expect("built");
    // Stops everything even if an assertion below fails.
    struct Down(std::path::PathBuf, std::path::PathBuf);
    impl Drop for Down {
        fn drop(&mut self) {
            let _ = Command::new(&self.0)
                .args(["stack", "down", "--purge", "--state-dir"])
                .arg(&self.1)
                .output();
        }
    }
    let _down = Down(dropgate.clone(), dir.clone());
    let up = Command::new(&dropgate)
        .args(["local", "up", "--goods-workers", "2", "--state-dir"])
        .arg(&dir)
        .output()
        .expect("local up runs");
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let instances = stack::functions::load(&dir).expect("functions.json");
    let names: BTreeSet<&str> = instances
        .iter()
        .map(|instance| instance.name.as_str())
        .collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "queue-api",
            "admitter",
            "goods-worker-1",
            "goods-worker-2",
            "result-relay"
        ])
    );
    assert!(instances.iter().all(stack::functions::is_running));
    let env = stack::env(&dir).expect("env");
    let api = env.api_url.expect("the env names queue-api");
    let queue_api = instances
        .iter()
        .find(|instance| instance.name == "queue-api")
        .expect("queue-api recorded");
    let ops_port = queue_api.ops_port.expect("queue-api has an ops port");
    assert_ne!(ops_port, queue_api.port);
    let health = reqwest::get(format!("http://127.0.0.1:{ops_port}/readyz"))
        .await
        .expect("queue-api's ops port answers");
    assert!(health.status().is_success());
    let public = reqwest::get(format!("{api}/metrics"))
        .await
        .expect("queue-api answers");
    assert_eq!(public.status(), 404, "no metrics on the public port");

    let again = Command::new(&dropgate)
        .args(["local", "up", "--state-dir"])
        .arg(&dir)
        .output()
        .expect("local up runs");
    assert!(again.status.success());
    assert_eq!(
        stack::functions::load(&dir).expect("functions.json"),
        instances,
        "up twice starts nothing new"
    );

    let down = Command::new(&dropgate)
        .args(["stack", "down", "--state-dir"])
        .arg(&dir)
        .output()
        .expect("down runs");
    assert!(down.status.success());
    for instance in &instances {
        assert!(!pid_alive(instance.pid), "{} still runs", instance.name);
    }
}

/// The functions log in as the stack's app login, as deployed: it reads and writes
/// rows, and cannot change the schema, empty a table or rewrite the migrations'
/// record. The migrations ran as the owner.
#[tokio::test(flavor = "multi_thread")]
async fn the_functions_login_reads_and_writes_rows_but_cannot_change_the_schema() {
    let stack = TestStack::shared().await;
    let vars: std::collections::HashMap<_, _> = stack.env.vars().into_iter().collect();
    assert_eq!(vars["DATABASE_URL"], stack.env.app_database_url);
    assert!(
        stack
            .env
            .app_database_url
            .starts_with(&format!("postgres://{}:", stack::APP_USER)),
        "the functions' URL names the app login"
    );
    let mut app = sqlx::PgConnection::connect(&stack.env.app_database_url)
        .await
        .expect("the app login connects");
    for allowed in [
        "select count(*) from events",
        "select count(*) from draws",
        "update events set state = state where false",
        "delete from outbox where false",
        "select count(*) from _sqlx_migrations",
    ] {
        sqlx::query(allowed)
            .execute(&mut app)
            .await
            .unwrap_or_else(|error| panic!("{allowed}: {error}"));
    }
    for refused in [
        "create table probe (x int)",
        "alter table events add column probe int",
        "drop table draws",
        "truncate draws",
        "delete from _sqlx_migrations where false",
        "alter table events disable trigger all",
    ] {
        let error = sqlx::query(refused)
            .execute(&mut app)
            .await
            .expect_err(refused);
        let code = error
            .as_database_error()
            .and_then(|error| error.code().map(|code| code.into_owned()));
        assert_eq!(
            code.as_deref(),
            Some("42501"),
            "{refused}: refused for lack of privilege, got {error}"
        );
    }
}

/// `dropgate db migrate --runtime-user` gives a deployment's logins the runtime role.
#[tokio::test(flavor = "multi_thread")]
async fn migrate_grants_the_runtime_role_to_the_named_logins() {
    let stack = TestStack::shared().await;
    let (pool, url) = stack.fresh_database().await.expect("database");
    let login = TestStack::unique("login").replace('-', "_");
    sqlx::query(&format!("create role {login} login"))
        .execute(&pool)
        .await
        .expect("create the login");
    let output = Command::new(dropgate_binary().expect("built"))
        .args(["db", "migrate", "--runtime-users", &login])
        .env("DATABASE_URL", &url)
        .output()
        .expect("dropgate runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let member: bool = sqlx::query_scalar("select pg_has_role($1, 'dropgate_runtime', 'member')")
        .bind(&login)
        .fetch_one(&pool)
        .await
        .expect("pg_has_role");
    assert!(member, "{login} got the runtime role");
    sqlx::query(&format!("drop role {login}"))
        .execute(&pool)
        .await
        .expect("drop the login");
}
