//! The `dropgate` command line: the local stack, the database schema, event
//! administration, the demo and the benchmarks. A library module, so the settings
//! table in docs/ is generated from the same definitions the binary parses.

use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::{Parser, Subcommand};
use dropgate_functions::auth::dev::DevKeys;
use dropgate_functions::config::DatabaseArgs;

use crate::bench::{self, BenchArgs};
use crate::dead_letter_cli::{self, DeadLetterCommand};
use crate::demo::{self, DemoArgs};
use crate::event_cli::{self, EventAdminCommand};
use crate::event_settings::EventSettingsArgs;
use crate::stack_cli::{self, LocalCommand, StackCommand, StateDirArg};

/// dropgate operator CLI.
#[derive(Debug, Parser)]
#[command(name = "dropgate", version, about = "dropgate operator CLI")]
pub struct Cli {
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
    /// The four functions as local processes next to the stack.
    Local {
        #[command(subcommand)]
        command: LocalCommand,
    },
    /// The database schema.
    Db {
        #[command(subcommand)]
        command: DbCommand,
    },
    /// Sign a local development token for a user with the local stack's key (the
    /// key is created by `dropgate stack up`; queue-api started from the stack's env
    /// file trusts it). Prints the token.
    Token {
        /// The `userId` claim.
        #[arg(long)]
        user: String,
        /// The `platformId` claim.
        #[arg(long)]
        platform: String,
        /// How long the token is valid (`30m`, `1h`, `2d`).
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: Duration,
        /// The stack's state directory.
        #[command(flatten)]
        dir: StateDirArg,
    },
    /// Work with events.
    Event {
        #[command(subcommand)]
        command: EventCommand,
    },
    /// Messages the consumers could not read (unknown version, malformed): list
    /// them, or send them back to their topic once the consumers read them.
    DeadLetter {
        #[command(subcommand)]
        command: DeadLetterCommand,
    },
    /// Run a whole drop against running functions: create and open an event, drive a
    /// simulated crowd through the HTTP API, close, verify and report (JSON + SVG).
    Demo(DemoArgs),
    /// Measure enter, the draw pipeline, a whole drop and Redis memory on the running
    /// local stack (`dropgate local up` first); writes report.json, report.md and plots.
    Bench(BenchArgs),
}

#[derive(Debug, Subcommand)]
enum DbCommand {
    /// Apply every pending migration to DATABASE_URL (applying twice is a no-op), as
    /// the schema's owner, then let the functions' logins read and write rows.
    Migrate {
        #[command(flatten)]
        database: DatabaseArgs,
        /// The logins the functions and the operator CLI use (comma-separated): each
        /// is granted dropgate_runtime, rows only, no schema changes.
        #[arg(long, env = "DROPGATE_DATABASE_RUNTIME_USERS", value_delimiter = ',')]
        runtime_users: Vec<String>,
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
    #[command(flatten)]
    Admin(EventAdminCommand),
}

/// Runs async work to completion; an error becomes a message and exit code 1.
fn block_on(work: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    block_on_code(async { work.await.map(|()| ExitCode::SUCCESS) })
}

/// Like [`block_on`], for work that picks its own exit code.
fn block_on_code(work: impl std::future::Future<Output = anyhow::Result<ExitCode>>) -> ExitCode {
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
    match runtime.block_on(work) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn migrate(database: DatabaseArgs, runtime_users: Vec<String>) -> anyhow::Result<()> {
    let pool = database.pool(2).await?;
    dropgate_functions::postgres::migrate(&pool).await?;
    println!("migrations applied");
    let runtime_users: Vec<String> = runtime_users
        .into_iter()
        .map(|user| user.trim().to_owned())
        .filter(|user| !user.is_empty())
        .collect();
    dropgate_functions::postgres::grant_runtime(&pool, &runtime_users).await?;
    for user in &runtime_users {
        println!(
            "{user} may read and write rows ({})",
            dropgate_functions::postgres::RUNTIME_ROLE
        );
    }
    Ok(())
}

fn check_event(settings: EventSettingsArgs) -> ExitCode {
    match settings.to_config(SystemTime::now()) {
        Ok(config) => match serde_json::to_string_pretty(&config) {
            Ok(json) => {
                println!("{json}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: could not print the settings: {e}");
                ExitCode::FAILURE
            }
        },
        Err(errors) => {
            eprintln!("error: the event settings are not valid:");
            for error in errors.0 {
                eprintln!("  - {error}");
            }
            ExitCode::from(2)
        }
    }
}

fn sign_token(user: &str, platform: &str, ttl: Duration, dir: &StateDirArg) -> ExitCode {
    let identity = dropgate_core::UserKey::parse(platform, user);
    if let Err(error) = identity {
        eprintln!("error: {error}");
        return ExitCode::from(2);
    }
    match DevKeys::in_state_dir(&dir.state_dir).sign(platform, user, ttl) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Parses the command line and runs the command.
pub fn main() -> ExitCode {
    dropgate_functions::tls::install_crypto_provider();
    match Cli::parse().command {
        Command::Stack { command } => block_on(stack_cli::run(command)),
        Command::Local { command } => block_on(stack_cli::run_local(command)),
        Command::Db {
            command:
                DbCommand::Migrate {
                    database,
                    runtime_users,
                },
        } => block_on(migrate(database, runtime_users)),
        Command::Token {
            user,
            platform,
            ttl,
            dir,
        } => sign_token(&user, &platform, ttl, &dir),
        Command::Event {
            command: EventCommand::Check { settings },
        } => check_event(settings),
        Command::Event {
            command: EventCommand::Admin(command),
        } => block_on_code(event_cli::run(command)),
        Command::DeadLetter { command } => block_on_code(dead_letter_cli::run(command)),
        Command::Demo(args) => demo::main(args),
        Command::Bench(args) => bench::main(args),
    }
}
