//! The common ending of a function binary whose service loop is not part of this
//! build yet: it has validated its configuration, says so, and exits non-zero so no
//! orchestrator mistakes it for a finished job.

use std::process::ExitCode;

/// Exit code of a function that is configured correctly but cannot serve yet.
pub const EXIT_NOT_BUILT: u8 = 3;

/// Logs that `function` parsed its configuration and what it would do, then returns
/// [`EXIT_NOT_BUILT`].
pub fn not_built_yet(function: &str, role: &str) -> ExitCode {
    eprintln!(
        "{function}: configuration is valid. Its service loop ({role}) is not part of \
         this build yet, so it exits now with code {EXIT_NOT_BUILT}."
    );
    ExitCode::from(EXIT_NOT_BUILT)
}
