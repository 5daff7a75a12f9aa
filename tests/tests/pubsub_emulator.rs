//! The Pub/Sub transport against the Pub/Sub emulator, where one is installed (it is
//! part of the Google Cloud CLI, not a package this project can install): Google's
//! client publishing through `bus::Publisher`, and a real push subscription
//! delivering admissions to goods-worker's endpoint, whose results go out through
//! Pub/Sub again.
//!
//! The emulator pushes without OIDC tokens, so the endpoint runs here with
//! `PushAuth::Unverified`, which only code can choose; the token check itself is
//! tested in `goods_worker_push.rs` and `result_relay_push.rs`. Without an emulator
//! each test says so on stderr and checks nothing.
//!
//! Runs only with the `pubsub` feature: `cargo test -p dropgate-tests --features pubsub
//! --test pubsub_emulator` (part of `make test`).

#![cfg(feature = "pubsub")]

use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use dropgate_core::{BatchWinners, DrawResult, Message as _};
use dropgate_functions::bus::Publisher;
use dropgate_functions::goods_worker::{GoodsPublishers, GoodsPush};
use dropgate_functions::ops_server::Readiness;
use dropgate_functions::pubsub::PubSubArgs;
use dropgate_functions::pubsub::oidc::PushAuth;
use dropgate_tests::TestStack;
use dropgate_tests::goods::DropFixture;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::{Value, json};
use tokio::sync::watch;

const PROJECT: &str = "dropgate-test";
/// Where the Google Cloud CLI's Debian package puts the emulator.
const DEFAULT_EMULATOR: &str =
    "/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator";
const PATIENCE: Duration = Duration::from_secs(90);

