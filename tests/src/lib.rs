//! Workspace-level test support for dropgate: helpers shared by the integration and
//! end-to-end tests in `tests/tests/`, which run the real binaries.

use std::path::PathBuf;

/// The repository root (the workspace directory).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// The path of a workspace binary built for this test run. Cargo builds every
/// binary of the workspace before running integration tests of a member that
/// depends on them, so `target/<profile>/<name>` exists here.
pub fn binary(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    target.join(profile).join(name)
}
