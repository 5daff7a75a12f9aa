//! PostgreSQL for the local stack: `initdb` once, then the `postgres` server itself
//! (not `pg_ctl`, so the recorded pid is the postmaster's from the first moment).
//!
//! PostgreSQL refuses to run as root. When the launcher is root (CI is), the server
//! runs as the unprivileged system user `dropgate` (created if missing) and its data
//! directory is theirs; if that user cannot reach the state directory (a home
//! directory with mode 700, say), the data lives under `/var/tmp/dropgate-postgres/`
//! instead and the state file records where.
//!
//! On a `--tls` stack the server takes TLS connections only (`hostssl` is the one
//! access rule), with the stack's certificate.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::unistd::{Gid, Uid, User, chown};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};
use sqlx::{ConnectOptions, Connection, PgPool};

use super::StackOptions;
use super::certs::{StackCerts, write_private};
use super::process::{is_running, spawn_detached};

/// The database and role the functions use.
pub const DATABASE: &str = "dropgate";
/// The unprivileged user the server runs as when the launcher is root.
const SERVICE_USER: &str = "dropgate";

/// Who runs the server: the caller, or the service user when the caller is root.
#[derive(Debug, Clone, Copy)]
struct RunAs {
    uid: Uid,
    gid: Gid,
}

fn run_as() -> Result<Option<RunAs>> {
    if !Uid::effective().is_root() {
        return Ok(None);
    }
    if User::from_name(SERVICE_USER)?.is_none() {
        let status = Command::new("useradd")
            .args(["--system", "--user-group", "--no-create-home"])
            .args(["--shell", "/usr/sbin/nologin", SERVICE_USER])
            .status()
            .context("Failed to run useradd to create the PostgreSQL service user")?;
        if !status.success() && User::from_name(SERVICE_USER)?.is_none() {
            bail!("useradd could not create the user {SERVICE_USER:?} that PostgreSQL runs as");
        }
    }
    let user = User::from_name(SERVICE_USER)?
        .with_context(|| format!("user {SERVICE_USER:?} vanished"))?;
    Ok(Some(RunAs {
        uid: user.uid,
        gid: user.gid,
    }))
}

fn command(program: PathBuf, run_as: Option<RunAs>) -> Command {
    let mut command = Command::new(program);
    // The caller's working directory may be closed to the service user.
    command.current_dir("/");
    if let Some(user) = run_as {
        command.uid(user.uid.as_raw()).gid(user.gid.as_raw());
        command.env("HOME", "/tmp");
    }
    command
}

/// PostgreSQL's bin directory: `DROPGATE_PG_BIN_DIR`, else the newest
/// `/usr/lib/postgresql/<version>/bin` (Debian's layout).
pub(crate) fn bin_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("DROPGATE_PG_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL is not installed (no /usr/lib/postgresql); run `make setup`")?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("postgres").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .context("no PostgreSQL server under /usr/lib/postgresql/*/bin; run `make setup`")
}

/// Picks (and prepares) the directory holding PostgreSQL's data.
pub(crate) fn prepare_dir(options: &StackOptions, recorded: Option<&Path>) -> Result<PathBuf> {
    let run_as = run_as()?;
    let preferred = options.state_dir.join("postgres");
    let candidates = recorded
        .map(Path::to_path_buf)
        .into_iter()
        .chain([preferred, fallback_dir(&options.state_dir)]);
    for dir in candidates {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("Failed to create {}", dir.display()))?;
        if let Some(user) = run_as {
            chown(&dir, Some(user.uid), Some(user.gid))
                .with_context(|| format!("Failed to give {} to {SERVICE_USER}", dir.display()))?;
            let writable = command("test".into(), Some(user))
                .arg("-w")
                .arg(&dir)
                .status()
                .is_ok_and(|status| status.success());
            if !writable {
                continue;
            }
        }
        return Ok(dir);
    }
    bail!("no directory PostgreSQL's user {SERVICE_USER:?} can write to")
}

fn fallback_dir(state_dir: &Path) -> PathBuf {
    let mut hasher = DefaultHasher::new();
    state_dir.hash(&mut hasher);
    PathBuf::from("/var/tmp/dropgate-postgres").join(format!("{:016x}", hasher.finish()))
}

