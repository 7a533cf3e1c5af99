//! A plugin running inside the daemon: one dedicated thread owns its context and runs every call
//! (calls are serialised, never on the async runtime); callers wait with a timeout. For
//! first-party plugins and tests; vendor code should run isolated ([`super::isolate`]).

use super::Instance;
use super::native::{CallError, InputMsg, Loaded, Output, PluginInfo};
use std::sync::mpsc;
use std::time::Duration;

/// Calls that may wait behind a slow one before new calls are refused with `Busy`.
const QUEUE: usize = 16;

enum Job {
    Handle(InputMsg, mpsc::SyncSender<Result<Vec<Output>, CallError>>),
    Health(mpsc::SyncSender<Result<(), CallError>>),
}

/// An in-process plugin instance.
pub struct InProcess {
    info: PluginInfo,
    jobs: mpsc::SyncSender<Job>,
    timeout: Duration,
}

impl InProcess {
    /// Initialises the plugin on its own thread.
    pub fn start(
        loaded: Loaded,
        config: &[u8],
        name: &str,
        timeout: Duration,
    ) -> Result<InProcess, CallError> {
        let info = loaded.info().clone();
        let (jobs, rx) = mpsc::sync_channel::<Job>(QUEUE);
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let config = config.to_vec();
        std::thread::Builder::new()
            .name(format!("plugin-{name}"))
            .spawn(move || {
                let mut ctx = match loaded.init(&config) {
                    Ok(ctx) => {
                        let _ = ready_tx.send(Ok(()));
                        ctx
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                while let Ok(job) = rx.recv() {
                    match job {
                        Job::Handle(input, reply) => {
                            let _ = reply.send(loaded.handle(&mut ctx, &input));
                        }
                        Job::Health(reply) => {
                            let _ = reply.send(loaded.health(&mut ctx));
                        }
                    }
                }
                loaded.shutdown(ctx);
            })
            .map_err(|e| CallError::Unavailable(e.to_string()))?;
        match ready_rx.recv_timeout(timeout) {
            Ok(Ok(())) => Ok(InProcess {
                info,
                jobs,
                timeout,
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(CallError::Timeout(timeout.as_millis() as u64)),
        }
    }

    fn run<T>(
        &self,
        make: impl FnOnce(mpsc::SyncSender<Result<T, CallError>>) -> Job,
    ) -> Result<T, CallError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.jobs.try_send(make(tx)).map_err(|e| match e {
            mpsc::TrySendError::Full(_) => CallError::Busy,
            mpsc::TrySendError::Disconnected(_) => {
                CallError::Unavailable("the plugin thread stopped".into())
            }
        })?;
        match rx.recv_timeout(self.timeout) {
            Ok(result) => result,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                Err(CallError::Timeout(self.timeout.as_millis() as u64))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                Err(CallError::Unavailable("the plugin thread stopped".into()))
            }
        }
    }
}

impl Instance for InProcess {
    fn info(&self) -> PluginInfo {
        self.info.clone()
    }

    fn call(&self, input: InputMsg) -> Result<Vec<Output>, CallError> {
        self.run(|tx| Job::Handle(input, tx))
    }

    fn health(&self) -> Result<(), CallError> {
        self.run(Job::Health)
    }
}
