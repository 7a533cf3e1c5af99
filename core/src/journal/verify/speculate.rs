//! Checking signatures ahead of the chain, on the worker that prepares a chunk.
//!
//! Which key a record's signature must verify with is decided in order by [`super::Verifier`]
//! (the declarations before it, the trusted keys). Declarations are rare, so the worker guesses
//! it: the key last declared for the record's `signer_id` among the declarations it has seen
//! (its own chunk's records in order, other workers' chunks, an export header's list) and runs
//! `verify_strict` with it, once per record (ADR 0007). The in-order step uses that answer only
//! when the key it finds for the record has the same bytes as the guess: the answer is a function
//! of the key's bytes, the hash and the signature alone, so it is the answer the one-by-one
//! verifier gets. Otherwise (no guess, another key) it lists the signature to check as before
//! ([`super::parallel::Pass`]).

use super::KnownSigner;
use super::content::Prepared;
use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

/// A signature checked ahead of the chain: with which signer's key, and the answer.
#[derive(Debug, Clone)]
pub(crate) struct Checked {
    /// The signer guessed (its key is what matters).
    pub(crate) signer: Arc<KnownSigner>,
    /// `verify_strict` accepted the signature with that key.
    pub(crate) good: bool,
}

impl Checked {
    /// The answer, when it was computed with `signer`'s key; `None` when the guess was another key.
    pub(crate) fn answer_for(&self, signer: &KnownSigner) -> Option<bool> {
        (self.signer.key == signer.key).then_some(self.good)
    }
}

/// The declarations seen so far by any worker, by signer id (the latest seen wins; a wrong
/// guess costs only a second check in order).
#[derive(Debug, Default)]
pub(crate) struct Guesses {
    signers: RwLock<HashMap<String, Arc<KnownSigner>>>,
}

impl Guesses {
    /// Starts with these signers (an export header's, or a verifier's state).
    pub(crate) fn new(known: impl IntoIterator<Item = Arc<KnownSigner>>) -> Self {
        Guesses {
            signers: RwLock::new(
                known
                    .into_iter()
                    .map(|s| (s.declared.id.clone(), s))
                    .collect(),
            ),
        }
    }

    /// Checks the signature of each record of a chunk, in order, with the key guessed for it,
    /// and records the answer in [`Prepared::checked`]. Records whose own bytes have a problem
    /// or whose signer nobody declared are left unchecked.
    pub(crate) fn check<'a>(&self, records: impl IntoIterator<Item = &'a mut Prepared>) {
        let mut local = self
            .signers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for p in records {
            let Ok(content) = &p.content else { continue };
            if let Some(Some(declared)) = &content.declaration {
                let signer = Arc::new(KnownSigner::new(declared.clone(), false));
                local.insert(declared.id.clone(), signer.clone());
                self.signers
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(declared.id.clone(), signer);
            }
            let signer = match local.get(&content.signer_id) {
                Some(signer) => signer.clone(),
                None => {
                    let shared = self.signers.read().unwrap_or_else(PoisonError::into_inner);
                    let Some(signer) = shared.get(&content.signer_id).cloned() else {
                        continue;
                    };
                    drop(shared);
                    local.insert(content.signer_id.clone(), signer.clone());
                    signer
                }
            };
            let good = signer.verifies(&p.hash, &p.signature);
            p.checked = Some(Checked { signer, good });
        }
    }
}
