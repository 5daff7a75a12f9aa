//! `dropgate event watch`: the operator's live view of a drop in the terminal. Every
//! second it reads the event from Redis (the line, the leader), PostgreSQL (the
//! authority: state, stock, decisions by outcome) and the functions' `/metrics` (consumer
//! lag, server errors), and draws the counts, the rates and their last minutes as
//! sparklines. `p`, `r` and `c` pause, resume and close the event, each after a `y`.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use dropgate_core::{EventId, EventState};
use dropgate_functions::queue::{EventKeys, QueueStore};
use ratatui::Frame;
use ratatui::crossterm::event::{
    self as terminal_event, Event, KeyCode, KeyEventKind, KeyModifiers,
};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Sparkline};
use sqlx::PgPool;

use crate::event_cli::EventTarget;
use crate::events;

/// Samples kept for the sparklines: three minutes at one a second.
const HISTORY: usize = 180;

/// `dropgate event watch` settings.
#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    /// The event, PostgreSQL and Redis.
    #[command(flatten)]
    pub target: EventTarget,
    /// The functions' metrics endpoints (their ops ports' `/metrics`, comma-separated):
    /// consumer lag and server errors come from there. With none, the local stack's
    /// (`DROPGATE_STATE_DIR`) are used if it runs.
    #[arg(
        long = "metrics-url",
        env = "DROPGATE_WATCH_METRICS_URLS",
        value_delimiter = ','
    )]
    pub metrics_urls: Vec<String>,
    /// The local stack's state directory, to find its functions' metrics.
    #[arg(long, env = "DROPGATE_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Milliseconds between two refreshes.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(100..))]
    pub interval_ms: u64,
}

/// One reading of the event.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    /// The authoritative state (PostgreSQL).
    pub state: String,
    /// The admitter instance holding the event's lease, if any.
    pub leader: Option<String>,
    /// Tickets handed out (entered).
    pub entered: u64,
    /// Users waiting in line.
    pub waiting: u64,
    /// Users admitted so far.
    pub admitted: u64,
    /// Admitted users the draw has not answered.
    pub in_flight: u64,
    /// Users decided by the draw.
    pub decided: u64,
    /// Decisions and answers without a draw, by outcome (won, lost, sold_out, expired, closed).
    pub outcomes: BTreeMap<String, u64>,
    /// Units for sale and units left.
    pub stock: (u64, u64),
    /// Messages each consumer group is behind, from the functions' metrics.
    pub lag: BTreeMap<String, u64>,
    /// queue-api's 5xx answers so far, from the metrics (None without metrics).
    pub errors: Option<u64>,
}

/// Per-second rates between two samples.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rates {
    /// Users entering per second.
    pub entered: f64,
    /// Users admitted per second.
    pub admitted: f64,
    /// Users decided per second.
    pub decided: f64,
    /// Server errors per second.
    pub errors: f64,
}

impl Rates {
    /// The rates from `before` to `after`, `seconds` apart (counters that went down,
    /// as after a restart, count as 0).
    pub fn between(before: &Sample, after: &Sample, seconds: f64) -> Self {
        let per_second = |from: u64, to: u64| to.saturating_sub(from) as f64 / seconds.max(0.001);
        Self {
            entered: per_second(before.entered, after.entered),
            admitted: per_second(before.admitted, after.admitted),
            decided: per_second(before.decided, after.decided),
            errors: match (before.errors, after.errors) {
                (Some(from), Some(to)) => per_second(from, to),
                _ => 0.0,
            },
        }
    }
}

/// What a key asks for, once confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Stop admitting (users keep their place).
    Pause,
    /// Admit again.
    Resume,
    /// Close: the line is told `closed`, the admitter reveals the seed.
    Close,
}

impl Action {
    fn target_state(self) -> EventState {
        match self {
            Action::Pause => EventState::Paused,
            Action::Resume => EventState::Open,
            Action::Close => EventState::Closing,
        }
    }

    fn question(self) -> &'static str {
        match self {
            Action::Pause => "Pause admissions? Users keep their place. (y/n)",
            Action::Resume => "Resume admissions? (y/n)",
            Action::Close => "Close the event? Everyone still waiting is told closed. (y/n)",
        }
    }
}

/// The view's state apart from the readings: the question awaiting a `y`, the last
/// message, whether to quit.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Controls {
    /// The action asked for, awaiting confirmation.
    pub pending: Option<Action>,
    /// The last thing that happened (an action's result, an error).
    pub message: String,
    /// `q` was pressed.
    pub quit: bool,
}

