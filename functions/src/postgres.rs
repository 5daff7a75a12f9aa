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
