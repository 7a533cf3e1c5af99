//! Signers: the [`Signer`] trait and the software signer come from `fdmd-core`; this module adds
//! the device signers the daemon drives.
//!
//! The VAT Signing Card signer is [`card::CardSigner`] (generic card logic, driven by an APDU
//! [`profile`]) behind a device layer: [`pcsc`] (cargo feature `pcsc`, on by default).

pub mod card;
#[cfg(feature = "pcsc")]
pub mod pcsc;
#[cfg(feature = "pcsc")]
pub mod pcsclite;
pub mod profile;

pub use fdmd_core::signer::*;
