//! admitter: moves the head of each open event's queue to the draw at a controlled
//! rate (steps ③ ④).

use std::process::ExitCode;

use dropgate_functions::admitter::AdmitterService;
use dropgate_functions::{bus, service};

#[tokio::main]
async fn main() -> ExitCode {
    service::main::<AdmitterService>(bus::parse_config()).await
}