impl Controls {
    /// Takes one key; returns the action to carry out now (confirmed with `y`).
    pub fn key(&mut self, key: KeyCode, ctrl: bool) -> Option<Action> {
        if ctrl && key == KeyCode::Char('c') {
            self.quit = true;
            return None;
        }
        if let Some(action) = self.pending.take() {
            return match key {
                KeyCode::Char('y') | KeyCode::Char('Y') => Some(action),
                _ => {
                    self.message = "cancelled".to_owned();
                    None
                }
            };
        }
        match key {
            KeyCode::Char('q') | KeyCode::Esc => self.quit = true,
            KeyCode::Char('p') => self.pending = Some(Action::Pause),
            KeyCode::Char('r') => self.pending = Some(Action::Resume),
            KeyCode::Char('c') => self.pending = Some(Action::Close),
            _ => {}
        }
        None
    }
}

/// The readings over time.
#[derive(Debug, Default)]
pub struct History {
    last: Option<(Instant, Sample)>,
    rates: Rates,
    entered: VecDeque<u64>,
    admitted: VecDeque<u64>,
    decided: VecDeque<u64>,
}

impl History {
    /// Adds a reading taken at `at`.
    pub fn push(&mut self, at: Instant, sample: Sample) {
        if let Some((then, before)) = &self.last {
            self.rates = Rates::between(before, &sample, at.duration_since(*then).as_secs_f64());
            for (series, rate) in [
                (&mut self.entered, self.rates.entered),
                (&mut self.admitted, self.rates.admitted),
                (&mut self.decided, self.rates.decided),
            ] {
                if series.len() == HISTORY {
                    series.pop_front();
                }
                series.push_back(rate.round() as u64);
            }
        }
        self.last = Some((at, sample));
    }
}

/// Reads one sample of `event`.
async fn read(
    pool: &PgPool,
    store: Option<&QueueStore>,
    event: &EventId,
    metrics: &[String],
) -> Result<Sample> {
    let record = events::load(pool, event).await?;
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    for (outcome, count) in events::outcome_counts(pool, event)
        .await?
        .into_iter()
        .chain(events::undrawn_counts(pool, event).await?)
    {
        *outcomes.entry(outcome).or_default() += u64::try_from(count).unwrap_or(0);
    }
    let mut sample = Sample {
        state: record.state.as_str().to_owned(),
        decided: record.decisions_made,
        outcomes,
        stock: (u64::from(record.stock_total), u64::from(record.stock_left)),
        ..Sample::default()
    };
    if let Some(store) = store {
        let keys = EventKeys::new(event);
        let (entered, waiting, in_flight, admitted, leader): (
            Option<u64>,
            u64,
            u64,
            Option<u64>,
            Option<String>,
        ) = redis::pipe()
            .get(keys.seq())
            .llen(keys.line())
            .zcard(keys.inflight())
            .hget(keys.stats(), "admitted")
            .get(keys.leader())
            .query_async(&mut store.connection())
            .await
            .context("Failed to read the event in Redis")?;
        sample.entered = entered.unwrap_or(0);
        sample.waiting = waiting;
        sample.in_flight = in_flight;
        sample.admitted = admitted.unwrap_or(0);
        sample.leader = leader.map(|value| value.split('|').next().unwrap_or_default().to_owned());
    }
    if !metrics.is_empty() {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(500))
            .build()?;
        let mut errors = 0;
        for url in metrics {
            if let Ok(response) = client.get(url).send().await
                && let Ok(text) = response.text().await
            {
                let scraped = scrape(&text);
                errors += scraped.errors;
                for (group, lag) in scraped.lag {
                    *sample.lag.entry(group).or_default() += lag;
                }
            }
        }
        sample.errors = Some(errors);
    }
    Ok(sample)
}

/// What the view takes from one `/metrics` text.
#[derive(Debug, Default, PartialEq)]
pub struct Scraped {
    /// Consumer lag by group, summed over partitions.
    pub lag: BTreeMap<String, u64>,
    /// 5xx answers counted so far.
    pub errors: u64,
}

/// Reads the consumer lag and the 5xx count from Prometheus text.
pub fn scrape(text: &str) -> Scraped {
    let mut scraped = Scraped::default();
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let label = |name: &str| {
            let start = series.find(&format!("{name}=\""))? + name.len() + 2;
            let end = series[start..].find('"')? + start;
            Some(&series[start..end])
        };
        if series.starts_with("dropgate_consumer_lag{") {
            if let Some(group) = label("group") {
                *scraped.lag.entry(group.to_owned()).or_default() += value.max(0.0) as u64;
            }
        } else if series.starts_with("dropgate_http_requests_total{")
            && label("status").is_some_and(|status| status.starts_with('5'))
        {
            scraped.errors += value.max(0.0) as u64;
        }
    }
    scraped
}

