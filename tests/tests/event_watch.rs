//! `dropgate event watch` as an operator uses it: in a pseudo-terminal, against a drop
//! with users in line and an admitter admitting them, the screen follows the live
//! counts; `p` then `y` pauses the event in PostgreSQL and Redis; `q` quits.

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dropgate_core::EventId;
use dropgate_tests::api::{ApiServer, token};
use dropgate_tests::{TestStack, dropgate_binary};
use portable_pty::{CommandBuilder, PtySize, native_pty_system};

/// Stops the watched process if the test fails first.
struct KillOnDrop(Box<dyn portable_pty::Child + Send + Sync>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until the screen shows what `seen` looks for; returns the screen.
fn wait_for_screen(
    screen: &Mutex<vt100::Parser>,
    what: &str,
    seen: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = screen.lock().expect("screen").screen().contents();
        if seen(&text) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "the screen never showed {what}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_live_view_shows_the_line_and_pauses_the_event_when_asked() {
    let stack = TestStack::shared().await;
    let (pool, database_url) = stack.fresh_database().await.expect("database");
    let redis_url = stack.env.redis_url.clone();
    let id = TestStack::unique("watch");
    let cli = |args: &[&str]| {
        let output = std::process::Command::new(dropgate_binary().expect("built"))
            .args(args)
            .env("DATABASE_URL", &database_url)
            .env("DROPGATE_REDIS_URL", &redis_url)
            .env(
                "DROPGATE_SEED_KEY_FILE",
                stack.env.seed_key_args().seed_key_file,
            )
            .output()
            .expect("dropgate runs");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    cli(&["event", "create", "--id", &id, "--stock", "5"]);
    cli(&["event", "open", "--id", &id]);
    let event = EventId::parse(id.as_str()).expect("valid");
    let server = ApiServer::start(stack).await.expect("queue-api starts");
    for n in 0..25 {
        let (code, body) = server
            .enter(&event, &token("shop", &format!("fan-{n}")))
            .await;
        assert_eq!(code, 201, "{body}");
    }

    let pty = native_pty_system()
        .openpty(PtySize {
            rows: 30,
            cols: 120,
            pixel_width: 0,
            pixel_height: 0,
        })
        .expect("a pseudo-terminal");
    let mut command = CommandBuilder::new(dropgate_binary().expect("built"));
    command.args(["event", "watch", "--id", &id, "--interval-ms", "200"]);
    command.env("DATABASE_URL", &database_url);
    command.env("DROPGATE_REDIS_URL", &redis_url);
    command.env("TERM", "xterm-256color");
    let child = KillOnDrop(pty.slave.spawn_command(command).expect("watch starts"));
    drop(pty.slave);
    let screen = Arc::new(Mutex::new(vt100::Parser::new(30, 120, 0)));
    let mut output = pty.master.try_clone_reader().expect("reader");
    let feed = Arc::clone(&screen);
    std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        while let Ok(n) = output.read(&mut buffer) {
            if n == 0 {
                break;
            }
            feed.lock().expect("screen").process(&buffer[..n]);
        }
    });
    let mut keys = pty.master.take_writer().expect("writer");

    let shown = wait_for_screen(&screen, "the line of 25", |text| {
        text.contains(&id)
            && text.contains("open")
            && counted(text, "entered", 25)
            && counted(text, "waiting", 25)
    });
    assert!(shown.contains("stock 5 of 5 left"), "{shown}");
    assert!(
        counted(&shown, "in flight", 0) && counted(&shown, "won", 0),
        "{shown}"
    );

    // The drop runs: the admitter admits the line (no goods-worker here, so the users
    // stay in flight), and the view follows it.
    let _admitter = dropgate_tests::admitter::serve(stack, &database_url, &event).await;
    let moving = wait_for_screen(&screen, "the line admitted", |text| {
        counted(text, "waiting", 0)
            && counted(text, "admitted", 25)
            && counted(text, "in flight", 25)
    });
    assert!(
        !moving.contains("leader none"),
        "the admitter holds the lease: {moving}"
    );

    keys.write_all(b"p").expect("key");
    wait_for_screen(&screen, "the question", |text| {
        text.contains("Pause admissions?")
    });
    let state: String = sqlx::query_scalar("select state from events where event_id = $1")
        .bind(&id)
        .fetch_one(&pool)
        .await
        .expect("state");
    assert_eq!(state, "open", "nothing happens before the yes");
    keys.write_all(b"y").expect("key");
    wait_for_screen(&screen, "the paused event", |text| text.contains("paused"));
    let state: String = sqlx::query_scalar("select state from events where event_id = $1")
        .bind(&id)
        .fetch_one(&pool)
        .await
        .expect("state");
    assert_eq!(state, "paused");
    let mirrored: Option<String> = redis::cmd("HGET")
        .arg(dropgate_functions::queue::EventKeys::new(&event).meta())
        .arg("state")
        .query_async(&mut server.store.connection())
        .await
        .expect("HGET");
    assert_eq!(mirrored.as_deref(), Some("paused"), "queue-api sees it too");

    keys.write_all(b"q").expect("key");
    let mut child = child;
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "q did not quit");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
}

/// Whether the screen shows `label` followed by the number `count`.
fn counted(text: &str, label: &str, count: u64) -> bool {
    text.split(label)
        .skip(1)
        .any(|rest| rest.split_whitespace().next() == Some(count.to_string().as_str()))
}
