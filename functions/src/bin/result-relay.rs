//! result-relay: brings draw results back to Redis, where queue-api answers users
//! (step ⑧).

use std::process::ExitCode;

use dropgate_functions::result_relay::RelayService;
use dropgate_functions::{bus, service};

#[tokio::main]
async fn main() -> ExitCode {
    service::main::<RelayService>(bus::parse_config()).await
}
