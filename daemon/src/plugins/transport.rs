//! The transports the host owns for a plugin: a TCP listener (one connection id per client) and
//! a serial device (raw, 8N1, at the configured speed; one connection id while it is open).
//! Bytes read are handed to the plugin as they come; its outputs for the same connection are
//! written back. A failed call (error, panic, timeout, crashed helper) closes a TCP connection
//! and is reported in the status; the daemon keeps serving.

use super::native::{CallError, InputMsg, Output};
use super::{Instance, Reporter};
use crate::app::App;
use crate::config::PluginInstanceConfig;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Bytes read from a transport per call.
const READ_CHUNK: usize = 4096;
/// Most TCP connections per plugin listener.
const MAX_TCP_CONNECTIONS: usize = 64;

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

fn next_conn() -> u64 {
    NEXT_CONN.fetch_add(1, Ordering::Relaxed)
}

/// A running transport.
pub enum Running {
    /// A TCP listener task.
    Tcp(tokio::task::JoinHandle<()>, CancellationToken),
    /// A serial reader thread.
    Serial(std::thread::JoinHandle<()>, Arc<AtomicBool>),
}

impl Running {
    /// Stops it (bounded: the serial thread wakes every 200 ms).
    pub async fn stop(self) {
        match self {
            Running::Tcp(task, token) => {
                token.cancel();
                let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
            }
            Running::Serial(thread, stop) => {
                stop.store(true, Ordering::Relaxed);
                let _ = tokio::task::spawn_blocking(move || thread.join()).await;
            }
        }
    }
}

/// Starts the transports an instance is configured with.
pub async fn start(
    app: &Arc<App>,
    inst: &PluginInstanceConfig,
    instance: Arc<dyn Instance>,
    reporter: Reporter,
) -> Vec<Running> {
    let mut running = Vec::new();
    if let Some(addr) = inst.tcp_listen {
        let token = app.shutdown.child_token();
        let task = tokio::spawn(listen_and_serve(
            addr,
            instance.clone(),
            reporter.clone(),
            token.clone(),
        ));
        running.push(Running::Tcp(task, token));
    }
    if let Some(device) = &inst.serial {
        let stop = Arc::new(AtomicBool::new(false));
        let (device, baud) = (device.clone(), inst.serial_baud);
        let (instance, reporter2, stop2) = (instance.clone(), reporter.clone(), stop.clone());
        match std::thread::Builder::new()
            .name(format!("serial-{}", inst.name))
            .spawn(move || serve_serial(&device, baud, instance, reporter2, stop2))
        {
            Ok(thread) => running.push(Running::Serial(thread, stop)),
            Err(e) => reporter.transport_failed(&format!("serial thread: {e}")),
        }
    }
    running
}

/// One call off the runtime (on a blocking task).
pub(super) async fn call(
    instance: &Arc<dyn Instance>,
    reporter: &Reporter,
    input: InputMsg,
) -> Result<Vec<Output>, CallError> {
    let instance = instance.clone();
    let reporter = reporter.clone();
    tokio::task::spawn_blocking(move || blocking_call(&*instance, &reporter, input))
        .await
        .unwrap_or_else(|e| Err(CallError::Unavailable(e.to_string())))
}

/// One call; a failure is reported, and the status follows the helper's restarts.
fn blocking_call(
    instance: &dyn Instance,
    reporter: &Reporter,
    input: InputMsg,
) -> Result<Vec<Output>, CallError> {
    let result = instance.call(input);
    match &result {
        Ok(_) => reporter.note_restarts(instance),
        Err(e) => reporter.call_failed(instance, e),
    }
    result
}

/// First wait between two attempts to bind a plugin's TCP listener; it doubles up to
/// [`BIND_RETRY_MAX`].
const BIND_RETRY_FIRST: Duration = Duration::from_millis(500);
/// Longest wait between two attempts to bind.
const BIND_RETRY_MAX: Duration = Duration::from_secs(30);

/// Binds `addr` (retrying with back-off while the address is taken or not there yet, the
/// problem in the status meanwhile), then serves it until cancelled.
async fn listen_and_serve(
    addr: std::net::SocketAddr,
    instance: Arc<dyn Instance>,
    reporter: Reporter,
    token: CancellationToken,
) {
    let mut wait = BIND_RETRY_FIRST;
    let listener = loop {
        match TcpListener::bind(addr).await {
            Ok(listener) => break listener,
            Err(e) => {
                reporter.transport_failed(&format!(
                    "cannot listen on {addr}: {e} (retrying in {} s)",
                    wait.as_secs_f32()
                ));
                tokio::select! {
                    _ = token.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
                wait = (wait * 2).min(BIND_RETRY_MAX);
            }
        }
    };
    reporter.transport_ok(&format!("listening on TCP {addr}"));
    serve_tcp(listener, instance, reporter, token).await;
}

async fn serve_tcp(
    listener: TcpListener,
    instance: Arc<dyn Instance>,
    reporter: Reporter,
    token: CancellationToken,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_TCP_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            _ = token.cancelled() => break,
            a = listener.accept() => a,
        };
        let Ok((stream, _peer)) = accepted else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            drop(stream); // too many connections
            continue;
        };
        let (instance, reporter, token) = (instance.clone(), reporter.clone(), token.clone());
        tokio::spawn(async move {
            serve_connection(stream, instance, reporter, token).await;
            drop(permit);
        });
    }
}