/// Runs initdb unless the cluster exists; the superuser is `dropgate` with `password`.
pub(crate) fn init(options: &StackOptions, dir: &Path, password: &str) -> Result<()> {
    let data = dir.join("data");
    if data.join("PG_VERSION").exists() {
        return Ok(());
    }
    let run_as = run_as()?;
    let pwfile = dir.join("pwfile");
    std::fs::write(&pwfile, password)?;
    if let Some(user) = run_as {
        chown(&pwfile, Some(user.uid), Some(user.gid))?;
    }
    let output = command(bin_dir()?.join("initdb"), run_as)
        .arg("--pgdata")
        .arg(&data)
        .args([
            "--username",
            DATABASE,
            "--auth",
            "scram-sha-256",
            "--encoding",
            "UTF8",
        ])
        .args(["--no-locale", "--no-instructions"])
        .arg(format!("--pwfile={}", pwfile.display()))
        .output()
        .context("Failed to run initdb")?;
    let _ = std::fs::remove_file(&pwfile);
    if !output.status.success() {
        let _ = std::fs::write(options.log_file("initdb"), &output.stderr);
        bail!(
            "initdb failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// Starts the postmaster on `port`, loopback only, fsync on, no Unix socket (its
/// default directory is not writable by an unprivileged user on every machine); with
/// `tls`, TLS-only.
pub(crate) fn start(
    options: &StackOptions,
    dir: &Path,
    port: u16,
    tls: Option<&StackCerts>,
) -> Result<u32> {
    let run_as = run_as()?;
    let mut command = command(bin_dir()?.join("postgres"), run_as);
    if let Some(certs) = tls {
        for setting in tls_settings(dir, certs, run_as)? {
            command.args(["-c", &setting]);
        }
    }
    command
        .arg("-D")
        .arg(dir.join("data"))
        .args(["-p", &port.to_string()])
        .args(["-c", "listen_addresses=127.0.0.1"])
        .args(["-c", "unix_socket_directories="])
        .args(["-c", "fsync=on"])
        .args(["-c", "max_connections=300"])
        .args(["-c", "shared_buffers=256MB"]);
    spawn_detached(command, &options.log_file("postgres"))
}

/// The server's copies of the certificate and key (PostgreSQL wants the key owned by
/// the user it runs as, mode 0600) and an access file with one rule: TLS from
/// loopback with a password. Returns the `-c` settings that use them.
fn tls_settings(dir: &Path, certs: &StackCerts, run_as: Option<RunAs>) -> Result<Vec<String>> {
    let tls_dir = dir.join("tls");
    std::fs::create_dir_all(&tls_dir)?;
    let cert = tls_dir.join("server.pem");
    let key = tls_dir.join("server.key");
    let hba = tls_dir.join("pg_hba.conf");
    std::fs::copy(&certs.server_cert, &cert)?;
    write_private(&key, &std::fs::read(&certs.server_key)?)?;
    std::fs::write(
        &hba,
        "# written by `dropgate stack up --tls`: TLS from loopback only\n\
         hostssl all all 127.0.0.1/32 scram-sha-256\n",
    )?;
    if let Some(user) = run_as {
        for path in [&tls_dir, &cert, &key, &hba] {
            chown(path.as_path(), Some(user.uid), Some(user.gid))
                .with_context(|| format!("Failed to give {} to {SERVICE_USER}", path.display()))?;
        }
    }
    Ok(vec![
        "ssl=on".to_owned(),
        format!("ssl_cert_file={}", cert.display()),
        format!("ssl_key_file={}", key.display()),
        format!("hba_file={}", hba.display()),
    ])
}

/// Connection options for `database` as the `dropgate` role; with `ca`, over TLS with
/// the server verified against it.
pub fn connect_options(
    port: u16,
    password: &str,
    database: &str,
    ca: Option<&Path>,
) -> PgConnectOptions {
    let options = PgConnectOptions::new()
        .host("127.0.0.1")
        .port(port)
        .username(DATABASE)
        .password(password)
        .database(database)
        .disable_statement_logging();
    match ca {
        Some(ca) => options.ssl_mode(PgSslMode::VerifyFull).ssl_root_cert(ca),
        None => options,
    }
}

/// The functions' login: granted dropgate_runtime (rows only) after the migrations.
pub const APP_USER: &str = "dropgate_app";

/// The URL of the stack's database as its owner: with `ca`, one that verifies the
/// server, so every client given the URL alone (tests, `psql`) connects the same way.
pub(crate) fn url(port: u16, password: &str, ca: Option<&Path>) -> String {
    url_as(DATABASE, port, password, ca)
}

/// [`url`] for the login `user`.
pub(crate) fn url_as(user: &str, port: u16, password: &str, ca: Option<&Path>) -> String {
    let base = format!("postgres://{user}:{password}@127.0.0.1:{port}/{DATABASE}");
    match ca {
        Some(ca) => format!(
            "{base}?sslmode=verify-full&sslrootcert={}",
            escape_query(&ca.to_string_lossy())
        ),
        None => base,
    }
}

/// Escapes what would end a query value or confuse the URL parser.
fn escape_query(value: &str) -> String {
    value
        .chars()
        .map(|c| match c {
            '%' => "%25".to_owned(),
            ' ' => "%20".to_owned(),
            '&' => "%26".to_owned(),
            '#' => "%23".to_owned(),
            '?' => "%3F".to_owned(),
            '+' => "%2B".to_owned(),
            c => c.to_string(),
        })
        .collect()
}

/// Waits until the server accepts connections, creates the `dropgate` database if
/// needed, applies the migrations, and gives the functions' login [`APP_USER`] (with
/// `app_password`) the runtime role.
pub(crate) async fn prepare_database(
    pid: u32,
    port: u16,
    password: &str,
    app_password: &str,
    ca: Option<&Path>,
) -> Result<PgPool> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let admin = connect_options(port, password, "postgres", ca);
    let mut connection = loop {
        match sqlx::PgConnection::connect_with(&admin).await {
            Ok(connection) => break connection,
            Err(e) => {
                if !is_running(pid, "postgres") {
                    bail!("PostgreSQL exited during start-up: {e}");
                }
                if Instant::now() >= deadline {
                    bail!("PostgreSQL did not accept connections within 60 s: {e}");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    create_database_if_missing(&mut connection, DATABASE, None).await?;
    connection.close().await.ok();
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect_with(connect_options(port, password, DATABASE, ca))
        .await
        .context("Failed to connect to the dropgate database")?;
    dropgate_functions::postgres::migrate(&pool).await?;
    anyhow::ensure!(
        app_password.chars().all(|c| c.is_ascii_hexdigit()),
        "the app login's password must be hex"
    );
    // A role belongs to the server, not the database: made once, its password set on
    // every `up` (a state dir from before it existed gets one).
    sqlx::query(&format!(
        "do $$ begin create role {APP_USER} login; \
         exception when duplicate_object or unique_violation then null; end $$"
    ))
    .execute(&pool)
    .await
    .context("Failed to create the functions' login")?;
    sqlx::query(&format!("alter role {APP_USER} password '{app_password}'"))
        .execute(&pool)
        .await
        .context("Failed to set the functions' login password")?;
    dropgate_functions::postgres::grant_runtime(&pool, &[APP_USER.to_owned()]).await?;
    Ok(pool)
}

/// `CREATE DATABASE name [TEMPLATE template]` unless it exists.
pub async fn create_database_if_missing(
    connection: &mut sqlx::PgConnection,
    name: &str,
    template: Option<&str>,
) -> Result<()> {
    let exists: bool =
        sqlx::query_scalar("select exists (select 1 from pg_database where datname = $1)")
            .bind(name)
            .fetch_one(&mut *connection)
            .await?;
    if !exists {
        // Identifiers cannot be bound as parameters; quote them.
        let mut statement = format!("create database \"{}\"", name.replace('"', "\"\""));
        if let Some(template) = template {
            statement.push_str(&format!(" template \"{}\"", template.replace('"', "\"\"")));
        }
        sqlx::query(&statement)
            .execute(&mut *connection)
            .await
            .with_context(|| format!("Failed to create database {name}"))?;
    }
    Ok(())
}
