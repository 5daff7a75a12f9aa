//! After the drop, every user asks again. What a client saw along the way proves
//! little: a store that lost writes after a client heard its result leaves that user
//! with a different answer (or none) the next time they ask. So once the event is
//! closed, each user's status is requested afresh through the public API and compared
//! with PostgreSQL (the draws, and `final_states` for users told an outcome without a
//! draw), with what their client saw, and with the ticket order.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};
use dropgate_core::{EventId, UserState};
use dropgate_functions::queue_api::QueueView;
use futures_util::StreamExt;
use indicatif::MultiProgress;
use serde::Serialize;
use sqlx::PgPool;

use super::drive::bar;
use super::prepare::identity;

/// Status requests in flight at once.
const CONCURRENCY: usize = 32;
/// Tries per status request before the user counts as unanswered.
const ATTEMPTS: u32 = 5;
/// Disagreements kept as examples.
const SAMPLES: usize = 20;

/// A user asked, and what the API answered.
type Answer = (Asked, Result<Option<QueueView>>);

/// One user to ask again.
#[derive(Debug, Clone)]
pub(crate) struct Asked {
    pub(crate) index: u32,
    pub(crate) token: Arc<str>,
    /// The final state their client saw, if it saw one.
    pub(crate) seen: Option<&'static str>,
}

/// What the fresh look at every user found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Recheck {
    /// Users asked.
    pub users: u64,
    /// Users whose fresh answer is a final state.
    pub final_states: u64,
    /// Users the API says never entered (refused at the door).
    pub never_entered: u64,
    /// Answers that contradict PostgreSQL, the client, another user's ticket or the
    /// ticket order.
    pub disagreements: u64,
    /// A few of them, in words.
    pub samples: Vec<String>,
    /// Why the check could not run, if it could not.
    pub error: Option<String>,
}

impl Recheck {
    /// Everyone answered, with a final state or as never entered, and nothing
    /// disagrees.
    pub fn passed(&self) -> bool {
        self.error.is_none()
            && self.disagreements == 0
            && self.final_states + self.never_entered == self.users
    }

    /// A failed check, for when it could not run at all.
    pub(crate) fn failed(users: u64, error: &anyhow::Error) -> Self {
        Self {
            users,
            error: Some(format!("{error:#}")),
            ..Self::default()
        }
    }

    fn disagree(&mut self, what: String) {
        self.disagreements += 1;
        if self.samples.len() < SAMPLES {
            self.samples.push(what);
        }
    }

    /// One line for the summary.
    pub fn describe(&self) -> String {
        if let Some(error) = &self.error {
            return format!("FAIL (could not ask: {error})");
        }
        let verdict = if self.passed() { "pass" } else { "FAIL" };
        let mut line = format!(
            "{verdict} ({} users asked again: {} final, {} never entered, {} disagree with PostgreSQL or their client",
            self.users, self.final_states, self.never_entered, self.disagreements
        );
        let unanswered = self
            .users
            .saturating_sub(self.final_states + self.never_entered);
        if unanswered > 0 {
            line.push_str(&format!(", {unanswered} without a final answer"));
        }
        line.push(')');
        line
    }
}

/// What PostgreSQL holds for each user of the event.
struct Recorded {
    /// (platform, user) -> (outcome, ticket)
    draws: HashMap<(String, String), (String, u64)>,
    /// (platform, user) -> state, for users told an outcome without a draw.
    without_a_draw: HashMap<(String, String), String>,
}

impl Recorded {
    async fn load(pool: &PgPool, event: &EventId) -> Result<Self> {
        let draws = sqlx::query_as::<_, (String, String, String, i64)>(
            "select platform_id, user_id, outcome, ticket from draws where event_id = $1",
        )
        .bind(event.as_str())
        .fetch_all(pool)
        .await?
        .into_iter()
        .map(|(platform, user, outcome, ticket)| ((platform, user), (outcome, ticket as u64)))
        .collect();
        let without_a_draw = sqlx::query_as::<_, (String, String, String)>(
            "select platform_id, user_id, state from final_states where event_id = $1",
        )
        .bind(event.as_str())
        .fetch_all(pool)
        .await?
        .into_iter()
        .map(|(platform, user, state)| ((platform, user), state))
        .collect();
        Ok(Self {
            draws,
            without_a_draw,
        })
    }
}

