//! Schema migrations shipped in the binary: SQL files applied in order, each in its own
//! transaction, recorded in `schema_migrations`. Running them again applies only the new ones.

use crate::Error;
use tokio_postgres::Client;

/// A migration: its version (applied in increasing order), name and SQL.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Version, from 1.
    pub version: i32,
    /// File name.
    pub name: &'static str,
    /// The SQL.
    pub sql: &'static str,
}

/// Every migration, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_initial.sql",
        sql: include_str!("../migrations/0001_initial.sql"),
    },
    Migration {
        version: 2,
        name: "0002_records_ingest.sql",
        sql: include_str!("../migrations/0002_records_ingest.sql"),
    },
];

/// Applies the migrations not applied yet; returns the versions applied now. Concurrent runs are
/// serialised by an advisory lock.
pub async fn run(client: &mut Client) -> Result<Vec<i32>, Error> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version    INTEGER PRIMARY KEY,
                 name       TEXT NOT NULL,
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )
        .await?;
    let mut applied = Vec::new();
    for m in MIGRATIONS {
        let tx = client.transaction().await?;
        // One migrator at a time (the lock is released at the end of the transaction).
        tx.execute("SELECT pg_advisory_xact_lock(4242019)", &[])
            .await?;
        let done = tx
            .query_opt(
                "SELECT 1 FROM schema_migrations WHERE version = $1",
                &[&m.version],
            )
            .await?
            .is_some();
        if !done {
            tx.batch_execute(m.sql).await?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                &[&m.version, &m.name],
            )
            .await?;
            applied.push(m.version);
        }
        tx.commit().await?;
    }
    Ok(applied)
}

/// The highest version applied, 0 when none.
pub async fn current(client: &Client) -> Result<i32, Error> {
    let row = client
        .query_opt(
            "SELECT max(version) FROM schema_migrations
              WHERE to_regclass('schema_migrations') IS NOT NULL",
            &[],
        )
        .await;
    match row {
        Ok(Some(row)) => Ok(row.get::<_, Option<i32>>(0).unwrap_or(0)),
        Ok(None) => Ok(0),
        // The table does not exist yet.
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => Ok(0),
        Err(e) => Err(e.into()),
    }
}
