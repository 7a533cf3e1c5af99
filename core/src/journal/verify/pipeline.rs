//! A verification run as a pipeline: chunks read on the calling thread, prepared on a pool of
//! worker threads kept for the whole run, consumed in order on one thread.
//!
//! ```text
//! calling thread ──chunk n──▶ workers (one per core, any order) ──▶ in-order thread
//!   (reads rows / lines)        (each record's own checks and          (chain, signers,
//!                                its signature, see [`super::speculate`])  counters, series)
//! ```
//!
//! Each worker takes a whole chunk at a time, so nothing is started or joined per chunk and the
//! in-order step of chunk n runs while the workers prepare chunks n+1, n+2, … Memory is bounded:
//! at most [`in_flight`] chunks are read and not yet consumed (a token is taken before a chunk is
//! handed over and given back once the in-order thread has consumed it), plus the chunk being
//! read.

use super::parallel::threads;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, channel, sync_channel};
use std::sync::{Mutex, PoisonError};

/// Chunks read and not yet consumed, at most: two per worker (one being prepared, one waiting)
/// and one the in-order thread is on.
pub(crate) fn in_flight(workers: usize) -> usize {
    2 * workers + 1
}

/// The in-order step stopped (at a bad record, or it panicked): the reader should stop reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stopped;

/// Where the reader hands its chunks to the pipeline.
pub(crate) struct Feed<'a, I> {
    jobs: SyncSender<(u64, I)>,
    tokens: &'a Receiver<()>,
    stopped: &'a AtomicBool,
    next: u64,
}

impl<I> Feed<'_, I> {
    /// Hands the next chunk over, waiting while [`in_flight`] chunks are already in flight.
    /// `Err(Stopped)` when the in-order step has stopped: its verdict is what counts, so the
    /// reader should stop.
    pub(crate) fn send(&mut self, chunk: I) -> Result<(), Stopped> {
        if self.stopped.load(Ordering::Acquire) {
            return Err(Stopped);
        }
        self.tokens.recv().map_err(|_| Stopped)?;
        if self.stopped.load(Ordering::Acquire) {
            return Err(Stopped);
        }
        self.jobs.send((self.next, chunk)).map_err(|_| Stopped)?;
        self.next += 1;
        Ok(())
    }
}

/// Sets the stop flag when dropped (on every exit of the in-order thread, panics included).
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Runs `produce` on the calling thread, which hands chunks to its [`Feed`]; `prepare` runs on
/// [`threads`] worker threads, a whole chunk at a time, in any order; `consume` runs on one
/// thread and gets the prepared chunks in the order they were handed over, until it returns an
/// error. Returns what `produce` returned and the first error of `consume` (when `consume`
/// failed, the feed refused further chunks and the reader's own outcome says only that).
///
/// Threads live for the whole call. A panic in `prepare` or `consume` is raised again on the
/// calling thread once the reader has returned.
pub(crate) fn pipeline<I: Send, P: Send, E: Send, R>(
    prepare: impl Fn(I) -> P + Sync,
    consume: impl FnMut(P) -> Result<(), E> + Send,
    produce: impl FnOnce(&mut Feed<'_, I>) -> R,
) -> (R, Result<(), E>) {
    let workers = threads();
    let in_flight = in_flight(workers);
    let (token_tx, token_rx) = sync_channel::<()>(in_flight);
    for _ in 0..in_flight {
        // Cannot fail: the receiver is alive and the channel has room for every token.
        let _ = token_tx.send(());
    }
    let (job_tx, job_rx) = sync_channel::<(u64, I)>(in_flight);
    let job_rx = Mutex::new(job_rx);
    let (done_tx, done_rx) = channel::<(u64, std::thread::Result<P>)>();
    let stopped = AtomicBool::new(false);
    let prepare = &prepare;
    let job_rx = &job_rx;
    let stopped_ref = &stopped;
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let done_tx = done_tx.clone();
            scope.spawn(move || {
                loop {
                    let job = job_rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
                    let Ok((n, chunk)) = job else { return };
                    if stopped_ref.load(Ordering::Acquire) {
                        continue;
                    }
                    let prepared =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| prepare(chunk)));
                    // The in-order thread may have stopped: the chunk is then dropped.
                    let _ = done_tx.send((n, prepared));
                }
            });
        }
        drop(done_tx);
        let consumer = scope.spawn(move || {
            let _stop = StopOnDrop(stopped_ref);
            let mut consume = consume;
            let mut waiting: BTreeMap<u64, P> = BTreeMap::new();
            let mut next = 0u64;
            for (n, prepared) in done_rx.iter() {
                match prepared {
                    Ok(p) => {
                        waiting.insert(n, p);
                    }
                    Err(panic) => std::panic::resume_unwind(panic),
                }
                while let Some(p) = waiting.remove(&next) {
                    next += 1;
                    consume(p)?;
                    // The reader may have finished (its receiver gone): nothing to give back.
                    let _ = token_tx.send(());
                }
            }
            Ok(())
        });
        let mut feed = Feed {
            jobs: job_tx,
            tokens: &token_rx,
            stopped: stopped_ref,
            next: 0,
        };
        let produced = produce(&mut feed);
        // No more chunks: the workers finish theirs and end, then the in-order thread.
        drop(feed);
        let consumed = consumer
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (produced, consumed)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_consumed_in_order_and_the_first_error_stops_the_reader() {
        let mut seen = Vec::new();
        let (sent, consumed) = pipeline(
            |n: u64| n * 10,
            |p: u64| {
                seen.push(p);
                if p == 500 { Err(p) } else { Ok(()) }
            },
            |feed| {
                let mut sent = 0;
                for n in 0..10_000u64 {
                    if feed.send(n).is_err() {
                        break;
                    }
                    sent += 1;
                }
                sent
            },
        );
        assert_eq!(consumed, Err(500));
        assert_eq!(seen, (0..=50).map(|n| n * 10).collect::<Vec<_>>());
        // The reader stopped soon after: at most the chunks in flight beyond the bad one.
        assert!(sent <= 51 + in_flight(threads()) as u64, "{sent}");
    }

    #[test]
    fn every_chunk_is_consumed_when_nothing_fails() {
        let mut total = 0u64;
        let ((), consumed) = pipeline(
            |v: Vec<u64>| v.iter().sum::<u64>(),
            |s: u64| -> Result<(), ()> {
                total += s;
                Ok(())
            },
            |feed| {
                for n in 0..1000u64 {
                    assert!(feed.send(vec![n, n]).is_ok());
                }
            },
        );
        assert_eq!(consumed, Ok(()));
        assert_eq!(total, 999 * 1000);
    }

    #[test]
    #[should_panic(expected = "prepare failed")]
    fn a_panic_while_preparing_reaches_the_caller() {
        let _ = pipeline(
            |n: u64| {
                assert!(n != 7, "prepare failed");
                n
            },
            |_: u64| -> Result<(), ()> { Ok(()) },
            |feed| {
                for n in 0..100u64 {
                    if feed.send(n).is_err() {
                        break;
                    }
                }
            },
        );
    }
}
