//! Signers: what signs each journal record.
//!
//! A [`Signer`] has an identity (a 14-character VSC id, an algorithm and a public key), a state
//! (ready, needs a PIN, absent, blocked) and signs 32-byte digests. The software signer in
//! [`software`] is for development, training and tests. Device signers (the VAT Signing Card over
//! PC/SC, a GKS 2.0 networked FDM) live in the daemon crate and implement the same [`Signer`]
//! trait: they have an identity, a state and sign digests the same way.

mod pin;
pub mod software;

use crate::fiscal::FdmCode;
use serde::Serialize;
use serde_json::{Map, Value};

pub use pin::Pin;
pub use software::SoftwareSigner;

/// Who signs: enough for anybody to verify a signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignerIdentity {
    /// The 14-character VSC id printed on tickets (`vsc_id`).
    pub id: String,
    /// Signature algorithm; `ed25519` is the only one verifiers know today.
    pub algorithm: String,
    /// Public key (for Ed25519: the 32-byte key), hex in JSON.
    #[serde(serialize_with = "as_hex")]
    pub public_key: Vec<u8>,
    /// True only for a legal VAT Signing Card or certified FDM. The development signer never is.
    pub certified: bool,
}

fn as_hex<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(bytes))
}

/// What a signer can do right now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SignerState {
    /// Signs.
    Ready,
    /// A card is present but waits for its PIN.
    PinRequired {
        /// PIN attempts left before the card blocks, when known.
        tries_left: Option<u8>,
    },
    /// No card, or no reader.
    Absent,
    /// The card is blocked.
    Blocked,
    /// The card answered something this signer does not understand.
    Incompatible {
        /// Why.
        reason: String,
    },
}

/// Why a signature was not made. Every variant maps to an FDM code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignerError {
    /// 201: no card, reader gone, or card broken.
    #[error("no signing card, or the card is broken: {0}")]
    NoCard(String),
    /// 202: the card needs its PIN.
    #[error("the signing card needs its PIN")]
    PinRequired,
    /// 203: the card is blocked.
    #[error("the signing card is blocked")]
    Blocked,
    /// 204: wrong PIN.
    #[error("wrong PIN{}", tries_text(*.tries_left))]
    WrongPin {
        /// Attempts left, when the card says.
        tries_left: Option<u8>,
    },
    /// 204: what was given is not a PIN this card takes (the card was not asked).
    #[error("not a valid PIN: {0}")]
    BadPinFormat(String),
    /// 210: the card is not one this signer can use.
    #[error("the signing card is not compatible: {0}")]
    Incompatible(String),
    /// 201: the card changed between reading its identity and signing.
    #[error("the signing card changed (expected {expected}, found {found})")]
    IdentityChanged {
        /// Identity the record was built for.
        expected: String,
        /// Identity of the card now present.
        found: String,
    },
}

fn tries_text(tries_left: Option<u8>) -> String {
    tries_left.map_or_else(String::new, |n| format!(" ({n} tries left)"))
}

impl SignerError {
    /// The FDM code a receipt carries for this error.
    pub fn code(&self) -> FdmCode {
        match self {
            SignerError::NoCard(_) | SignerError::IdentityChanged { .. } => FdmCode::NoCard,
            SignerError::PinRequired => FdmCode::PinRequired,
            SignerError::Blocked => FdmCode::CardBlocked,
            SignerError::WrongPin { .. } | SignerError::BadPinFormat(_) => FdmCode::InvalidPin,
            SignerError::Incompatible(_) => FdmCode::IncompatibleCard,
        }
    }
}

/// Something that signs journal digests. Calls may come from any thread; an implementation
/// serialises access to its device itself.
pub trait Signer: Send + Sync {
    /// The identity of the key that would sign now, or why there is none.
    fn identity(&self) -> Result<SignerIdentity, SignerError>;

    /// The signer's state, for status reports. Must be cheap: it never talks to a slow device.
    fn state(&self) -> SignerState;

    /// Signs a 32-byte digest with the key of `expected_id`. Refuses with
    /// [`SignerError::IdentityChanged`] if another key is in place now.
    fn sign(&self, expected_id: &str, digest: &[u8; 32]) -> Result<Vec<u8>, SignerError>;

    /// True when a signature that is then thrown away leaves no trace outside fdmd (no counter
    /// on a card, no log on a device). The journal writer may then sign the records of a batch
    /// on a second thread while it stores earlier ones, and sign them again if the batch has to
    /// be redone. A card or a networked FDM keeps the default: every signature it makes is for
    /// a record that is then stored, signed one at a time.
    fn allows_speculative_signing(&self) -> bool {
        false
    }

    /// Gives the signer its PIN; answers the state afterwards. Signers without a PIN ignore it.
    fn submit_pin(&self, pin: &Pin) -> Result<SignerState, SignerError> {
        let _ = pin;
        Ok(self.state())
    }

    /// Backend-specific facts for status reports (reader, card, timings). Cheap, like `state`.
    fn details(&self) -> Map<String, Value> {
        Map::new()
    }
}

/// Checks an Ed25519 signature over a digest.
pub fn verify_ed25519(public_key: &[u8], digest: &[u8], signature: &[u8]) -> bool {
    let Ok(key_bytes) = <[u8; 32]>::try_from(public_key) else {
        return false;
    };
    let Ok(sig_bytes) = <[u8; 64]>::try_from(signature) else {
        return false;
    };
    let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(&key_bytes) else {
        return false;
    };
    key.verify_strict(digest, &ed25519_dalek::Signature::from_bytes(&sig_bytes))
        .is_ok()
}
