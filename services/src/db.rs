//! Postgres connections: the tokio-postgres pool every role uses, the sqlx pool postgres-es
//! needs (kept inside the event store), and the migrations, applied at start-up.

use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

mod embedded {
    refinery::embed_migrations!("../migrations");
}

/// Every migration version this build applies, in order.
pub fn expected_migrations() -> Vec<i32> {
    let mut versions: Vec<i32> = embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| m.version())
        .collect();
    versions.sort_unstable();
    versions
}

/// The highest migration version this build knows.
pub fn latest_migration() -> i32 {
    embedded::migrations::runner()
        .get_migrations()
        .iter()
        .map(|m| m.version())
        .max()
        .unwrap_or(0)
}

/// Advisory-lock key serializing concurrent migration runs (several roles may start at once).
const MIGRATION_LOCK: i64 = 0x0067_6174_656d_6967; // "gatemig"

/// A database failure outside the event store.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("invalid DATABASE_URL: {0}")]
    Config(#[source] tokio_postgres::Error),
    #[error("cannot connect to Postgres")]
    Connect(#[source] tokio_postgres::Error),
    #[error("cannot build the connection pool")]
    Pool(#[from] deadpool_postgres::BuildError),
    #[error("migration failed")]
    Migrate(#[from] refinery::Error),
    #[error(transparent)]
    Postgres(#[from] tokio_postgres::Error),
}

/// A tokio-postgres connection pool for `url`.
pub fn pool(url: &str, size: usize) -> Result<Pool, DbError> {
    let config = tokio_postgres::Config::from_str(url).map_err(DbError::Config)?;
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Ok(Pool::builder(manager).max_size(size).build()?)
}

/// The sqlx pool postgres-es writes and reads events with.
pub async fn sqlx_pool(url: &str, size: u32) -> Result<sqlx::PgPool, sqlx::Error> {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(size)
        .acquire_timeout(Duration::from_secs(10))
        .connect(url)
        .await
}

/// Applies every migration in `migrations/` not applied yet, under an advisory lock.
pub async fn migrate(url: &str) -> Result<(), DbError> {
    let (mut client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .map_err(DbError::Connect)?;
    let conn = tokio::spawn(connection);
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let report = embedded::migrations::runner().run_async(&mut client).await;
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await?;
    drop(client);
    let _ = conn.await;
    let report = report?;
    for m in report.applied_migrations() {
        tracing::info!(migration = %m, "applied migration");
    }
    Ok(())
}
