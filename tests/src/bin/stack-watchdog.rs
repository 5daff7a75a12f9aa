//! stack-watchdog: tears a test stack down once the test process that started it is
//! gone, whether it finished, panicked or was killed with SIGKILL. A static stack
//! shared by a test binary is never dropped, so without this its servers would
//! outlive the tests.

use std::path::PathBuf;
use std::time::Duration;

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(state_dir), Some(parent)) = (args.next(), args.next()) else {
        eprintln!("usage: stack-watchdog STATE_DIR PARENT_PID");
        std::process::exit(2);
    };
    let Ok(parent) = parent.parse::<u32>() else {
        eprintln!("stack-watchdog: {parent:?} is not a pid");
        std::process::exit(2);
    };
    while dropgate_tests::pid_alive(parent) {
        std::thread::sleep(Duration::from_millis(200));
    }
    let state_dir = PathBuf::from(state_dir);
    if let Err(e) = dropgate_tools::stack::down(&state_dir, true) {
        eprintln!(
            "stack-watchdog: could not stop {}: {e:#}",
            state_dir.display()
        );
        std::process::exit(1);
    }
}
