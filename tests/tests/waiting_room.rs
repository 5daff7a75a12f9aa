//! The waiting-room page in a real headless Chromium, driven over WebDriver against a
//! real queue-api on the test stack: the place in line and the result over a stream
//! (or by polling without one) through reloads, bad tokens as sentences, the local
//! sign-in by keyboard, embedding by a shop that hands the token over by
//! postMessage, and "check my result" re-running the visitor's draw from the public
//! decision log (and refusing a doctored one). The page's HTTP surface is specified in `waiting_room_http.rs`.
//!
//! Chromium and chromedriver are Debian's (`scripts/setup.sh` installs them). When
//! either is missing the browser tests fail and say so: a skipped browser test would
//! look like a passing one.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use dropgate_core::{Outcome, UserKey, UserState};
use dropgate_functions::auth::Claims;
use dropgate_functions::auth::dev::{DevKeys, LOCAL_AUDIENCE, LOCAL_ISSUER, LOCAL_KEY_ID};
use dropgate_tests::TestStack;
use dropgate_tests::api::{ApiServer, token};
use dropgate_tests::clock::now_ms;
use jwt_simple::prelude::{Duration as JwtDuration, RS256KeyPair, RSAKeyPairLike};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use reqwest::StatusCode;
use serde_json::{Value, json};
use thirtyfour::prelude::*;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long the page may take to show something it should show.
const PATIENCE: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------- the browser

/// chromedriver (and the Chromium it starts) in a process group of its own, killed
/// as a group when dropped, so no browser outlives a failed or panicking test.
struct ChromeDriver {
    child: Child,
    url: String,
    /// Chromium's profile; removed after the group is dead.
    profile: tempfile::TempDir,
}

impl ChromeDriver {
    fn start() -> Result<Self> {
        for (binary, package) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
            if !Path::new(binary).exists() {
                bail!(
                    "{binary} is missing: the waiting-room tests need a real browser. \
                     Run scripts/setup.sh (or apt-get install {package})"
                );
            }
        }
        let profile = tempfile::Builder::new()
            .prefix("dropgate-chromium-")
            .tempdir()?;
        // A free port, released just before chromedriver takes it.
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Chromium's config and crash reports go to the test's profile, not ~.
            .env("XDG_CONFIG_HOME", profile.path())
            .env("XDG_CACHE_HOME", profile.path())
            .process_group(0)
            .spawn()
            .with_context(|| format!("Failed to start {CHROMEDRIVER}"))?;
        Ok(Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            profile,
        })
    }

    async fn wait_ready(&self) -> Result<()> {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(response) = client.get(format!("{}/status", self.url)).send().await
                && response.status().is_success()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("chromedriver did not answer on {} within 15 s", self.url);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        // process_group(0) made the group id the child's pid. Chromium's crashpad
        // handlers leave the group (setsid) but exit as soon as the browser is gone.
        let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// A headless Chromium at phone size. Fields drop in order: the WebDriver session
/// first, then the process group.
struct Browser {
    driver: WebDriver,
    _chromedriver: ChromeDriver,
}

impl Browser {
    async fn start() -> Result<Self> {
        let chromedriver = ChromeDriver::start()?;
        chromedriver.wait_ready().await?;
        let mut caps = DesiredCapabilities::chrome();
        caps.set_binary(CHROMIUM)?;
        for arg in [
            "--headless=new",
            // Tests run as root, where Chromium's sandbox cannot start.
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
        ] {
            caps.add_arg(arg)?;
        }
        // A phone-size screen: the page must fit it without sideways scrolling.
        caps.add_experimental_option(
            "mobileEmulation",
            json!({"deviceMetrics": {"width": 390, "height": 844, "pixelRatio": 2}}),
        )?;
        caps.add_arg(&format!(
            "--user-data-dir={}",
            chromedriver.profile.path().display()
        ))?;
        let driver = WebDriver::new(chromedriver.url.as_str(), caps)
            .await
            .context("Failed to open a Chromium session")?;
        Ok(Self {
            driver,
            _chromedriver: chromedriver,
        })
    }

    /// What the page shows, read in one round trip.
    async fn snapshot(&self) -> Result<Value> {
        let script = r#"
            const text = (id) => { const e = document.getElementById(id); return e && !e.closest("[hidden]") ? e.textContent.trim() : null; };
            const room = document.getElementById("room");
            return {
                state: room ? room.dataset.state : null,
                transport: room ? room.dataset.transport : null,
                position: text("position"),
                ticket: text("ticket"),
                eta: text("eta"),
                result_title: text("result-title"),
                result_ticket: text("result-ticket"),
                error_title: text("error-title"),
                error_text: text("error-text"),
                error_code: text("error-code"),
                focused: document.activeElement ? document.activeElement.id : null,
                fits: document.documentElement.scrollWidth <= window.innerWidth,
                width: window.innerWidth,
                url: location.href,
                body: document.body ? document.body.innerText : "",
            };
        "#;
        Ok(self
            .driver
            .execute(script, Vec::new())
            .await?
            .json()
            .clone())
    }

    /// Polls the page until `ready` holds; the failure names what was awaited and
    /// shows what the page showed instead.
    async fn wait_until(&self, what: &str, ready: impl Fn(&Value) -> bool) -> Result<Value> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let snapshot = self.snapshot().await?;
            if ready(&snapshot) {
                return Ok(snapshot);
            }
            if Instant::now() > deadline {
                let picture = std::env::temp_dir().join(format!(
                    "waiting-room-{}-{}.png",
                    std::process::id(),
                    now_ms()
                ));
                let saved = match self.driver.screenshot(&picture).await {
                    Ok(()) => format!("screenshot: {}", picture.display()),
                    Err(error) => format!("no screenshot: {error}"),
                };
                bail!("the page never showed {what} ({saved}); it showed: {snapshot:#}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn quit(self) -> Result<()> {
        self.driver.quit().await?;
        Ok(())
    }
}

// ---------------------------------------------------------------- helpers

/// A token signed with the local stack's key that expired ten minutes ago.
fn expired_local_token(stack: &TestStack, platform: &str, user: &str) -> String {
    let pem = std::fs::read_to_string(DevKeys::in_state_dir(stack.state_dir()).private_key)
        .expect("the stack's key");
    let pair = RS256KeyPair::from_pem(&pem)
        .expect("RSA key")
        .with_key_id(LOCAL_KEY_ID);
    let now = jwt_simple::prelude::Clock::now_since_epoch();
    let mut claims = jwt_simple::prelude::Claims::with_custom_claims(
        Claims {
            user_id: Some(user.to_owned()),
            platform_id: Some(platform.to_owned()),
        },
        JwtDuration::from_hours(1),
    )
    .with_issuer(LOCAL_ISSUER)
    .with_audience(LOCAL_AUDIENCE);
    claims.issued_at = Some(now - JwtDuration::from_hours(2));
    claims.expires_at = Some(now - JwtDuration::from_mins(10));
    pair.sign(claims).expect("sign")
}

fn text<'a>(snapshot: &'a Value, field: &str) -> &'a str {
    snapshot[field].as_str().unwrap_or("")
}