/// Draws the view.
pub fn draw(frame: &mut Frame, event: &EventId, history: &History, controls: &Controls) {
    let sample = history
        .last
        .as_ref()
        .map(|(_, sample)| sample.clone())
        .unwrap_or_default();
    let rates = history.rates;
    let [header, counts, sparklines, footer] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Length(8),
        Constraint::Min(9),
        Constraint::Length(3),
    ])
    .areas(frame.area());

    let bold = Style::default().add_modifier(Modifier::BOLD);
    let state_color = match sample.state.as_str() {
        "open" => Color::Green,
        "paused" | "closing" => Color::Yellow,
        "closed" | "sold_out" => Color::Red,
        _ => Color::White,
    };
    frame.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled(format!("{event}  "), bold),
            Span::styled(sample.state.clone(), bold.fg(state_color)),
            Span::raw(format!(
                "   stock {} of {} left   leader {}",
                sample.stock.1,
                sample.stock.0,
                sample.leader.as_deref().unwrap_or("none")
            )),
        ]))
        .block(Block::bordered().title(" dropgate event watch ")),
        header,
    );

    let outcome = |name: &str| sample.outcomes.get(name).copied().unwrap_or(0);
    let lag = if sample.lag.is_empty() {
        if sample.errors.is_none() {
            "no metrics".to_owned()
        } else {
            "0".to_owned()
        }
    } else {
        sample
            .lag
            .iter()
            .map(|(group, lag)| format!("{group} {lag}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let lines = vec![
        Line::from(format!(
            "entered {:>9}   waiting {:>9}   admitted {:>9}   in flight {:>7}   decided {:>9}",
            sample.entered, sample.waiting, sample.admitted, sample.in_flight, sample.decided
        )),
        Line::from(format!(
            "won {:>9}   lost {:>9}   sold_out {:>9}   expired {:>7}   closed {:>9}",
            outcome("won"),
            outcome("lost"),
            outcome("sold_out"),
            outcome("expired"),
            outcome("closed")
        )),
        Line::from(format!(
            "entered/s {:>7.0}   admitted/s {:>7.0}   decided/s {:>7.0}   errors/s {:>5.1}",
            rates.entered, rates.admitted, rates.decided, rates.errors
        )),
        Line::from(format!("consumer lag: {lag}")),
    ];
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" now ")),
        counts,
    );

    let [entered, admitted, decided] =
        Layout::vertical([Constraint::Ratio(1, 3); 3]).areas(sparklines);
    for (area, title, series) in [
        (entered, " entered/s ", &history.entered),
        (admitted, " admitted/s ", &history.admitted),
        (decided, " decided/s ", &history.decided),
    ] {
        let data: Vec<u64> = series.iter().copied().collect();
        frame.render_widget(
            Sparkline::default()
                .block(Block::bordered().title(title))
                .data(&data)
                .style(Style::default().fg(Color::Cyan)),
            area,
        );
    }

    let prompt = match controls.pending {
        Some(action) => Line::from(Span::styled(action.question(), bold.fg(Color::Yellow))),
        None => Line::from(format!(
            "p pause · r resume · c close · q quit   {}",
            controls.message
        )),
    };
    frame.render_widget(Paragraph::new(prompt).block(Block::bordered()), footer);
}

