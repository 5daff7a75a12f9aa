//! dropgate: the operator CLI: the local stack, and event settings checked with the
//! same rules the services use.

use std::process::ExitCode;
use std::time::SystemTime;

use clap::{Parser, Subcommand};
use dropgate_functions::cli_stack::{self, StackCommand};
use dropgate_functions::event_settings::EventSettingsArgs;

/// dropgate operator CLI.
#[derive(Debug, Parser)]
#[command(version, about = "dropgate operator CLI")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The local stack: Redis, PostgreSQL and a Kafka-protocol broker on loopback.
    Stack {
        #[command(subcommand)]
        command: StackCommand,
    },
    /// Work with events.
    Event {
        #[command(subcommand)]
        command: EventCommand,
    },
}

#[derive(Debug, Subcommand)]
enum EventCommand {
    /// Validate event settings and print them as they would be stored; lists every
    /// problem and exits 2 if any.
    Check {
        #[command(flatten)]
        settings: EventSettingsArgs,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Stack { command } => {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    eprintln!("error: could not start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(cli_stack::run(command)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Event {
            command: EventCommand::Check { settings },
        } => match settings.to_config(SystemTime::now()) {
            Ok(config) => {
                match serde_json::to_string_pretty(&config) {
                    Ok(json) => println!("{json}"),
                    Err(e) => {
                        eprintln!("error: could not print the settings: {e}");
                        return ExitCode::FAILURE;
                    }
                }
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("error: the event settings are not valid:");
                for error in errors.0 {
                    eprintln!("  - {error}");
                }
                ExitCode::from(2)
            }
        },
    }
}
