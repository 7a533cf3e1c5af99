//! A second thread that signs record hashes while the writer stores earlier records.
//!
//! Used only with signers that allow speculative signing (the software signer): the writer
//! numbers, encodes and hashes every record of a batch, then hands the batch's hashes over at
//! once, and inserts the rows in order as the signatures come back. The chain needs only the
//! hashes, so the Ed25519 signature, about a quarter of the writer's work per record, leaves
//! the writer's critical path. Signatures come back in the order the hashes were handed over.
//!
//! Hashes and signatures cross between the threads a batch at a time, not one by one: each
//! crossing may wake a parked thread, and a wake-up (a futex call and a context switch on
//! each side) costs about as much as the work it hands over. Handing over per record cost
//! 15 % of the daemon's CPU under load (docs/benchmarks.md).

use crate::signer::{Signer, SignerError};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;

/// Hashes to sign, all with the same key.
struct Job {
    signer_id: Arc<str>,
    hashes: Vec<[u8; 32]>,
}

type Signed = Result<Vec<u8>, SignerError>;

/// The signing thread; it ends when this handle is dropped.
///
/// Owned by the writer thread alone: the buffers are `RefCell`s, so the writer can hand over
/// and collect through a shared reference while it plans a batch.
pub(super) struct SigningThread {
    jobs: Option<mpsc::Sender<Job>>,
    signatures: mpsc::Receiver<Vec<Signed>>,
    /// Hashes submitted and not yet handed over (see [`SigningThread::hand_over`]).
    pending: RefCell<Option<Job>>,
    /// Signatures received and not yet collected, oldest first.
    received: RefCell<VecDeque<Signed>>,
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
                    let signed: Vec<Signed> = job
                        .hashes
                        .iter()
                        .map(|hash| signer.sign(&job.signer_id, hash))
                        .collect();
                    if signature_tx.send(signed).is_err() {
                        break;
                    }
                }
            })?;
        Ok(SigningThread {
            jobs: Some(jobs),
            signatures,
            pending: RefCell::new(None),
            received: RefCell::new(VecDeque::new()),
            thread: Some(thread),
        })
    }

    /// Queues a hash to be signed by `signer_id`. Nothing reaches the thread before
    /// [`SigningThread::hand_over`] (or a [`SigningThread::collect`], which hands over first).
    pub(super) fn submit(&self, signer_id: &Arc<str>, hash: [u8; 32]) {
        let mut pending = self.pending.borrow_mut();
        match pending.as_mut() {
            Some(job) if job.signer_id == *signer_id => job.hashes.push(hash),
            _ => {
                drop(pending);
                self.hand_over();
                *self.pending.borrow_mut() = Some(Job {
                    signer_id: signer_id.clone(),
                    hashes: vec![hash],
                });
            }
        }
    }

    /// Hands the queued hashes over to the thread, in one message. If the thread has stopped
    /// they are dropped: [`SigningThread::collect`] answers them with an error once the
    /// signatures the thread sent before it stopped are collected.
    pub(super) fn hand_over(&self) {
        if let Some(job) = self.pending.borrow_mut().take()
            && let Some(jobs) = &self.jobs
        {
            let _ = jobs.send(job);
        }
    }

    /// The signature of the oldest hash submitted and not yet collected.
    pub(super) fn collect(&self) -> Signed {
        if let Some(signed) = self.received.borrow_mut().pop_front() {
            return signed;
        }
        self.hand_over();
        loop {
            if let Some(signed) = self.received.borrow_mut().pop_front() {
                return signed;
            }
            match self.signatures.recv() {
                Ok(batch) => self.received.borrow_mut().extend(batch),
                Err(_) => return Err(stopped()),
            }
        }
    }

    /// Collects and throws away `count` signatures (a batch that is being redone).
    pub(super) fn discard(&self, count: usize) {
        for _ in 0..count {
            let _ = self.collect();
        }
    }
}

fn stopped() -> SignerError {
    SignerError::NoCard("the signing thread has stopped".into())
}

impl Drop for SigningThread {
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signer::{SignerIdentity, SignerState, SoftwareSigner, verify_ed25519};
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn hash(n: u8) -> [u8; 32] {
        [n; 32]
    }

    #[test]
    fn signatures_come_back_in_order_across_hand_overs() {
        let signer = Arc::new(SoftwareSigner::from_seed([7; 32]));
        let identity = signer.identity().unwrap();
        let id: Arc<str> = Arc::from(identity.id.as_str());
        let thread = SigningThread::start(signer.clone()).unwrap();
        // Two hand-overs, the second made while the first's signatures are still uncollected,
        // and a third submitted but only handed over by `collect`.
        for n in 0..5 {
            thread.submit(&id, hash(n));
        }
        thread.hand_over();
        for n in 5..9 {
            thread.submit(&id, hash(n));
        }
        thread.hand_over();
        thread.submit(&id, hash(9));
        for n in 0..10 {
            let signature = thread.collect().unwrap();
            assert!(
                verify_ed25519(&identity.public_key, &hash(n), &signature),
                "signature {n} is not the signature of hash {n}"
            );
        }
    }

    #[test]
    fn discarded_signatures_do_not_shift_the_next_ones() {
        let signer = Arc::new(SoftwareSigner::from_seed([8; 32]));
        let identity = signer.identity().unwrap();
        let id: Arc<str> = Arc::from(identity.id.as_str());
        let thread = SigningThread::start(signer).unwrap();
        for n in 0..4 {
            thread.submit(&id, hash(n));
        }
        thread.discard(3);
        let signature = thread.collect().unwrap();
        assert!(verify_ed25519(&identity.public_key, &hash(3), &signature));
    }

    /// Signs, but panics (ending the thread) at its `panic_at`-th signature.
    struct Fragile {
        inner: SoftwareSigner,
        signed: AtomicUsize,
        panic_at: usize,
    }

    impl Signer for Fragile {
        fn identity(&self) -> Result<SignerIdentity, SignerError> {
            self.inner.identity()
        }
        fn state(&self) -> SignerState {
            SignerState::Ready
        }
        fn sign(&self, id: &str, digest: &[u8; 32]) -> Result<Vec<u8>, SignerError> {
            if self.signed.fetch_add(1, Ordering::SeqCst) + 1 == self.panic_at {
                panic!("the signer broke (test)");
            }
            self.inner.sign(id, digest)
        }
    }

    #[test]
    fn a_stopped_thread_gives_the_earlier_signatures_then_errors() {
        let signer = Arc::new(Fragile {
            inner: SoftwareSigner::from_seed([9; 32]),
            signed: AtomicUsize::new(0),
            panic_at: 4,
        });
        let identity = signer.identity().unwrap();
        let id: Arc<str> = Arc::from(identity.id.as_str());
        let thread = SigningThread::start(signer).unwrap();
        for n in 0..3 {
            thread.submit(&id, hash(n));
        }
        thread.hand_over();
        // The second batch breaks the thread at its first signature.
        for n in 3..6 {
            thread.submit(&id, hash(n));
        }
        for n in 0..3 {
            let signature = thread.collect().unwrap();
            assert!(verify_ed25519(&identity.public_key, &hash(n), &signature));
        }
        for _ in 3..6 {
            assert!(matches!(thread.collect(), Err(SignerError::NoCard(_))));
        }
        // Later hashes are refused too, and nothing blocks.
        thread.submit(&id, hash(6));
        assert!(matches!(thread.collect(), Err(SignerError::NoCard(_))));
    }
}