async fn serve_connection(
    mut stream: TcpStream,
    instance: Arc<dyn Instance>,
    reporter: Reporter,
    token: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let conn = next_conn();
    if call(&instance, &reporter, InputMsg::Open(conn))
        .await
        .is_err()
    {
        return;
    }
    let mut buf = vec![0u8; READ_CHUNK];
    'conn: loop {
        let n = tokio::select! {
            _ = token.cancelled() => break,
            r = stream.read(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
        };
        let Ok(outputs) = call(
            &instance,
            &reporter,
            InputMsg::Data(conn, buf[..n].to_vec()),
        )
        .await
        else {
            break;
        };
        for output in outputs {
            match output {
                Output::Write(c, bytes) if c == conn => {
                    if stream.write_all(&bytes).await.is_err() {
                        break 'conn;
                    }
                }
                Output::Close(c) if c == conn => break 'conn,
                _ => tracing::debug!("plugin output for another connection dropped"),
            }
        }
    }
    let _ = stream.shutdown().await;
    let _ = call(&instance, &reporter, InputMsg::Closed(conn)).await;
}

/// Opens a serial device raw, 8N1, no flow control, at `baud`; reads return after 200 ms.
pub fn open_serial(device: &Path, baud: u32) -> std::io::Result<std::fs::File> {
    use rustix::termios::{self, ControlModes, OptionalActions, SpecialCodeIndex};
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc_o_noctty())
        .open(device)?;
    let mut t = termios::tcgetattr(&file)?;
    t.make_raw();
    t.control_modes -= ControlModes::PARENB | ControlModes::CSTOPB | ControlModes::CRTSCTS;
    t.control_modes |= ControlModes::CS8 | ControlModes::CLOCAL | ControlModes::CREAD;
    t.special_codes[SpecialCodeIndex::VMIN] = 0;
    t.special_codes[SpecialCodeIndex::VTIME] = 2;
    t.set_speed(baud)?;
    termios::tcsetattr(&file, OptionalActions::Now, &t)?;
    Ok(file)
}

fn libc_o_noctty() -> i32 {
    rustix::fs::OFlags::NOCTTY.bits() as i32
}

fn serve_serial(
    device: &Path,
    baud: u32,
    instance: Arc<dyn Instance>,
    reporter: Reporter,
    stop: Arc<AtomicBool>,
) {
    let mut reported = false;
    while !stop.load(Ordering::Relaxed) {
        let mut file = match open_serial(device, baud) {
            Ok(f) => f,
            Err(e) => {
                if !reported {
                    reporter.transport_failed(&format!("cannot open {}: {e}", device.display()));
                    reported = true;
                }
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        reporter.transport_ok(&format!(
            "serial device {} open at {baud} baud",
            device.display()
        ));
        reported = false;
        let conn = next_conn();
        let _ = blocking_call(&*instance, &reporter, InputMsg::Open(conn));
        let mut buf = vec![0u8; READ_CHUNK];
        while !stop.load(Ordering::Relaxed) {
            let n = match file.read(&mut buf) {
                Ok(0) => continue, // VTIME expired
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // A pty whose other side closed reads EIO; a USB adapter unplugged, ENXIO.
                    reporter.transport_failed(&format!(
                        "serial device {} went away ({e}); reopening",
                        device.display()
                    ));
                    reported = true;
                    std::thread::sleep(Duration::from_millis(200));
                    break;
                }
            };
            let outputs = blocking_call(
                &*instance,
                &reporter,
                InputMsg::Data(conn, buf[..n].to_vec()),
            )
            .unwrap_or_default();
            for output in outputs {
                if let Output::Write(c, bytes) = output
                    && c == conn
                    && let Err(e) = file.write_all(&bytes).and_then(|()| file.flush())
                {
                    tracing::warn!("serial {}: write failed: {e}", device.display());
                }
            }
        }
        let _ = blocking_call(&*instance, &reporter, InputMsg::Closed(conn));
    }
}
