//! Crash points for fault tests: `DROPGATE_FAILPOINT=<name>` makes the process abort
//! (like `kill -9`: no destructors, no flushing) the first time it reaches the named
//! point. Unset, a check is one relaxed atomic load.

use std::sync::OnceLock;

fn armed() -> Option<&'static str> {
    static ARMED: OnceLock<Option<String>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            std::env::var("DROPGATE_FAILPOINT")
                .ok()
                .filter(|name| !name.is_empty())
        })
        .as_deref()
}

/// Aborts the process if `name` is the armed failpoint.
pub fn hit(name: &str) {
    if armed() == Some(name) {
        eprintln!("failpoint {name}: aborting the process");
        std::process::abort();
    }
}