/// Runs the view until `q`.
pub async fn run(args: WatchArgs) -> Result<()> {
    let event =
        EventId::parse(args.target.id.as_str()).map_err(|e| anyhow::anyhow!("--id: {e}"))?;
    let pool = args.target.database.pool(2).await?;
    events::load(&pool, &event).await?;
    let store = match args.target.redis() {
        Some(redis) => Some(QueueStore::connect(&redis).await?),
        None => None,
    };
    let metrics = if args.metrics_urls.is_empty() {
        local_metrics(args.state_dir.as_deref())
    } else {
        args.metrics_urls.clone()
    };
    let interval = Duration::from_millis(args.interval_ms);

    // Keys are read on a thread of their own: crossterm's reads block.
    let (keys_tx, mut keys) = tokio::sync::mpsc::unbounded_channel();
    let reader = std::thread::spawn(move || {
        loop {
            match terminal_event::poll(Duration::from_millis(100)) {
                Ok(true) => {
                    if let Ok(Event::Key(key)) = terminal_event::read()
                        && key.kind == KeyEventKind::Press
                        && keys_tx.send(key).is_err()
                    {
                        return;
                    }
                }
                Ok(false) => {
                    if keys_tx.is_closed() {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
    });

    let mut terminal = ratatui::init();
    let outcome = async {
        let mut history = History::default();
        let mut controls = Controls::default();
        let mut next = tokio::time::Instant::now();
        loop {
            if tokio::time::Instant::now() >= next {
                match read(&pool, store.as_ref(), &event, &metrics).await {
                    Ok(sample) => history.push(Instant::now(), sample),
                    Err(error) => controls.message = format!("{error:#}"),
                }
                next += interval;
            }
            terminal.draw(|frame| draw(frame, &event, &history, &controls))?;
            tokio::select! {
                key = keys.recv() => {
                    let Some(key) = key else { return Ok(()) };
                    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
                    if let Some(action) = controls.key(key.code, ctrl) {
                        controls.message = match apply(&pool, store.as_ref(), &event, action).await {
                            Ok(state) => format!("event is {state}"),
                            Err(error) => format!("{error:#}"),
                        };
                        next = tokio::time::Instant::now();
                    }
                    if controls.quit {
                        return Ok(());
                    }
                }
                () = tokio::time::sleep_until(next) => {}
            }
        }
    }
    .await;
    ratatui::restore();
    drop(keys);
    let _ = reader.join();
    outcome
}

/// Carries out a confirmed action as `dropgate event pause|open|close` would.
async fn apply(
    pool: &PgPool,
    store: Option<&QueueStore>,
    event: &EventId,
    action: Action,
) -> Result<String> {
    let record = events::transition(pool, event, action.target_state()).await?;
    if let Some(store) = store {
        events::mirror(store, &record).await?;
    }
    Ok(record.state.as_str().to_owned())
}

/// The local stack's functions' `/metrics` URLs, if it runs.
fn local_metrics(state_dir: Option<&std::path::Path>) -> Vec<String> {
    let Some(dir) = state_dir else {
        return Vec::new();
    };
    crate::stack::functions::load(dir)
        .unwrap_or_default()
        .iter()
        .filter(|instance| crate::stack::functions::is_running(instance))
        .map(|instance| format!("http://127.0.0.1:{}/metrics", instance.health_port()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_per_second_and_never_negative() {
        let before = Sample {
            entered: 100,
            admitted: 10,
            decided: 5,
            errors: Some(1),
            ..Sample::default()
        };
        let after = Sample {
            entered: 300,
            admitted: 30,
            decided: 4,
            errors: Some(3),
            ..Sample::default()
        };
        assert_eq!(
            Rates::between(&before, &after, 2.0),
            Rates {
                entered: 100.0,
                admitted: 10.0,
                decided: 0.0,
                errors: 1.0
            }
        );
    }

    #[test]
    fn every_action_needs_a_yes() {
        let mut controls = Controls::default();
        assert_eq!(controls.key(KeyCode::Char('c'), false), None);
        assert_eq!(controls.pending, Some(Action::Close));
        assert_eq!(
            controls.key(KeyCode::Char('n'), false),
            None,
            "anything but y cancels"
        );
        assert_eq!(controls.pending, None);
        controls.key(KeyCode::Char('p'), false);
        assert_eq!(controls.key(KeyCode::Char('y'), false), Some(Action::Pause));
        controls.key(KeyCode::Char('q'), false);
        assert!(controls.quit);
    }

    #[test]
    fn lag_and_errors_come_from_the_metrics_text() {
        let text = "# TYPE dropgate_consumer_lag gauge\n\
            dropgate_consumer_lag{group=\"goods-worker\",topic=\"waiting-queue\",partition=\"0\"} 12\n\
            dropgate_consumer_lag{group=\"goods-worker\",topic=\"waiting-queue\",partition=\"1\"} 3\n\
            dropgate_consumer_lag{group=\"result-relay\",topic=\"result-notification\",partition=\"0\"} 0\n\
            dropgate_http_requests_total{route=\"/v1/events/{event_id}/queue\",method=\"POST\",status=\"201\"} 900\n\
            dropgate_http_requests_total{route=\"/v1/events/{event_id}/queue\",method=\"POST\",status=\"503\"} 7\n";
        let scraped = scrape(text);
        assert_eq!(scraped.errors, 7);
        assert_eq!(
            scraped.lag,
            BTreeMap::from([
                ("goods-worker".to_owned(), 15),
                ("result-relay".to_owned(), 0)
            ])
        );
    }
}
