//! dropgate: the operator CLI. Today it checks event settings with the same rules the
//! services use; the local stack, dev tokens and the event lifecycle join it as they
//! are built.

use std::process::ExitCode;
use std::time::SystemTime;

use clap::{Parser, Subcommand};
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