/// Asks every user again and compares; `refused_at_the_door` is how many the crowd
/// counted as refused at entry (sold out or closed), which the API must agree never
/// entered.
pub(crate) async fn recheck(
    pool: &PgPool,
    client: &reqwest::Client,
    queue_url: &str,
    event: &EventId,
    people: Vec<Asked>,
    refused_at_the_door: u64,
    bars: &MultiProgress,
) -> Result<Recheck> {
    let recorded = Recorded::load(pool, event).await?;
    let progress = bar(bars, people.len() as u64, "asking again");
    let url = format!("{queue_url}/me");
    let answers: Vec<Answer> = futures_util::stream::iter(people)
        .map(|person| {
            let (client, url, progress) = (client.clone(), url.clone(), progress.clone());
            async move {
                let answer = look_up(&client, &url, &person.token).await;
                progress.inc(1);
                (person, answer)
            }
        })
        .buffered(CONCURRENCY)
        .collect()
        .await;
    progress.finish();
    Ok(compare(&recorded, answers, refused_at_the_door))
}

fn compare(recorded: &Recorded, answers: Vec<Answer>, refused_at_the_door: u64) -> Recheck {
    let mut found = Recheck {
        users: answers.len() as u64,
        ..Recheck::default()
    };
    let mut tickets = HashSet::new();
    // The highest ticket drawn and the lowest told it had no draw: in a fair queue
    // every user drawn stood ahead of every user swept (expired users are skipped
    // wherever they stand, so they do not count).
    let mut max_drawn: Option<(u64, String)> = None;
    let mut min_swept: Option<(u64, String)> = None;
    for (person, answer) in answers {
        let (platform, user) = identity(person.index);
        let key = (platform.to_owned(), user);
        let who = format!("{}:{}", key.0, key.1);
        let draw = recorded.draws.get(&key);
        let view = match answer {
            Ok(view) => view,
            Err(error) => {
                found.disagree(format!("{who}: no answer ({error:#})"));
                continue;
            }
        };
        let Some(view) = view else {
            found.never_entered += 1;
            if !matches!(person.seen, Some("sold_out" | "closed")) || draw.is_some() {
                found.disagree(format!(
                    "{who} is not in the queue, yet its client saw {:?} and PostgreSQL holds the draw {draw:?}",
                    person.seen
                ));
            }
            continue;
        };
        let state = view.state.as_str();
        if view.state.is_final() && view.poll_after_ms == 0 {
            found.final_states += 1;
        } else {
            found.disagree(format!(
                "{who}: {state} is not final (poll_after_ms {})",
                view.poll_after_ms
            ));
            continue;
        }
        if let Some(seen) = person.seen
            && seen != state
        {
            found.disagree(format!(
                "{who}: the API says {state}, its client saw {seen}"
            ));
        }
        if !tickets.insert(view.ticket) {
            found.disagree(format!("{who}: ticket {} is held twice", view.ticket));
        }
        match draw {
            Some((outcome, ticket)) => {
                if outcome != state {
                    found.disagree(format!(
                        "{who}: the API says {state}, the draw says {outcome}"
                    ));
                }
                if *ticket != view.ticket {
                    found.disagree(format!(
                        "{who}: ticket {} in the API, {ticket} in the draw",
                        view.ticket
                    ));
                }
                if max_drawn.as_ref().is_none_or(|(t, _)| view.ticket > *t) {
                    max_drawn = Some((view.ticket, who));
                }
            }
            None => {
                let known = recorded.without_a_draw.get(&key).map(String::as_str);
                if !matches!(
                    view.state,
                    UserState::SoldOut | UserState::Closed | UserState::Expired
                ) {
                    found.disagree(format!(
                        "{who}: the API says {state} but it was never drawn"
                    ));
                } else if known != Some(state) {
                    found.disagree(format!(
                        "{who}: the API says {state}, PostgreSQL records {known:?}"
                    ));
                }
                if view.state != UserState::Expired
                    && min_swept.as_ref().is_none_or(|(t, _)| view.ticket < *t)
                {
                    min_swept = Some((view.ticket, who));
                }
            }
        }
    }
    if found.never_entered != refused_at_the_door {
        found.disagree(format!(
            "{} users are not in the queue, the crowd counted {refused_at_the_door} refused at the door",
            found.never_entered
        ));
    }
    if let (Some((drawn, drawn_who)), Some((swept, swept_who))) = (&max_drawn, &min_swept)
        && drawn >= swept
    {
        found.disagree(format!(
            "not FIFO: {drawn_who} (ticket {drawn}) was drawn, {swept_who} (ticket {swept}) ahead of it was told it had no draw"
        ));
    }
    found
}