/// A running emulator; its whole process group (a shell script and the JVM it
/// starts) is killed when dropped, also when the test fails.
struct Emulator {
    child: Child,
    host: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

impl Emulator {
    /// Starts the emulator on a free port, or says why it cannot (`None`).
    async fn start(test: &str) -> Option<Self> {
        let binary = std::env::var_os("DROPGATE_PUBSUB_EMULATOR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_EMULATOR));
        if !binary.exists() {
            eprintln!(
                "{test}: NOT RUN: no Pub/Sub emulator at {} (install the Google Cloud CLI's \
                 pubsub emulator, or point DROPGATE_PUBSUB_EMULATOR at its bin/cloud-pubsub-emulator)",
                binary.display()
            );
            return None;
        }
        if Command::new("java")
            .arg("-version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_or(true, |status| !status.success())
        {
            eprintln!("{test}: NOT RUN: the Pub/Sub emulator needs `java`, which is not on PATH");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("free port")
            .port();
        let dir = tempfile::tempdir().expect("temp dir");
        let log = std::fs::File::create(dir.path().join("emulator.log")).expect("log");
        let child = Command::new(&binary)
            .arg("--host=127.0.0.1")
            .arg(format!("--port={port}"))
            .current_dir(dir.path())
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("emulator starts");
        let emulator = Self {
            child,
            host: format!("127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if emulator
                .http
                .get(format!("http://{}/", emulator.host))
                .send()
                .await
                .is_ok()
            {
                return Some(emulator);
            }
            let log = std::fs::read_to_string(emulator._dir.path().join("emulator.log"))
                .unwrap_or_default();
            assert!(
                Instant::now() < deadline,
                "the Pub/Sub emulator did not start within 60 s: {log}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn args(&self) -> PubSubArgs {
        PubSubArgs {
            pubsub_project: Some(PROJECT.to_owned()),
            pubsub_endpoint: None,
            pubsub_emulator_host: Some(self.host.clone()),
        }
    }

    async fn rest(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let response = self
            .http
            .request(
                method,
                format!("http://{}/v1/projects/{PROJECT}/{path}", self.host),
            )
            .json(&body)
            .send()
            .await
            .expect("emulator request");
        let status = response.status();
        let text = response.text().await.expect("body");
        assert!(status.is_success(), "{path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    async fn topic(&self, name: &str) {
        self.rest(reqwest::Method::PUT, &format!("topics/{name}"), json!({}))
            .await;
    }

    /// A pull subscription, or a push one when `push_endpoint` is given.
    async fn subscription(&self, name: &str, topic: &str, push_endpoint: Option<&str>) {
        let mut body = json!({
            "topic": format!("projects/{PROJECT}/topics/{topic}"),
            "ackDeadlineSeconds": 30,
            "enableMessageOrdering": true,
        });
        if let Some(endpoint) = push_endpoint {
            body["pushConfig"] = json!({"pushEndpoint": endpoint});
        }
        self.rest(reqwest::Method::PUT, &format!("subscriptions/{name}"), body)
            .await;
    }

    /// Pulls and acknowledges up to 500 messages: (data, attributes) each.
    async fn pull(&self, subscription: &str) -> Vec<(Vec<u8>, HashMap<String, String>)> {
        let answer = self
            .rest(
                reqwest::Method::POST,
                &format!("subscriptions/{subscription}:pull"),
                json!({"maxMessages": 500, "returnImmediately": true}),
            )
            .await;
        let received = answer["receivedMessages"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut acks = Vec::new();
        let mut messages = Vec::new();
        for item in received {
            acks.push(item["ackId"].clone());
            let message = &item["message"];
            let data = STANDARD
                .decode(message["data"].as_str().unwrap_or_default())
                .expect("base64 data");
            let attributes =
                serde_json::from_value(message["attributes"].clone()).unwrap_or_default();
            messages.push((data, attributes));
        }
        if !acks.is_empty() {
            self.rest(
                reqwest::Method::POST,
                &format!("subscriptions/{subscription}:acknowledge"),
                json!({"ackIds": acks}),
            )
            .await;
        }
        messages
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_publisher_delivers_payload_key_and_attribute_through_the_emulator() {
    let Some(emulator) = Emulator::start("the_publisher_delivers...").await else {
        return;
    };
    let topic = TestStack::unique("waiting");
    emulator.topic(&topic).await;
    emulator
        .subscription(&format!("{topic}-pull"), &topic, None)
        .await;
    let publisher = Publisher::pubsub(&emulator.args(), &topic)
        .await
        .expect("publisher");
    let sent: Vec<(String, Vec<u8>)> = (0..50)
        .map(|n| (format!("web:u{n}"), format!("{{\"n\":{n}}}").into_bytes()))
        .collect();
    for (key, payload) in &sent {
        publisher.publish(key, payload).await.expect("published");
    }
    let mut got: HashMap<String, Vec<u8>> = HashMap::new();
    let deadline = Instant::now() + PATIENCE;
    while got.len() < sent.len() && Instant::now() < deadline {
        for (data, attributes) in emulator.pull(&format!("{topic}-pull")).await {
            got.insert(attributes["key"].clone(), data);
        }
    }
    let expected: HashMap<String, Vec<u8>> = sent.into_iter().collect();
    assert_eq!(
        got, expected,
        "every message arrived with its key attribute"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_push_subscription_delivers_admissions_to_goods_worker_and_results_come_back() {
    let Some(emulator) = Emulator::start("a_push_subscription_delivers...").await else {
        return;
    };
    let stack = TestStack::shared().await;
    let drop = DropFixture::open(stack, 1, 20, 1.0, [11; 32])
        .await
        .expect("drop");
    let waiting = TestStack::unique("waiting");
    let results = TestStack::unique("results");
    let winners = TestStack::unique("winners");
    for topic in [&waiting, &results, &winners] {
        emulator.topic(topic).await;
    }
    emulator
        .subscription(&format!("{results}-pull"), &results, None)
        .await;
    emulator
        .subscription(&format!("{winners}-pull"), &winners, None)
        .await;

    // goods-worker as on Cloud Run, results and winners published to Pub/Sub.
    let args = drop.args("unused");
    let goods = GoodsPush::connect(
        &args,
        GoodsPublishers {
            results: Publisher::pubsub(&emulator.args(), &results)
                .await
                .expect("results publisher"),
            winners: Publisher::pubsub(&emulator.args(), &winners)
                .await
                .expect("winners publisher"),
        },
        PushAuth::Unverified,
        Readiness::default(),
    )
    .await
    .expect("goods push");
    let (stop, stopped) = watch::channel(false);
    let (address, server) = goods
        .start("127.0.0.1:0".parse().expect("address"), stopped)
        .await
        .expect("serving");
    struct Stop(
        watch::Sender<bool>,
        tokio::task::JoinHandle<anyhow::Result<()>>,
    );
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = self.0.send(true);
            self.1.abort();
        }
    }
    let _stop = Stop(stop, server);
    emulator
        .subscription(
            &format!("{waiting}-push"),
            &waiting,
            Some(&format!("http://{address}/pubsub/waiting-queue")),
        )
        .await;

    // The admitter's side: admissions published through the same client.
    let admitter = Publisher::pubsub(&emulator.args(), &waiting)
        .await
        .expect("admissions publisher");
    let users = drop.users(100);
    // Ten admitter ticks of ten, each one ordered batch under the event's key.
    for tick in users.chunks(10) {
        for published in admitter.publish_admissions(&drop.event, tick).await {
            published.expect("admissions published");
        }
    }

    let mut announced: HashMap<String, DrawResult> = HashMap::new();
    let deadline = Instant::now() + PATIENCE;
    while announced.len() < users.len() {
        assert!(
            Instant::now() < deadline,
            "{} of {} results came back through Pub/Sub",
            announced.len(),
            users.len()
        );
        for (data, attributes) in emulator.pull(&format!("{results}-pull")).await {
            let result = DrawResult::decode(&data).expect("a DrawResult");
            assert_eq!(attributes["key"], result.user.member());
            announced.insert(result.user.member(), result);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rows: Vec<(String, String, i64)> = sqlx::query_as(
        "select platform_id || ':' || user_id, outcome, decision_order from draws where event_id = $1",
    )
    .bind(drop.event.as_str())
    .fetch_all(&drop.pool)
    .await
    .expect("draws");
    assert_eq!(rows.len(), users.len(), "one draw per pushed admission");
    for (member, outcome, order) in rows {
        let result = &announced[&member];
        assert_eq!(
            (result.outcome.as_str(), result.decision_order as i64),
            (outcome.as_str(), order),
            "{member}"
        );
    }
    let counts = drop.outcome_counts().await.expect("counts");
    assert_eq!(
        (counts.get("won"), counts.get("sold_out")),
        (Some(&20), Some(&80)),
        "{counts:?}"
    );
    // Decided in ticket order: with every draw a winning one, the first twenty
    // tickets take the stock.
    let tickets: Vec<i64> =
        sqlx::query_scalar("select ticket from draws where event_id = $1 order by decision_order")
            .bind(drop.event.as_str())
            .fetch_all(&drop.pool)
            .await
            .expect("draws");
    assert_eq!(
        tickets,
        (1..=100).collect::<Vec<i64>>(),
        "decisions in ticket order"
    );

    // Each winner once in the winners messages, keyed by the event.
    let mut named: HashMap<u64, String> = HashMap::new();
    let deadline = Instant::now() + PATIENCE;
    while named.len() < 20 {
        assert!(
            Instant::now() < deadline,
            "{} of 20 winners came through the winners topic",
            named.len()
        );
        for (data, attributes) in emulator.pull(&format!("{winners}-pull")).await {
            let message = BatchWinners::decode(&data).expect("a BatchWinners");
            assert_eq!(attributes["key"], drop.event.as_str());
            for winner in message.winners {
                named.insert(winner.decision_order, winner.user.member());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let won: HashMap<u64, String> = announced
        .iter()
        .filter(|(_, result)| result.outcome == dropgate_core::Outcome::Won)
        .map(|(member, result)| (result.decision_order, member.clone()))
        .collect();
    assert_eq!(named, won, "the winners messages name exactly the winners");
}

#[tokio::test(flavor = "multi_thread")]
async fn dead_letters_are_replayed_to_their_topic_with_their_keys_and_only_once() {
    let Some(emulator) = Emulator::start("dead_letters_are_replayed...").await else {
        return;
    };
    let topic = TestStack::unique("waiting");
    let dead_letter = dropgate_functions::pubsub::dead_letters::dead_letter_subscription(&topic);
    emulator.topic(&topic).await;
    emulator.topic(&dead_letter).await;
    emulator
        .subscription(&format!("{topic}-pull"), &topic, None)
        .await;
    emulator
        .subscription(&dead_letter, &dead_letter, None)
        .await;

    // What the push subscription's dead-letter policy would have moved there.
    let dead = Publisher::pubsub(&emulator.args(), &dead_letter)
        .await
        .expect("publisher");
    let letters: HashMap<String, Vec<u8>> = (0..30)
        .map(|n| (format!("web:u{n}"), format!("{{\"n\":{n}}}").into_bytes()))
        .collect();
    for (key, payload) in &letters {
        dead.publish(key, payload).await.expect("published");
    }

    let mut counted = Vec::new();
    // A replay that never acknowledged would be handed the same letters for ever.
    let moved = tokio::time::timeout(
        PATIENCE,
        dropgate_functions::pubsub::dead_letters::replay(
            &emulator.args(),
            &topic,
            Duration::from_secs(3),
            |n| counted.push(n),
        ),
    )
    .await
    .expect("the replay ends once the letters are moved")
    .expect("replay");
    assert_eq!(moved, letters.len() as u64);
    assert_eq!(
        counted.last().copied(),
        Some(moved),
        "progress was reported"
    );

    let mut replayed: HashMap<String, Vec<u8>> = HashMap::new();
    let deadline = Instant::now() + PATIENCE;
    while replayed.len() < letters.len() && Instant::now() < deadline {
        for (data, attributes) in emulator.pull(&format!("{topic}-pull")).await {
            assert!(
                replayed.insert(attributes["key"].clone(), data).is_none(),
                "replayed twice"
            );
        }
    }
    assert_eq!(
        replayed, letters,
        "every letter is back on its topic, key and bytes"
    );

    // Each letter was acknowledged: a second run finds nothing, and nothing is left.
    let again = dropgate_functions::pubsub::dead_letters::replay(
        &emulator.args(),
        &topic,
        Duration::from_secs(2),
        |_| {},
    )
    .await
    .expect("second replay");
    assert_eq!(again, 0, "a replayed letter was replayed again");
}
