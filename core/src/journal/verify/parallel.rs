//! The chunks of a verification run and the checks of one chunk.
//!
//! A chunk of records (at most [`CHUNK_RECORDS`] records and about [`CHUNK_BYTES`] bytes) is
//! checked in two steps ([`super::pipeline`] runs them):
//! 1. on a worker, a whole chunk at a time, the workers on every core: each record's own bytes
//!    ([`super::content`]) and its signature with the key guessed for it
//!    ([`super::speculate`]);
//! 2. on one thread, in order: sequence, chain, signers, counters and series
//!    ([`super::Verifier`]), which stops at the first record with a problem; a record's signature
//!    answer from step 1 is used when its key is the one in effect (a bad one stops there),
//!    otherwise, assuming every signature before it is good, the signature is listed and the
//!    list checked at the end of the chunk ([`Pass::finish`], on all cores: rare, after a
//!    signer declaration the guess missed).
//!
//! The first bad record of the chunk is then the first record with a bad listed signature, or
//! else the record where step 2 stopped: exactly the record a one-by-one verifier names, with the
//! same problem, because every record before it passed every check.

use super::content::Prepared;
use super::{KnownSigner, VerifyError};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Most records held at once (fewer in unit tests, so that small journals span several chunks).
pub(crate) const CHUNK_RECORDS: usize = if cfg!(test) { 256 } else { 2048 };
/// A chunk is closed once its records' bytes reach this (records are ~2 KiB; this bounds memory
/// when a file holds much larger lines).
pub(crate) const CHUNK_BYTES: usize = 8 * 1024 * 1024;
/// Below this many items a step runs on the calling thread alone.
const MIN_PARALLEL: usize = 64;

/// Threads to use: the cores available (at most 16).
pub(crate) fn threads() -> usize {
    std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(1)
        .clamp(1, 16)
}

/// Items a thread takes at a time: small enough that when the machine is busy and one thread
/// is not scheduled, the others take over its share instead of waiting for it at the end.
const SLICE: usize = 16;

/// `f(index, item)` for every item, on [`threads`] threads, results in the items' order. Threads
/// take [`SLICE`] items at a time from a shared counter (no fixed split). Memory: the results,
/// nothing per item beyond them (callers pass bounded chunks).
pub fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(usize, &T) -> R + Sync) -> Vec<R> {
    let threads = threads();
    if threads == 1 || items.len() < MIN_PARALLEL {
        return items.iter().enumerate().map(|(i, t)| f(i, t)).collect();
    }
    let next = AtomicUsize::new(0);
    let work = || {
        let mut done: Vec<(usize, Vec<R>)> = Vec::new();
        loop {
            let start = next.fetch_add(SLICE, Ordering::Relaxed);
            if start >= items.len() {
                return done;
            }
            let end = (start + SLICE).min(items.len());
            let results = items[start..end]
                .iter()
                .enumerate()
                .map(|(i, t)| f(start + i, t))
                .collect();
            done.push((start, results));
        }
    };
    let mut slices: Vec<(usize, Vec<R>)> = std::thread::scope(|scope| {
        let work = &work;
        let helpers: Vec<_> = (1..threads).map(|_| scope.spawn(work)).collect();
        let mut slices = work();
        for helper in helpers {
            match helper.join() {
                Ok(done) => slices.extend(done),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        slices
    });
    slices.sort_unstable_by_key(|(start, _)| *start);
    slices
        .into_iter()
        .flat_map(|(_, results)| results)
        .collect()
}

/// A signature to check: the record (an index into the chunk) and the signer it must verify with.
pub(crate) struct SignatureCheck {
    pub(crate) item: usize,
    pub(crate) signer: Arc<KnownSigner>,
}

/// Signature checks listed by step 2 (those step 1 could not answer), and the problem it
/// stopped at, if any.
pub(crate) struct Pass<E> {
    pub(crate) checks: Vec<SignatureCheck>,
    pub(crate) stop: Option<E>,
}

impl<E> Default for Pass<E> {
    fn default() -> Self {
        Pass {
            checks: Vec::new(),
            stop: None,
        }
    }
}

impl<E: From<VerifyError>> Pass<E> {
    /// The listed signatures: the first bad one wins over the problem step 2 stopped at (it is
    /// earlier or in the same record before that record's later checks).
    pub(crate) fn finish<'a>(
        self,
        prepared: impl Fn(usize) -> Option<&'a Prepared> + Sync,
    ) -> Result<(), E> {
        let good = par_map(&self.checks, |_, check| {
            prepared(check.item).is_some_and(|p| check.signer.verifies(&p.hash, &p.signature))
        });
        if let Some(bad) = good.iter().position(|ok| !ok) {
            let check = &self.checks[bad];
            let seq = prepared(check.item).map_or(0, |p| p.seq);
            return Err(E::from(VerifyError {
                seq,
                problem: format!("bad signature (signer {})", check.signer.declared.id),
            }));
        }
        self.stop.map_or(Ok(()), Err)
    }
}