// ---------------------------------------------------------------- in Chromium

#[tokio::test(flavor = "multi_thread")]
async fn the_page_shows_the_place_then_the_result_over_sse_and_survives_reloads() {
    let stack = TestStack::shared().await;
    let server = ApiServer::start(stack).await.expect("queue-api starts");
    let event = server.open_event(1).await.expect("event");
    // Someone is ahead, so the page has a real place to show.
    let (status, _) = server.enter(&event, &token("shop", "first")).await;
    assert_eq!(status, StatusCode::CREATED);
    let ana = UserKey::parse("shop", "ana").expect("user");
    let browser = Browser::start().await.expect("browser starts");

    let url = format!("{}#token={}", server.page_url(&event), token("shop", "ana"));
    browser.driver.goto(url).await.expect("goto");
    let waiting = browser
        .wait_until("a place in line over a stream", |s| {
            s["state"] == "waiting" && s["transport"] == "stream" && s["position"] == "2"
        })
        .await
        .expect("waiting");
    assert_eq!(waiting["ticket"], "2");
    assert!(!text(&waiting, "eta").is_empty());
    assert_eq!(waiting["width"], 390);
    assert_eq!(waiting["fits"], true, "no sideways scrolling on a phone");
    assert!(
        !text(&waiting, "url").contains("token"),
        "the token is taken out of the address bar: {}",
        waiting["url"]
    );

    browser.driver.refresh().await.expect("reload");
    let again = browser
        .wait_until("the same ticket after a reload", |s| {
            s["state"] == "waiting" && s["transport"] == "stream" && s["ticket"] == "2"
        })
        .await
        .expect("after reload");
    assert_eq!(again["position"], "2");

    let decided = Instant::now();
    server
        .decide(&event, &ana, UserState::Won, 2, 1)
        .await
        .expect("decide");
    let won = browser
        .wait_until("the result", |s| s["state"] == "won")
        .await
        .expect("result");
    eprintln!(
        "result on the page {} ms after it was written",
        decided.elapsed().as_millis()
    );
    assert_eq!(won["result_title"], "You won!");
    assert_eq!(won["result_ticket"], "2");
    assert_eq!(won["focused"], "result", "focus moves to the outcome");

    browser.driver.refresh().await.expect("reload");
    let after = browser
        .wait_until("the result after a reload", |s| s["state"] == "won")
        .await
        .expect("result after reload");
    assert_eq!(after["result_ticket"], "2");
    let (status, view) = server.enter(&event, &token("shop", "ana")).await;
    assert_eq!(status, StatusCode::OK, "reloads never made a new entry");
    assert_eq!(view["ticket"], 2);
    browser.quit().await.expect("quit");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_tokens_read_as_sentences_and_the_local_sign_in_works_by_keyboard() {
    let stack = TestStack::shared().await;
    let server = ApiServer::start_local_mode(stack)
        .await
        .expect("queue-api starts");
    let event = server.open_event(1).await.expect("event");
    let browser = Browser::start().await.expect("browser starts");

    let url = format!("{}#token=not-a-jwt", server.page_url(&event));
    browser.driver.goto(url).await.expect("goto");
    let error = browser
        .wait_until("an error", |s| s["state"] == "error")
        .await
        .expect("error");
    assert_eq!(error["error_code"], "malformed_token");
    assert_eq!(error["error_title"], "We couldn't confirm who you are");
    assert!(
        !text(&error, "body").contains('{'),
        "no raw JSON on the page: {}",
        error["body"]
    );

    browser.driver.goto("about:blank").await.expect("blank");
    let url = format!(
        "{}#token={}",
        server.page_url(&event),
        expired_local_token(stack, "shop", "late")
    );
    browser.driver.goto(url).await.expect("goto");
    let expired = browser
        .wait_until("the expired-token message", |s| {
            s["error_code"] == "token_expired"
        })
        .await
        .expect("expired");
    assert_eq!(expired["error_title"], "Your sign-in has expired");

    // Local mode offers its sign-in; everything by keyboard.
    let retry = browser
        .driver
        .find(By::Id("retry"))
        .await
        .expect("retry button");
    retry.send_keys(Key::Enter).await.expect("press retry");
    let form = browser
        .wait_until("the local sign-in with focus on the user field", |s| {
            s["state"] == "signed_out" && s["focused"] == "dev-user"
        })
        .await
        .expect("sign-in form");
    assert!(!text(&form, "body").is_empty());
    let user = browser.driver.active_element().await.expect("focused");
    user.send_keys(Key::Control + "a").await.expect("select");
    user.send_keys("keyboard-kim" + Key::Enter)
        .await
        .expect("type and submit");
    let waiting = browser
        .wait_until("a place after the local sign-in", |s| {
            s["state"] == "waiting" && s["position"] == "1"
        })
        .await
        .expect("signed in and waiting");
    assert_eq!(waiting["ticket"], "1");
    browser.quit().await.expect("quit");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_streams_the_page_polls_and_still_gets_the_result() {
    let stack = TestStack::shared().await;
    // No stream slots: every stream is refused with 503 too_many_streams.
    let server = ApiServer::start_with(stack, |args| args.max_streams = 0)
        .await
        .expect("queue-api starts");
    let event = server.open_event(100).await.expect("event");
    let bo = UserKey::parse("shop", "bo").expect("user");
    let browser = Browser::start().await.expect("browser starts");

    let url = format!("{}#token={}", server.page_url(&event), token("shop", "bo"));
    browser.driver.goto(url).await.expect("goto");
    browser
        .wait_until("a place by polling", |s| {
            s["state"] == "waiting" && s["transport"] == "poll" && s["position"] == "1"
        })
        .await
        .expect("polling");
    server
        .decide(&event, &bo, UserState::Lost, 1, 1)
        .await
        .expect("decide");
    let lost = browser
        .wait_until("the result by polling", |s| s["state"] == "lost")
        .await
        .expect("result");
    assert_eq!(lost["result_title"], "Not this time");
    browser.quit().await.expect("quit");
}

/// The "shop" that embeds the waiting room: one fixed HTML page on 127.0.0.1.
struct ShopPage {
    task: tokio::task::JoinHandle<()>,
}

impl ShopPage {
    fn serve(listener: tokio::net::TcpListener, html: String) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let task = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let html = html.clone();
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buffer = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buffer[..n]),
                        }
                    }
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=utf-8\r\n\
                         content-length: {}\r\nconnection: close\r\n\r\n{html}",
                        html.len()
                    );
                    let _ = socket.write_all(response.as_bytes()).await;
                });
            }
        });
        Self { task }
    }
}

