//! dropgate: the operator CLI (see `dropgate_tools::cli`).

use std::process::ExitCode;

/// mimalloc, as in the functions: the benchmark's load generator allocates per request.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    dropgate_tools::cli::main()
}
