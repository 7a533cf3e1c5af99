//! Network ESC/POS printers (raw TCP, usually port 9100): one queue and one worker per printer.
//!
//! Printing never holds up registration: a job is queued after its record is durable, and a full
//! queue drops the job (counted as failed). A worker connects, writes the bytes and closes; on
//! failure it retries with a delay that doubles from 1 s up to 30 s, `print_attempts` times, then
//! reports the job as failed (log, `printers` in the status document) and goes on with the next.

use crate::config::RestaurantSection;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

/// Jobs waiting per printer before new ones are dropped.
pub const QUEUE: usize = 256;

/// Figures of one printer.
#[derive(Debug, Default)]
pub struct PrinterStats {
    /// Jobs printed.
    pub printed: AtomicU64,
    /// Jobs given up (all attempts failed, or the queue was full).
    pub failed: AtomicU64,
    /// Attempts that failed (a job may need several).
    pub retries: AtomicU64,
    /// The last error, if any.
    pub last_error: Mutex<Option<String>>,
}

struct Printer {
    station: String,
    address: SocketAddr,
    tx: mpsc::Sender<Vec<u8>>,
    stats: Arc<PrinterStats>,
}

/// The configured printers.
pub struct Printers {
    printers: Vec<Printer>,
}

impl Printers {
    /// Starts a worker per configured printer on the current tokio runtime (none without one).
    pub fn start(config: &RestaurantSection) -> Printers {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return Printers {
                printers: Vec::new(),
            };
        };
        let attempts = config.print_attempts.max(1);
        let timeout = Duration::from_millis(config.print_timeout_ms.max(1));
        let printers = config
            .printers
            .iter()
            .map(|p| {
                let (tx, rx) = mpsc::channel(QUEUE);
                let stats = Arc::new(PrinterStats::default());
                rt.spawn(worker(p.address, rx, stats.clone(), attempts, timeout));
                Printer {
                    station: p.station.clone(),
                    address: p.address,
                    tx,
                    stats,
                }
            })
            .collect();
        Printers { printers }
    }

    /// True when a printer prints for `station` (`receipts` for customer tickets).
    pub fn has(&self, station: &str) -> bool {
        self.printers.iter().any(|p| p.station == station)
    }

    /// Queues `bytes` on every printer of `station`; never waits.
    pub fn print(&self, station: &str, bytes: &[u8]) {
        for p in self.printers.iter().filter(|p| p.station == station) {
            if let Err(e) = p.tx.try_send(bytes.to_vec()) {
                p.stats.failed.fetch_add(1, Ordering::Relaxed);
                let why = format!("job dropped: {e}");
                tracing::error!(station, printer = %p.address, "{why}");
                *p.stats.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
            }
        }
    }

    /// The printers and their figures, for the status document.
    pub fn to_json(&self) -> Value {
        Value::Array(
            self.printers
                .iter()
                .map(|p| {
                    json!({
                        "station": p.station,
                        "address": p.address.to_string(),
                        "printed": p.stats.printed.load(Ordering::Relaxed),
                        "failed": p.stats.failed.load(Ordering::Relaxed),
                        "retries": p.stats.retries.load(Ordering::Relaxed),
                        "queued": QUEUE - p.tx.capacity(),
                        "last_error": *p.stats.last_error.lock().unwrap_or_else(|e| e.into_inner()),
                    })
                })
                .collect(),
        )
    }
}

async fn send(address: SocketAddr, bytes: &[u8], timeout: Duration) -> std::io::Result<()> {
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(address).await?;
        stream.write_all(bytes).await?;
        stream.flush().await?;
        stream.shutdown().await
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "timed out",
            ))
        })
}

async fn worker(
    address: SocketAddr,
    mut rx: mpsc::Receiver<Vec<u8>>,
    stats: Arc<PrinterStats>,
    attempts: u32,
    timeout: Duration,
) {
    while let Some(job) = rx.recv().await {
        let mut delay = Duration::from_secs(1);
        for attempt in 1..=attempts {
            match send(address, &job, timeout).await {
                Ok(()) => {
                    stats.printed.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Err(e) => {
                    let why = format!("printer {address}: {e} (attempt {attempt} of {attempts})");
                    *stats.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(why.clone());
                    if attempt == attempts {
                        stats.failed.fetch_add(1, Ordering::Relaxed);
                        tracing::error!("print job given up: {why}");
                    } else {
                        stats.retries.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!("{why}; retrying in {delay:?}");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(30));
                    }
                }
            }
        }
    }
}