/// One user's `GET .../queue/me`: `None` when the API says they never entered (404
/// `not_in_queue`). Transient failures (a network error, 429, 5xx) are retried.
async fn look_up(client: &reqwest::Client, url: &str, token: &str) -> Result<Option<QueueView>> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let answer = client
            .get(url)
            .bearer_auth(token)
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        match answer {
            Ok(response) if response.status().is_success() => {
                return Ok(Some(response.json().await?));
            }
            Ok(response) if response.status() == reqwest::StatusCode::NOT_FOUND => {
                let body: serde_json::Value = response.json().await?;
                if body["error"]["code"] == "not_in_queue" {
                    return Ok(None);
                }
                bail!("404 {body}");
            }
            Ok(response)
                if attempt < ATTEMPTS
                    && (response.status().is_server_error()
                        || response.status() == reqwest::StatusCode::TOO_MANY_REQUESTS) =>
            {
                tokio::time::sleep(Duration::from_millis(200) * attempt).await;
            }
            Ok(response) => {
                let status = response.status();
                bail!("{status} {}", response.text().await.unwrap_or_default());
            }
            Err(_) if attempt < ATTEMPTS => {
                tokio::time::sleep(Duration::from_millis(200) * attempt).await;
            }
            Err(error) => bail!("{}", error.without_url()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(ticket: u64, state: UserState) -> QueueView {
        QueueView {
            event_id: "e".into(),
            ticket,
            state,
            position: 0,
            eta_s: 0,
            poll_after_ms: if state.is_final() { 0 } else { 1_000 },
            result: None,
        }
    }

    fn asked(index: u32, seen: Option<&'static str>) -> Asked {
        Asked {
            index,
            token: Arc::from("t"),
            seen,
        }
    }

    fn key(index: u32) -> (String, String) {
        let (platform, user) = identity(index);
        (platform.to_owned(), user)
    }

    fn recorded() -> Recorded {
        Recorded {
            draws: HashMap::from([
                (key(0), ("won".to_owned(), 1)),
                (key(1), ("lost".to_owned(), 2)),
            ]),
            without_a_draw: HashMap::from([(key(2), "sold_out".to_owned())]),
        }
    }

    #[test]
    fn agreeing_answers_pass() {
        let found = compare(
            &recorded(),
            vec![
                (asked(0, Some("won")), Ok(Some(view(1, UserState::Won)))),
                (asked(1, None), Ok(Some(view(2, UserState::Lost)))),
                (
                    asked(2, Some("sold_out")),
                    Ok(Some(view(3, UserState::SoldOut))),
                ),
                (asked(3, Some("sold_out")), Ok(None)),
            ],
            1,
        );
        assert!(found.passed(), "{found:?}");
        assert_eq!((found.final_states, found.never_entered), (3, 1));
    }

    #[test]
    fn every_kind_of_contradiction_is_caught() {
        let cases: Vec<(&str, Vec<Answer>, u64)> = vec![
            (
                "the API contradicts the draw",
                vec![(asked(0, None), Ok(Some(view(1, UserState::Lost))))],
                0,
            ),
            (
                "the API contradicts the client",
                vec![(asked(0, Some("lost")), Ok(Some(view(1, UserState::Won))))],
                0,
            ),
            (
                "a user stuck admitted",
                vec![(
                    asked(0, Some("won")),
                    Ok(Some(view(1, UserState::Admitted))),
                )],
                0,
            ),
            (
                "a ticket other than the draw's",
                vec![(asked(0, None), Ok(Some(view(7, UserState::Won))))],
                0,
            ),
            (
                "a ticket held twice",
                vec![
                    (asked(0, None), Ok(Some(view(1, UserState::Won)))),
                    (asked(2, None), Ok(Some(view(1, UserState::SoldOut)))),
                ],
                0,
            ),
            (
                "a final state PostgreSQL does not know",
                vec![(asked(4, None), Ok(Some(view(4, UserState::Closed))))],
                0,
            ),
            (
                "a drawn user the API has forgotten",
                vec![(asked(1, Some("lost")), Ok(None))],
                0,
            ),
            (
                "a user swept ahead of one drawn",
                vec![
                    (asked(2, None), Ok(Some(view(1, UserState::SoldOut)))),
                    (asked(1, None), Ok(Some(view(2, UserState::Lost)))),
                ],
                0,
            ),
            (
                "more never entered than were refused",
                vec![(asked(3, Some("closed")), Ok(None))],
                0,
            ),
            (
                "no answer at all",
                vec![(asked(0, None), Err(anyhow::anyhow!("connection refused")))],
                0,
            ),
        ];
        for (what, answers, refused) in cases {
            let found = compare(&recorded(), answers, refused);
            assert!(!found.passed(), "{what} passed: {found:?}");
            assert!(found.disagreements > 0, "{what}: {found:?}");
        }
    }
}
