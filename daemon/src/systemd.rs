//! systemd integration: readiness and watchdog notifications, and logs to journald.
//!
//! Outside systemd (no `NOTIFY_SOCKET`, no `JOURNAL_STREAM`) every call here is a no-op and logs
//! go to standard error.

use std::io::Write;
use std::time::Duration;
use tracing_subscriber::fmt::MakeWriter;

/// Sends `KEY=VALUE` pairs to systemd; ignored when not started by systemd.
pub fn notify(pairs: &[(&str, &str)]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = systemd::daemon::notify(pairs.iter()) {
        tracing::warn!("sd_notify failed: {e}");
    }
}

/// READY=1 with a status line.
pub fn ready(status: &str) {
    notify(&[("READY", "1"), ("STATUS", status)]);
}

/// STATUS= line.
pub fn status(status: &str) {
    notify(&[("STATUS", status)]);
}

/// STOPPING=1.
pub fn stopping() {
    notify(&[("STOPPING", "1"), ("STATUS", "stopping")]);
}

/// WATCHDOG=1.
pub fn watchdog_ping() {
    notify(&[("WATCHDOG", "1")]);
}

/// The watchdog interval systemd asked for (`WATCHDOG_USEC`), if any.
pub fn watchdog_interval() -> Option<Duration> {
    std::env::var_os("NOTIFY_SOCKET")?;
    match systemd::daemon::watchdog_enabled() {
        Ok(usec) if usec > 0 => Some(Duration::from_micros(usec)),
        _ => None,
    }
}

/// True when standard error is connected to journald (systemd sets `JOURNAL_STREAM`).
pub fn logging_to_journald() -> bool {
    std::env::var_os("JOURNAL_STREAM").is_some()
}

/// A `tracing` writer that sends each formatted line to journald with the event's priority.
#[derive(Clone, Copy, Debug, Default)]
pub struct JournaldWriter;

/// One log line on its way to journald.
pub struct JournaldLine {
    priority: u32,
    buf: Vec<u8>,
}

impl Write for JournaldLine {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for JournaldLine {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.buf);
        let text = text.trim_end();
        if !text.is_empty() && systemd::journal::print(self.priority, text).is_err() {
            eprintln!("{text}");
        }
    }
}

impl<'a> MakeWriter<'a> for JournaldWriter {
    type Writer = JournaldLine;

    fn make_writer(&'a self) -> Self::Writer {
        JournaldLine {
            priority: 6,
            buf: Vec::new(),
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        let priority = match *meta.level() {
            tracing::Level::ERROR => 3,
            tracing::Level::WARN => 4,
            tracing::Level::INFO => 6,
            _ => 7,
        };
        JournaldLine {
            priority,
            buf: Vec::new(),
        }
    }
}

/// Sets up logging: journald under systemd, standard error otherwise. `RUST_LOG` filters.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(
            // rumqttd logs every clean client disconnect at ERROR ("router-drop"); the gate logs
            // refusals and connections itself.
            "info,rumqttd=off,rumqttc=warn",
        )
    });
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let result = if logging_to_journald() {
        builder
            .with_writer(JournaldWriter)
            .with_ansi(false)
            .without_time()
            .with_level(false)
            .try_init()
    } else {
        builder
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init()
    };
    if let Err(e) = result {
        eprintln!("fdmd: logging already set up: {e}");
    }
}
