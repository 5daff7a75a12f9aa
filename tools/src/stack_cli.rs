//! `dropgate stack up|down|status|env|restart`: the local stack from the command line.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::stack::functions::{self, FunctionsOptions};
use crate::stack::{self, AppendFsync, BrokerStorage, Component, StackOptions, StopMode};

/// Where the stack lives.
#[derive(Debug, Clone, clap::Args)]
pub struct StateDirArg {
    /// State directory (data, logs, pids, env file).
    #[arg(long, env = "DROPGATE_STATE_DIR", default_value = ".dropgate")]
    pub state_dir: PathBuf,
}

/// The `stack` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum StackCommand {
    /// Start Redis, PostgreSQL and the broker on free loopback ports (what already
    /// runs is kept), create topics, migrate, write the env file.
    Up {
        /// The stack's state directory.
        #[command(flatten)]
        dir: StateDirArg,
        /// Partitions per topic.
        #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(1..=256))]
        partitions: u32,
        /// Redis AOF fsync policy.
        #[arg(long, value_enum, default_value_t = AppendFsync::Everysec)]
        redis_fsync: AppendFsync,
        /// Broker log storage (sqlite survives restarts; memory does not).
        #[arg(long, value_enum, default_value_t = BrokerStorage::Sqlite)]
        broker_storage: BrokerStorage,
        /// Run the servers as a deployment reaches them: TLS only, with a local CA,
        /// passwords, and SASL/SCRAM for the broker (a new stack only).
        #[arg(long)]
        tls: bool,
        /// Run Redis as a Redis Cluster of this many primaries (at least 3) on
        /// loopback, as Memorystore for Redis Cluster would (a new stack only).
        #[arg(long, value_name = "PRIMARIES", value_parser = clap::value_parser!(u8).range(3..=9))]
        redis_cluster: Option<u8>,
    },
    /// Stop exactly the processes `up` started (by recorded pid).
    Down {
        /// The stack's state directory.
        #[command(flatten)]
        dir: StateDirArg,
        /// Also delete all data, logs and the state directory.
        #[arg(long)]
        purge: bool,
    },
    /// Show what runs, where.
    Status {
        /// The stack's state directory.
        #[command(flatten)]
        dir: StateDirArg,
    },
    /// Print `export NAME=value` lines for a shell: `eval "$(dropgate stack env)"`.
    Env {
        /// The stack's state directory.
        #[command(flatten)]
        dir: StateDirArg,
    },
    /// Restart one server on the same port (`--crash` kills it with SIGKILL first).
    Restart {
        /// The stack's state directory.
        #[command(flatten)]
        dir: StateDirArg,
        /// Which server.
        #[arg(value_enum)]
        component: Component,
        /// Kill -9 instead of a clean shutdown.
        #[arg(long)]
        crash: bool,
    },
}

/// The `local` subcommands: the functions as processes next to the stack.
#[derive(Debug, clap::Subcommand)]
pub enum LocalCommand {
    /// Start the stack if needed, then queue-api, admitter, goods-workers and
    /// result-relay as background processes (logs in `<state dir>/logs/`).
    Up {
        /// The stack's state directory.
        #[command(flatten)]
        dir: StateDirArg,
        /// goods-worker instances.
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=16))]
        goods_workers: u32,
        /// Start a new stack TLS-only with authentication (see `stack up --tls`).
        #[arg(long)]
        tls: bool,
        /// Start a new stack with a Redis Cluster of this many primaries (see `stack
        /// up --redis-cluster`).
        #[arg(long, value_name = "PRIMARIES", value_parser = clap::value_parser!(u8).range(3..=9))]
        redis_cluster: Option<u8>,
    },
    /// Stop the functions (the stack keeps running; `stack down` stops everything).
    Down {
        /// The stack's state directory.
        #[command(flatten)]
        dir: StateDirArg,
    },
    /// Stop one function instance (`--crash`: SIGKILL) and start it again.
    Restart {
        /// The stack's state directory.
        #[command(flatten)]
        dir: StateDirArg,
        /// Instance name: queue-api, admitter, goods-worker-N, result-relay.
        name: String,
        /// Kill -9 instead of SIGTERM.
        #[arg(long)]
        crash: bool,
    },
}

fn functions_options(state_dir: PathBuf, goods_workers: u32) -> Result<FunctionsOptions> {
    let exe = std::env::current_exe()?;
    let bin_dir = exe
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    Ok(FunctionsOptions {
        state_dir,
        bin_dir,
        goods_workers,
    })
}

