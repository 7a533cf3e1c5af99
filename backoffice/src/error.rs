//! Errors of the back office (not refusals of a segment: see [`crate::chain::Refusal`]).

/// Why an operation of the back office failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A PostgreSQL query failed.
    #[error("database: {0}")]
    Db(#[from] tokio_postgres::Error),
    /// No connection could be had from the pool.
    #[error("database pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// The pool could not be built.
    #[error("database pool setup: {0}")]
    PoolBuild(#[from] deadpool_postgres::BuildError),
    /// Reading or writing a file or socket failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The system's random source failed.
    #[error("random source: {0}")]
    Random(String),
    /// An argument or stored value is not acceptable.
    #[error("{field}: {message}")]
    Invalid {
        /// The argument or column.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// No such establishment.
    #[error("no establishment {0:?}")]
    UnknownEstablishment(String),
    /// An establishment with this id exists already.
    #[error("establishment {0:?} is enrolled already")]
    AlreadyEnrolled(String),
    /// A blocking task panicked or was cancelled.
    #[error("internal task: {0}")]
    Task(String),
    /// A stored record could not be written as an export (its canonical bytes are not UTF-8).
    #[error("export: {0}")]
    Export(#[from] fdmd_core::journal::export::ExportError),
}

impl Error {
    /// An [`Error::Invalid`].
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Error {
        Error::Invalid {
            field,
            message: message.into(),
        }
    }
}
