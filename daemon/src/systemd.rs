//! systemd integration: readiness and watchdog notifications, and logs to journald.
//!
//! Outside systemd (no `NOTIFY_SOCKET`, no `JOURNAL_STREAM`) every call here is a no-op and logs
//! go to standard error. Pure Rust, no libsystemd: notifications are datagrams on the
//! `NOTIFY_SOCKET` (sd_notify(3) protocol), and log lines go to standard error with the
//! `<N>` priority prefix that journald reads on a service's output stream (sd-daemon(3)). Without
//! a C library to link, the daemon cross-builds for arm64 and armhf with no target packages.

use std::io::Write;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;
use tracing_subscriber::fmt::MakeWriter;

/// Why a notification could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// `NOTIFY_SOCKET` is neither an absolute path nor an abstract name (`@…`).
    #[error("NOTIFY_SOCKET {0:?} is not an absolute path or an abstract socket name")]
    BadAddress(String),
    /// The socket could not be reached.
    #[error("sending to NOTIFY_SOCKET: {0}")]
    Io(#[from] std::io::Error),
}

/// The address `NOTIFY_SOCKET` names: an absolute path, or `@name` for an abstract socket.
fn notify_address(value: &std::ffi::OsStr) -> Result<SocketAddr, NotifyError> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = value.as_bytes();
    match bytes.first() {
        Some(b'/') => Ok(SocketAddr::from_pathname(value)?),
        Some(b'@') => {
            use std::os::linux::net::SocketAddrExt;
            Ok(SocketAddr::from_abstract_name(&bytes[1..])?)
        }
        _ => Err(NotifyError::BadAddress(
            value.to_string_lossy().into_owned(),
        )),
    }
}

/// Sends one `KEY=VALUE\n…` datagram to the socket `NOTIFY_SOCKET` names, if it is set.
fn send_notification(message: &str) -> Result<(), NotifyError> {
    let Some(value) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(());
    };
    let address = notify_address(&value)?;
    let socket = UnixDatagram::unbound()?;
    socket.send_to_addr(message.as_bytes(), &address)?;
    Ok(())
}

/// Sends `KEY=VALUE` pairs to systemd; ignored when not started by systemd.
pub fn notify(pairs: &[(&str, &str)]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    let mut message = String::new();
    for (key, value) in pairs {
        // A value cannot span lines in the protocol; keep status lines on one line.
        message.push_str(key);
        message.push('=');
        message.push_str(&value.replace('\n', " "));
        message.push('\n');
    }
    if let Err(e) = send_notification(&message) {
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
    watchdog_from(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    )
}

/// sd_watchdog_enabled(3): `WATCHDOG_USEC` > 0, meant for this process when `WATCHDOG_PID` is set.
fn watchdog_from(usec: Option<&str>, pid: Option<&str>, own_pid: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok()?;
    if usec == 0 {
        return None;
    }
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok()? != own_pid {
            return None;
        }
    }
    Some(Duration::from_micros(usec))
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
    use std::ffi::OsStr;

    #[test]
    fn watchdog_interval_follows_sd_watchdog_enabled() {
        assert_eq!(
            watchdog_from(Some("30000000"), None, 7),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            watchdog_from(Some("30000000"), Some("7"), 7),
            Some(Duration::from_secs(30))
        );
        assert_eq!(watchdog_from(Some("30000000"), Some("8"), 7), None);
        assert_eq!(watchdog_from(Some("0"), None, 7), None);
        assert_eq!(watchdog_from(Some("soon"), None, 7), None);
        assert_eq!(watchdog_from(None, Some("7"), 7), None);
    }

    #[test]
    fn notify_address_accepts_paths_and_abstract_names_only() {
        assert!(notify_address(OsStr::new("/run/systemd/notify")).is_ok());
        assert!(notify_address(OsStr::new("@fdmd-test")).is_ok());
        assert!(matches!(
            notify_address(OsStr::new("relative/notify")),
            Err(NotifyError::BadAddress(_))
        ));
        assert!(notify_address(OsStr::new("")).is_err());
    }

    #[test]
    fn a_notification_is_one_datagram_of_key_value_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).expect("bind");
        let address = notify_address(path.as_os_str()).expect("address");
        UnixDatagram::unbound()
            .expect("socket")
            .send_to_addr(b"READY=1\nSTATUS=ok\n", &address)
            .expect("send");
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=ok\n");
    }
}
