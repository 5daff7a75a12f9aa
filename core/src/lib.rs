//! dropgate's rules, as pure functions.
//!
//! Nothing here does I/O, awaits, reads a clock or draws randomness: time and random
//! values are arguments, so every rule is tested exhaustively and replayed exactly.
//! The function binaries in `dropgate-functions` parse config, move bytes between
//! Redis, Kafka and PostgreSQL, and call into this crate for every decision.
//!
//! - [`identity`]: who a user is (`platformId` + `userId`) and which event.
//! - [`state`]: the user and event state machines.
//! - [`config`]: an event's settings and their validation.
//! - [`position`]: place in line, ETA, poll interval.
//! - [`admission`]: how many to admit per tick.
//! - [`draw`]: seed, commitment, draw value, decision.
//! - [`shuffle`]: the randomized pre-queue.
//! - [`mod@verify`]: replaying a closed event's draw.
//! - [`messages`]: the two Kafka message formats.

pub mod admission;
pub mod config;
pub mod draw;
pub mod hex;
pub mod identity;
pub mod messages;
pub mod position;
pub mod record;
pub mod shuffle;
pub mod state;
pub mod verify;

pub use admission::{Admission, AdmissionLimits, Downstream, TokenBucket, admit};
pub use config::{ConfigProblem, ConfigProblems, EventConfig, QueueMode, ValidatedEvent};
pub use draw::{
    Beacon, BeaconProblem, DRAW_RULE, Decision, EventSeed, Outcome, SeedCommitment, WinProbability,
    decide, decide_batch, draw_value, draw_value_of_pseudonym, pseudonym,
};
pub use identity::{EventId, IdError, PlatformId, UserId, UserKey};
pub use messages::{
    Admissions, Admitted, AdmittedBatch, BatchWinners, DrawResult, MESSAGE_VERSION, Message,
    MessageError, Winner,
};
pub use position::{Standing, standing};
pub use record::{Decided, MalformedRecord, UserRecord};
pub use shuffle::shuffle_pre_queue;
pub use state::{CloseNow, Closing, EventState, IllegalTransition, Step, UserState};
pub use verify::{
    CLOCK_TOLERANCE_MS, Finding, RecordedDecision, RecordedEvent, RecordedWithoutDraw,
    VerifyReport, audit, verify,
};
