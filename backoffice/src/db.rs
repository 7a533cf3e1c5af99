//! The PostgreSQL connection pool (deadpool-postgres over tokio-postgres, no TLS: the database
//! is reached over a Unix socket or loopback).

use crate::Error;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use std::str::FromStr;

/// Connections the pool keeps at most by default.
pub const DEFAULT_POOL_SIZE: usize = 8;

/// A pool for a libpq-style connection string (`host=/run/postgresql dbname=fdmd user=fdmd`) or
/// URL (`postgresql://…`).
pub fn pool(conninfo: &str, max_size: usize) -> Result<Pool, Error> {
    let config = tokio_postgres::Config::from_str(conninfo)
        .map_err(|e| Error::invalid("database", format!("connection string: {e}")))?;
    let manager = Manager::from_config(
        config,
        tokio_postgres::NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Ok(Pool::builder(manager)
        .max_size(max_size.max(1))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()?)
}
