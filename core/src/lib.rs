//! fdmd-core: the fiscal core of fdmd, usable on its own by an inspector's tool or a back office.
//!
//! - [`fiscal`]: the order model, validation, VAT, PLU hash, FDM codes and labels;
//! - [`journal`]: the append-only, hash-chained, signed SQLite journal (one writer thread),
//!   its canonical encoding, verification and export;
//! - [`signer`]: the [`signer::Signer`] trait and the software (development) signer.
//!
//! This crate has no async runtime, no network and no plugin loading: the daemon (`fdmd`) adds
//! transports, restaurant rules, reports, plugins and device signers on top of it.

#![warn(missing_docs)]

pub mod fiscal;
pub mod journal;
pub mod reports;
pub mod signer;
