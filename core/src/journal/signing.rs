//! A second thread that signs record hashes while the writer stores earlier records.
//!
//! Used only with signers that allow speculative signing (the software signer): the writer
//! numbers, encodes and hashes every record of a batch, hands each hash over as soon as it has
//! it, and inserts the rows in order as the signatures come back. The chain needs only the
//! hashes, so the Ed25519 signature, about a quarter of the writer's work per record, leaves
//! the writer's critical path. Signatures come back in the order the hashes were handed over.

use crate::signer::{Signer, SignerError};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;

struct Job {
    signer_id: Arc<str>,
    hash: [u8; 32],
}

/// The signing thread; it ends when this handle is dropped.
pub(super) struct SigningThread {
    jobs: Option<mpsc::Sender<Job>>,
    signatures: mpsc::Receiver<Result<Vec<u8>, SignerError>>,
    thread: Option<JoinHandle<()>>,
}

impl SigningThread {
    /// Starts the thread, named `journal-signer`.
    pub(super) fn start(signer: Arc<dyn Signer>) -> std::io::Result<Self> {
        let (jobs, job_rx) = mpsc::channel::<Job>();
        let (signature_tx, signatures) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("journal-signer".into())
            .spawn(move || {
                for job in job_rx {
                    let signature = signer.sign(&job.signer_id, &job.hash);
                    if signature_tx.send(signature).is_err() {
                        break;
                    }
                }
            })?;
        Ok(SigningThread {
            jobs: Some(jobs),
            signatures,
            thread: Some(thread),
        })
    }

    /// Hands a hash over to be signed by `signer_id`.
    pub(super) fn submit(&self, signer_id: &Arc<str>, hash: [u8; 32]) -> Result<(), SignerError> {
        let sent = self.jobs.as_ref().is_some_and(|jobs| {
            jobs.send(Job {
                signer_id: signer_id.clone(),
                hash,
            })
            .is_ok()
        });
        if sent {
            Ok(())
        } else {
            Err(SignerError::NoCard("the signing thread has stopped".into()))
        }
    }

    /// The signature of the oldest hash handed over and not yet collected.
    pub(super) fn collect(&self) -> Result<Vec<u8>, SignerError> {
        self.signatures
            .recv()
            .unwrap_or_else(|_| Err(SignerError::NoCard("the signing thread has stopped".into())))
    }

    /// Collects and throws away `count` signatures (a batch that is being redone).
    pub(super) fn discard(&self, count: usize) {
        for _ in 0..count {
            if self.signatures.recv().is_err() {
                break;
            }
        }
    }
}

impl Drop for SigningThread {
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
