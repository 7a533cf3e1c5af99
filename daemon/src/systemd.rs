//! systemd integration: readiness and watchdog notifications, and logs to journald.
//!
//! Outside systemd (no `NOTIFY_SOCKET`, no `JOURNAL_STREAM`) every call here is a no-op and logs
//! go to standard error. Pure Rust, no libsystemd: notifications go through the `sd-notify`
//! crate (sd_notify(3) protocol), and log lines go to standard error with the `<N>` priority
//! prefix that journald reads on a service's output stream (sd-daemon(3)). Without a C library
//! to link, the daemon cross-builds for arm64 and armhf with no target packages (the reference's
//! advice: `sd-notify` and plain standard error rather than the libsystemd-linked `systemd`
//! crate).

use std::io::Write;
use std::time::Duration;
use tracing_subscriber::fmt::MakeWriter;

use sd_notify::NotifyState;

/// Sends states to systemd (the `sd-notify` crate speaks the protocol); ignored when not started
/// by systemd (no `NOTIFY_SOCKET`).
fn notify(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!("sd_notify failed: {e}");
    }
}

/// A status line for `STATUS=`: one line, as the protocol needs.
fn one_line(status: &str) -> String {
    status.replace(['\n', '\r'], " ")
}

/// READY=1 with a status line.
pub fn ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(&one_line(status))]);
}

/// STATUS= line.
pub fn status(status: &str) {
    notify(&[NotifyState::Status(&one_line(status))]);
}

/// STOPPING=1.
pub fn stopping() {
    notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// WATCHDOG=1.
pub fn watchdog_ping() {
    notify(&[NotifyState::Watchdog]);
}

/// The watchdog interval systemd asked for (`WATCHDOG_USEC`, for this process), if any.
pub fn watchdog_interval() -> Option<Duration> {
    std::env::var_os("NOTIFY_SOCKET")?;
    sd_notify::watchdog_enabled().filter(|interval| !interval.is_zero())
}

/// True when standard error is connected to journald (systemd sets `JOURNAL_STREAM`).
pub fn logging_to_journald() -> bool {
    std::env::var_os("JOURNAL_STREAM").is_some()
}

/// A `tracing` writer that prefixes each formatted line with the event's syslog priority
/// (`<3>` error … `<7>` debug) for journald.
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
        if text.is_empty() {
            return;
        }
        // One `<N>` prefix per line: journald gives every line of the stream its own entry.
        let mut out = String::with_capacity(text.len() + 4);
        for line in text.lines() {
            out.push_str(&format!("<{}>{line}\n", self.priority));
        }
        let _ = std::io::stderr().lock().write_all(out.as_bytes());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_stay_on_one_line() {
        assert_eq!(one_line("degraded:\nno card\r"), "degraded: no card ");
    }
}
