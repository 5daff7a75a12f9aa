//! goods-worker: draws admitted users against the stock and publishes the results
//! (steps ⑤ ⑥ ⑦).

use std::process::ExitCode;

use dropgate_functions::goods_worker::GoodsService;
use dropgate_functions::{bus, service};

#[tokio::main]
async fn main() -> ExitCode {
    service::main::<GoodsService>(bus::parse_config()).await
}