impl Drop for ShopPage {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_embedding_shop_hands_the_token_over_by_post_message() {
    let stack = TestStack::shared().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    // Another origin than queue-api's (localhost, not 127.0.0.1), as in production.
    let shop_origin = format!(
        "http://localhost:{}",
        listener.local_addr().expect("addr").port()
    );
    let allowed = shop_origin.clone();
    let server = ApiServer::start_with(stack, move |args| args.cors_origins = vec![allowed])
        .await
        .expect("queue-api starts");
    let event = server.open_event(1).await.expect("event");
    let fay = UserKey::parse("shop", "framed-fay").expect("user");
    // The shop's script is the one docs/embedding.md shows.
    let html = format!(
        r#"<!doctype html><title>shop</title>
<iframe id="dropgate" title="Waiting room" src="{api}/e/{event}" width="390" height="700"></iframe>
<script>
  const DROPGATE = "{api}";
  const frame = document.getElementById("dropgate");
  window.addEventListener("message", (event) => {{
    if (event.origin !== DROPGATE || event.source !== frame.contentWindow) return;
    const message = event.data || {{}};
    if (message.type === "dropgate:ready" || message.type === "dropgate:token-expired") {{
      frame.contentWindow.postMessage({{ type: "dropgate:token", token: "{token}" }}, DROPGATE);
    }}
    if (message.type === "dropgate:position") document.body.dataset.position = message.position;
    if (message.type === "dropgate:result") document.body.dataset.outcome = message.outcome;
  }});
</script>"#,
        api = server.base,
        token = token("shop", "framed-fay"),
    );
    let _shop = ShopPage::serve(listener, html);
    let browser = Browser::start().await.expect("browser starts");

