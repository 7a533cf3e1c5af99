//! fdmd: an on-premise Belgian fiscal data module host (GKS/SCE).
//!
//! Registers, handhelds and kitchen printers send orders; fdmd validates them ([`fiscal`]),
//! numbers, hashes, signs ([`signer`]) and stores them in one append-only, hash-chained journal
//! ([`journal`]), and answers with a signed receipt ([`service`]). The journal can be verified
//! offline by anybody from `docs/journal-format.md`.
//!
//! fdmd is **not** a certified FDM, and its development signer is never a legal VAT Signing Card.

#![warn(missing_docs)]

pub mod access;
pub mod app;
pub mod client;
pub mod config;
pub mod daemon;
pub mod fiscal;
pub mod http;
pub mod journal;
pub mod mqtt;
pub mod paths;
pub mod plugins;
pub mod registry;
pub mod reports;
pub mod restaurant;
pub mod service;
pub mod signer;
pub mod status;
pub mod systemd;
pub mod timezone;
