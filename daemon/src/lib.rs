//! fdmd: an on-premise Belgian fiscal data module host (GKS/SCE).
//!
//! The fiscal core (order model, journal, the `Signer` trait, verification) is the `fdmd-core`
//! crate; this crate re-exports its [`fiscal`] and [`journal`] modules and adds the transports
//! (MQTT, HTTP), the restaurant rules, reports, the plugin host and the card signer.
//!
//! Registers, handhelds and kitchen printers send orders; fdmd validates them ([`fiscal`]),
//! numbers, hashes, signs ([`signer`]) and stores them in one append-only, hash-chained journal
//! ([`journal`]), and answers with a signed receipt ([`service`]). The journal can be verified
//! offline by anybody from `docs/journal-format.md`.
//!
//! fdmd is **not** a certified FDM, and its development signer is never a legal VAT Signing Card.

#![warn(missing_docs)]

pub mod access;
pub mod admission;
pub mod app;
pub mod assembly;
pub mod client;
pub mod clock_sync;
pub mod config;
pub mod daemon;
pub mod datadir_lock;
pub mod fdm_v1;
pub use fdmd_core::fiscal;
pub mod gks2;
pub mod http;
pub use fdmd_core::journal;
pub mod mqtt;
pub mod paths;
pub mod plugins;
pub mod registry;
pub mod replication;
pub mod reports;
pub mod restaurant;
pub mod service;
pub mod signer;
pub mod status;
pub mod systemd;
pub mod timezone;
pub mod tls;