    browser
        .driver
        .goto(format!("{shop_origin}/"))
        .await
        .expect("goto shop");
    let read_shop = r#"return {position: document.body.dataset.position || null, outcome: document.body.dataset.outcome || null};"#;
    let deadline = Instant::now() + PATIENCE;
    let mut decided = false;
    loop {
        let shop: Value = browser
            .driver
            .execute(read_shop, Vec::new())
            .await
            .expect("read the shop page")
            .json()
            .clone();
        if !decided && shop["position"] == "1" {
            // The frame entered the queue with the token the shop posted.
            server
                .decide(&event, &fay, UserState::Won, 1, 1)
                .await
                .expect("decide");
            decided = true;
        }
        if shop["outcome"] == "won" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the framed waiting room never reported {}: the shop saw {shop}",
            if decided { "the result" } else { "a position" }
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    browser.quit().await.expect("quit");
}

/// How a test publishes a drop's decision log.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Published {
    /// As the drop happened.
    Honest,
    /// As the drop happened, with a beacon's value mixed into its key.
    HonestWithBeacon,
    /// With the visitor's recorded outcome changed.
    OutcomeChanged,
    /// With a seed that is not the committed one.
    SeedSwapped,
    /// With another seed and its commitment, the server's record changed to match:
    /// only what the page saw before the close gives it away.
    SeedAndCommitmentSwapped,
}

/// The page's "check my result" section, read in one round trip.
async fn check_section(browser: &Browser) -> Result<Value> {
    let script = r#"
        const box = document.getElementById("check");
        return {
            shown: !box.hidden,
            check: box.dataset.check,
            button_enabled: !document.getElementById("check-button").disabled,
            status: document.getElementById("check-status").textContent.trim(),
            details: document.getElementById("check-details").innerText,
        };
    "#;
    Ok(browser
        .driver
        .execute(script, Vec::new())
        .await?
        .json()
        .clone())
}

async fn wait_for_check(
    browser: &Browser,
    what: &str,
    ready: impl Fn(&Value) -> bool,
) -> Result<Value> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let section = check_section(browser).await?;
        if ready(&section) {
            return Ok(section);
        }
        if Instant::now() > deadline {
            bail!("the check never showed {what}; it showed: {section:#}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn check_my_result_re_runs_the_visitors_own_draw_in_the_browser() {
    use dropgate_core::{
        Beacon, EventSeed, RecordedDecision, RecordedEvent, WinProbability, decide_batch,
    };
    use dropgate_functions::fairness::{self, DropRecords};
    use dropgate_functions::queue::PublicFairness;

    let stack = TestStack::shared().await;
    let server = ApiServer::start(stack).await.expect("queue-api starts");
    let browser = Browser::start().await.expect("browser starts");
    let ana = UserKey::parse("shop", "ana").expect("user");
    for published in [
        Published::Honest,
        Published::HonestWithBeacon,
        Published::OutcomeChanged,
        Published::SeedSwapped,
        Published::SeedAndCommitmentSwapped,
    ] {
        let event = server.open_event(1).await.expect("event");
        // Five people ahead of ana: her outcome depends on the stock they leave her.
        let mut line = Vec::new();
        for n in 1..=5 {
            let user = format!("x{n}");
            let (status, _) = server.enter(&event, &token("shop", &user)).await;
            assert_eq!(status, StatusCode::CREATED);
            line.push(UserKey::parse("shop", &user).expect("user"));
        }
        let url = format!("{}#token={}", server.page_url(&event), token("shop", "ana"));
        browser.driver.goto(url).await.expect("goto");
        browser
            .wait_until("ana in line", |s| {
                s["state"] == "waiting" && s["ticket"] == "6"
            })
            .await
            .expect("waiting");
        line.push(ana.clone());

        // The drop: everyone decided in ticket order under the committed seed, whose
        // record is public from the start.
        let seed = EventSeed::from_bytes([17; 32]);
        let beacon = (published == Published::HonestWithBeacon).then(|| Beacon {
            round: "drand-quicknet/4242".into(),
            value: Some("5a".repeat(32)),
        });
        let key = seed.event_key(beacon.as_ref()).expect("key");
        let probability = WinProbability::new(0.5).expect("valid");
        // Enough that ana is drawn with stock left: her draw value decides.
        let stock = 6;
        let mut public = PublicFairness::before_reveal(
            seed.commitment().to_hex(),
            stock,
            probability.get(),
            "fifo",
        )
        .expect("record");
        public.beacon = beacon.clone();
        server
            .store
            .put_fairness(&event, &public)
            .await
            .expect("record");
        let decided = decide_batch(&key, &event, probability, stock, &line);
        let now = now_ms();
        let decisions: Vec<RecordedDecision> = decided
            .iter()
            .zip(&line)
            .enumerate()
            .map(|(i, ((value, decision), user))| RecordedDecision {
                order: i as u64 + 1,
                ticket: i as u64 + 1,
                user: user.clone(),
                draw_value: *value,
                outcome: decision.outcome,
                decided_at_ms: now,
            })
            .collect();
        let anas = decisions.last().expect("ana decided").outcome;
        assert!(matches!(anas, Outcome::Won | Outcome::Lost), "{anas:?}");
        server
            .decide(&event, &ana, anas.user_state(), 6, 6)
            .await
            .expect("decide");
        let shown = browser
            .wait_until("ana's result", |s| s["state"] == anas.as_str())
            .await
            .expect("result");
        assert_eq!(shown["result_ticket"], "6");
        let before = wait_for_check(&browser, "the check, waiting for the close", |c| {
            c["shown"] == true
        })
        .await
        .expect("check offered");
        assert_eq!(
            before["button_enabled"], false,
            "nothing to check before the close: {before}"
        );

        // The close: the seed and the decision log become public.
        let left = stock
            - decisions
                .iter()
                .filter(|d| d.outcome == Outcome::Won)
                .count() as u32;
        let drop = DropRecords {
            facts: RecordedEvent {
                stock_total: stock,
                stock_left: left,
                decisions_made: decisions.len() as u64,
                closing_at_ms: Some(now),
                seed_revealed_at_ms: Some(now + 1),
            },
            decisions,
            without_a_draw: Vec::new(),
            beacon,
        };
        let mut log = fairness::data(&event, "closed", &public, Some((&seed, &drop)));
        match published {
            Published::Honest | Published::HonestWithBeacon => {}
            Published::OutcomeChanged => {
                let changed = if anas == Outcome::Won { "lost" } else { "won" };
                log["decisions"][5]["outcome"] = changed.into();
            }
            Published::SeedSwapped => {
                log["seed"] = EventSeed::from_bytes([18; 32]).to_hex().into();
            }
            Published::SeedAndCommitmentSwapped => {
                let other = EventSeed::from_bytes([19; 32]);
                log["seed"] = other.to_hex().into();
                log["commitment"] = other.commitment().to_hex().into();
                public.commitment = other.commitment().to_hex();
            }
        }
        public.seed = Some((log["seed"].as_str().expect("seed").to_owned(), now + 1));
        server
            .store
            .put_decision_log(&event, Some(&log.to_string()), 6)
            .await
            .expect("log");
        server
            .store
            .put_fairness(&event, &public)
            .await
            .expect("record");

        wait_for_check(&browser, "the check button enabled", |c| {
            c["button_enabled"] == true
        })
        .await
        .expect("enabled after the close");
        browser
            .driver
            .find(By::Id("check-button"))
            .await
            .expect("the button")
            .click()
            .await
            .expect("click");
        let verdict = wait_for_check(&browser, "a verdict", |c| {
            c["check"] == "pass" || c["check"] == "fail"
        })
        .await
        .expect("verdict");
        let status = text(&verdict, "status").to_owned();
        eprintln!("{published:?}: {status}\n{}", text(&verdict, "details"));
        match published {
            Published::Honest | Published::HonestWithBeacon => {
                assert_eq!(verdict["check"], "pass", "{verdict:#}");
                assert!(
                    status.contains(&anas.as_str().replace('_', " ")),
                    "the verdict names the outcome: {status}"
                );
                let details = text(&verdict, "details");
                let pseudonym = dropgate_core::pseudonym(&key, &event, &ana);
                assert!(
                    details.contains(&pseudonym),
                    "the page computed ana's pseudonym {pseudonym}: {details}"
                );
                assert!(
                    details.contains(&dropgate_core::draw_value(&key, &event, &ana).to_string()),
                    "the page computed ana's draw value: {details}"
                );
            }
            Published::OutcomeChanged => {
                assert_eq!(verdict["check"], "fail", "{verdict:#}");
                assert!(status.contains("should be"), "{status}");
            }
            Published::SeedSwapped | Published::SeedAndCommitmentSwapped => {
                assert_eq!(verdict["check"], "fail", "{verdict:#}");
                assert!(status.contains("commitment"), "{status}");
            }
        }
    }
    browser.quit().await.expect("quit");
    server.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_link_with_another_users_token_asks_before_taking_the_place() {
    let stack = TestStack::shared().await;
    let server = ApiServer::start(stack).await.expect("queue-api starts");
    let event = server.open_event(1).await.expect("event");
    let browser = Browser::start().await.expect("browser starts");
    let page = server.page_url(&event);

    browser
        .driver
        .goto(format!("{page}#token={}", token("shop", "ana")))
        .await
        .expect("goto");
    browser
        .wait_until("ana in line", |s| {
            s["state"] == "waiting" && s["ticket"] == "1"
        })
        .await
        .expect("ana waiting");

    // A link carrying someone else's token (a query string so the page loads anew).
    let link = format!("{page}?from=link#token={}", token("shop", "bob"));
    browser.driver.goto(&link).await.expect("goto");
    let asked = browser
        .wait_until("the question", |s| s["state"] == "choosing")
        .await
        .expect("asked");
    let body = text(&asked, "body");
    assert!(
        body.contains("shop/bob") && body.contains("shop/ana"),
        "{body}"
    );
    assert_eq!(asked["focused"], "switch-keep", "keeping is the default");
    browser
        .driver
        .find(By::Id("switch-keep"))
        .await
        .expect("button")
        .click()
        .await
        .expect("click");
    browser
        .wait_until("ana's place kept", |s| {
            s["state"] == "waiting" && s["ticket"] == "1"
        })
        .await
        .expect("kept");
    let (status, _) = server.status(&event, &token("shop", "bob")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "bob was never entered");

    // The same link opened again (another query string: a fresh load, not a jump).
    browser
        .driver
        .goto(link.replace("?from=link", "?from=link-again"))
        .await
        .expect("goto");
    browser
        .wait_until("the question again", |s| s["state"] == "choosing")
        .await
        .expect("asked again");
    browser
        .driver
        .find(By::Id("switch-take"))
        .await
        .expect("button")
        .click()
        .await
        .expect("click");
    browser
        .wait_until("bob in line", |s| {
            s["state"] == "waiting" && s["ticket"] == "2"
        })
        .await
        .expect("bob waiting");
    browser.quit().await.expect("quit");
    server.stop().await.expect("stop");
}