/// Runs one `local` subcommand.
pub async fn run_local(command: LocalCommand) -> Result<()> {
    let mut progress = |line: &str| eprintln!("local: {line}");
    match command {
        LocalCommand::Up {
            dir,
            goods_workers,
            tls,
            redis_cluster,
        } => {
            let options = StackOptions {
                tls,
                redis_cluster: redis_cluster.unwrap_or(0),
                ..StackOptions::new(&dir.state_dir)
            };
            let env = stack::up(&options, &mut progress).await?;
            let options = functions_options(env.state_dir.clone(), goods_workers)?;
            functions::up(&options, &env, &mut progress).await?;
            let env = stack::env(&env.state_dir)?;
            stack::write_env_file(&env)?;
            let api = env.api_url.clone().unwrap_or_default();
            println!(
                "dropgate runs locally (state dir {})",
                env.state_dir.display()
            );
            println!("  queue-api   {api}   (API: docs/api.md)");
            println!("  logs        {}", env.state_dir.join("logs").display());
            println!(
                "  variables   eval \"$(dropgate stack env --state-dir {})\"",
                env.state_dir.display()
            );
            println!(
                "  stop        dropgate stack down --state-dir {}",
                env.state_dir.display()
            );
        }
        LocalCommand::Down { dir } => {
            let stopped = functions::down(&dir.state_dir)?;
            println!(
                "stopped {}",
                if stopped.is_empty() {
                    "nothing".to_owned()
                } else {
                    stopped.join(", ")
                }
            );
        }
        LocalCommand::Restart { dir, name, crash } => {
            functions::stop(&dir.state_dir, &name, crash)?;
            let env = stack::env(&dir.state_dir)?;
            let goods_workers = functions::load(&dir.state_dir)?
                .iter()
                .filter(|instance| instance.binary == "goods-worker")
                .count() as u32;
            let options = functions_options(env.state_dir.clone(), goods_workers)?;
            functions::up(&options, &env, &mut progress).await?;
        }
    }
    Ok(())
}

/// Runs one `stack` subcommand.
pub async fn run(command: StackCommand) -> Result<()> {
    let mut progress = |line: &str| eprintln!("stack: {line}");
    match command {
        StackCommand::Up {
            dir,
            partitions,
            redis_fsync,
            broker_storage,
            tls,
            redis_cluster,
        } => {
            let options = StackOptions {
                partitions,
                redis_fsync,
                broker_storage,
                tls,
                redis_cluster: redis_cluster.unwrap_or(0),
                ..StackOptions::new(dir.state_dir)
            };
            let env = stack::up(&options, &mut progress).await?;
            println!(
                "dropgate local stack is up (state dir {})",
                env.state_dir.display()
            );
            for (name, value) in env.vars() {
                if stack::StackEnv::holds_secret(name) {
                    println!(
                        "  {name}=(in {})",
                        stack::env_file(&env.state_dir).display()
                    );
                } else {
                    println!("  {name}={value}");
                }
            }
            println!("logs: {}", env.state_dir.join("logs").display());
            println!(
                "stop it with: dropgate stack down --state-dir {}",
                env.state_dir.display()
            );
        }
        StackCommand::Down { dir, purge } => {
            let stopped = stack::down(&dir.state_dir, purge)?;
            if stopped.is_empty() {
                println!("nothing was running in {}", dir.state_dir.display());
            } else {
                println!("stopped {}", stopped.join(", "));
            }
        }
        StackCommand::Status { dir } => {
            for line in stack::status(&dir.state_dir)? {
                match (&line.server, line.running) {
                    (Some(server), true) => println!(
                        "{:<9} running  pid {:<8} 127.0.0.1:{}",
                        line.component.name(),
                        server.pid,
                        server.port
                    ),
                    (Some(server), false) => println!(
                        "{:<9} stopped  (was pid {}, port {})",
                        line.component.name(),
                        server.pid,
                        server.port
                    ),
                    (None, _) => println!("{:<9} not started", line.component.name()),
                }
            }
            for (name, server, running) in stack::redis_node_status(&dir.state_dir)? {
                let state = if running { "running " } else { "stopped " };
                println!(
                    "{name:<9} {state} pid {:<8} 127.0.0.1:{}",
                    server.pid, server.port
                );
            }
        }
        StackCommand::Env { dir } => {
            for (name, value) in stack::env(&dir.state_dir)?.vars() {
                println!("export {name}='{}'", value.replace('\'', r"'\''"));
            }
        }
        StackCommand::Restart {
            dir,
            component,
            crash,
        } => {
            let mode = if crash {
                StopMode::Crash
            } else {
                StopMode::Graceful
            };
            let state = stack::StackState::load(&dir.state_dir)?;
            let options = StackOptions {
                partitions: state.partitions.max(1),
                ..StackOptions::new(dir.state_dir)
            };
            stack::restart_component(&options, component, mode, &mut progress).await?;
        }
    }
    Ok(())
}
