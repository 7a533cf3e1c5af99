//! The copy's CPU work on a thread the kernel runs only when no other thread wants a core.
//!
//! Reading a segment of a few thousand records and encoding it as an export takes tens of
//! milliseconds of one core. On a two-core box that is half the machine taken from the order
//! path while a backlog is sent, and the registers' p99 latency tripled in the catch-up
//! benchmark (`backoffice/benches/catch_up.rs`). So each segment is built on a thread of its
//! own whose scheduling policy is `SCHED_IDLE`: it gets whatever the orders leave, and
//! catching up an idle box still uses the whole machine.
//!
//! Lowering a thread's own policy needs no privilege; the shipped unit allows the one system
//! call (`sched_setscheduler`, otherwise in the `@resources` set it filters) and
//! `RestrictRealtime=yes` keeps it from raising any. Where the call is refused anyway, the
//! segment is built at normal priority and the status says so once in the log.

use std::sync::atomic::{AtomicBool, Ordering};

/// Whether the refusal was logged already (once per process).
static REFUSAL_LOGGED: AtomicBool = AtomicBool::new(false);

/// Runs `work` on a new thread named `name` at `SCHED_IDLE` and waits for its result without
/// blocking the runtime. `Err` when the thread cannot be started or ends without an answer.
pub async fn run<T: Send + 'static>(
    name: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let (answer, answered) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            if let Err(e) = lower_this_thread() {
                if !REFUSAL_LOGGED.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "backoffice copy: cannot lower its thread's priority ({e}); segments are built at normal priority"
                    );
                }
            }
            let _ = answer.send(work());
        })
        .map_err(|e| format!("cannot start the copy's thread: {e}"))?;
    answered
        .await
        .map_err(|_| "the copy's thread ended without an answer".to_owned())
}

/// Sets the calling thread's scheduling policy to `SCHED_IDLE`.
fn lower_this_thread() -> std::io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid `sched_param` for the duration of the call; pid 0 names the
    // calling thread only, and SCHED_IDLE with priority 0 is a valid combination.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The scheduling policy of the calling thread (for the test).
#[cfg(test)]
fn this_thread_policy() -> i32 {
    // SAFETY: no arguments besides pid 0, the calling thread.
    unsafe { libc::sched_getscheduler(0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_runs_at_idle_priority_and_its_result_comes_back() {
        let policy = run("fdmd-copy-test", this_thread_policy).await.unwrap();
        assert_eq!(policy, libc::SCHED_IDLE);
        // The caller's own thread is not touched.
        assert_eq!(this_thread_policy(), libc::SCHED_OTHER);
        let r: Result<u8, String> = run("fdmd-copy-test", || panic!("boom")).await;
        assert!(r.is_err());
    }
}
