//! PostgreSQL adapter: the embedded migrations (`migrations/` at the repository root)
//! and pool construction.

use anyhow::{Context, Result};
use sqlx::PgPool;

/// The schema, embedded at compile time so every binary can migrate a fresh database.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// Applies every pending migration; applying twice is a no-op.
pub async fn migrate(pool: &PgPool) -> Result<()> {
    MIGRATOR
        .run(pool)
        .await
        .context("Failed to apply the database migrations")
}

/// The role the migrations create for the functions (rows only, no schema changes).
pub const RUNTIME_ROLE: &str = "dropgate_runtime";

/// Grants [`RUNTIME_ROLE`] to each login in `users` (run as the schema's owner, after
/// [`migrate`]); granting twice is a no-op.
pub async fn grant_runtime(pool: &PgPool, users: &[String]) -> Result<()> {
    for user in users {
        anyhow::ensure!(
            !user.is_empty() && user.len() <= 63 && !user.contains('\0'),
            "{user:?} is not a PostgreSQL role name"
        );
        // Identifiers cannot be bound as parameters; quote them.
        let statement = format!("grant {RUNTIME_ROLE} to \"{}\"", user.replace('"', "\"\""));
        sqlx::query(&statement)
            .execute(pool)
            .await
            .with_context(|| format!("Failed to grant {RUNTIME_ROLE} to {user}"))?;
    }
    Ok(())
}
