//! fdmd-backoffice: verified copies of many establishments' fdmd journals in PostgreSQL.
//!
//! Each fdmd box (an *establishment*) pushes its journal in segments, in the export format of
//! `docs/journal-format.md` §9, to `POST /v1/establishments/{id}/segments` with its own bearer
//! credential. Every segment is verified on arrival with `fdmd-core` against the chain already
//! stored ([`chain`]): continuity (seq and `prev_hash`), hashes, canonical form, signatures with
//! the keys given at enrolment, counters and ticket numbers. A segment that overlaps stored
//! records with identical records is accepted (only its new part is stored); one that differs
//! (a fork) or does not verify is refused, kept aside as evidence and the establishment flagged,
//! and nothing already stored changes ([`ingest`]).
//!
//! Modules, one job each:
//! - [`segment`]: reading a segment (an export) into typed records, with bounds;
//! - [`envelope`]: the members of a record's canonical bytes the back office uses;
//! - [`chain`]: the verdict on a segment against the stored head (no database);
//! - [`ingest`]: the one transaction that stores a segment or its refusal;
//! - [`migrate`]: the shipped schema migrations;
//! - [`enrol`], [`credential`]: establishments and their credentials;
//! - [`reports`], [`export`]: turnover, Z reports, establishments, exports;
//! - [`http`], [`metrics`]: the HTTP API and Prometheus metrics;
//! - [`db`]: the connection pool.

#![warn(missing_docs)]

pub mod chain;
pub mod credential;
pub mod db;
pub mod enrol;
pub mod envelope;
pub mod error;
pub mod export;
pub mod http;
pub mod ingest;
pub mod metrics;
pub mod migrate;
pub mod reports;
pub mod segment;

pub use error::Error;
