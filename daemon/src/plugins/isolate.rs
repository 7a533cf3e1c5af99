//! Isolation: a plugin in its own helper process (`fdmd plugin-host FILE`, the same binary),
//! speaking the same calls as bytes over a Unix socket (the helper's standard input). A crash or
//! abort costs one helper process; the next call starts a new one, with a back-off that doubles
//! from 100 ms to 30 s while starts keep failing. Every helper inherits the descriptor of the
//! file the daemon checked and loads `/proc/self/fd/N`, never the path again.
//!
//! Frames: `u32` little-endian length of what follows, a `u8` type, the payload. Integers are
//! little-endian; byte strings are `u32` length + bytes.

use super::Instance;
use super::mqtt::PublishError;
use super::native::{self, CallError, InputMsg, Output, PluginInfo, Services};
use fdmd_plugin_api::FdmdRc;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The hidden subcommand that runs a helper.
pub const HELPER_SUBCOMMAND: &str = "plugin-host";
/// Largest frame accepted on the socket.
const MAX_FRAME: usize = native::MAX_EXCHANGE_BYTES + 1024;
/// Longest pause between restarts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

const T_HELLO: u8 = 1;
const T_FAILED: u8 = 2;
const T_INIT: u8 = 3;
const T_HANDLE: u8 = 4;
const T_SUBMIT: u8 = 5;
const T_REPLY: u8 = 6;
const T_LOG: u8 = 7;
const T_PUBLISH: u8 = 8;
const T_DONE: u8 = 9;
const T_HEALTH: u8 = 10;

fn write_frame(w: &mut impl Write, kind: u8, payload: &[u8]) -> io::Result<()> {
    let len = u32::try_from(payload.len() + 1)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    let mut buf = Vec::with_capacity(payload.len() + 5);
    buf.extend_from_slice(&len.to_le_bytes());
    buf.push(kind);
    buf.extend_from_slice(payload);
    w.write_all(&buf)?;
    w.flush()
}

fn read_frame(r: &mut impl Read) -> io::Result<(u8, Vec<u8>)> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len) as usize;
    if len == 0 || len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "bad frame length",
        ));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf)?;
    let kind = buf.remove(0);
    Ok((kind, buf))
}

#[derive(Default)]
struct Enc(Vec<u8>);

impl Enc {
    fn u8(mut self, v: u8) -> Self {
        self.0.push(v);
        self
    }
    fn u16(mut self, v: u16) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn bytes(self, b: &[u8]) -> Self {
        let mut s = self.u32(b.len() as u32);
        s.0.extend_from_slice(b);
        s
    }
}

struct Dec<'a>(&'a [u8]);

fn short() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "short message")
}

impl<'a> Dec<'a> {
    fn take(&mut self, n: usize) -> io::Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(short());
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> io::Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> io::Result<u16> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().map_err(|_| short())?,
        ))
    }
    fn u32(&mut self) -> io::Result<u32> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().map_err(|_| short())?,
        ))
    }
    fn u64(&mut self) -> io::Result<u64> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().map_err(|_| short())?,
        ))
    }
    fn bytes(&mut self) -> io::Result<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn string(&mut self) -> io::Result<String> {
        Ok(String::from_utf8_lossy(self.bytes()?).into_owned())
    }
}

/// Result of one call as the helper reports it.
fn encode_done(result: &Result<Vec<Output>, CallError>) -> Vec<u8> {
    match result {
        Ok(outputs) => {
            let mut e = Enc::default().u8(0).bytes(b"").u32(outputs.len() as u32);
            for o in outputs {
                e = match o {
                    Output::Write(conn, data) => e.u8(1).u64(*conn).bytes(data),
                    Output::Close(conn) => e.u8(2).u64(*conn).bytes(b""),
                };
            }
            e.0
        }
        Err(err) => {
            let (status, message) = match err {
                CallError::Panicked(m) => (2, m.clone()),
                CallError::Failed(m) => (1, m.clone()),
                other => (3, other.to_string()),
            };
            Enc::default().u8(status).bytes(message.as_bytes()).u32(0).0
        }
    }
}

fn decode_done(payload: &[u8]) -> io::Result<Result<Vec<Output>, CallError>> {
    let mut d = Dec(payload);
    let status = d.u8()?;
    let message = d.string()?;
    let n = d.u32()? as usize;
    let mut outputs = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        let kind = d.u8()?;
        let conn = d.u64()?;
        let data = d.bytes()?;
        outputs.push(match kind {
            1 => Output::Write(conn, data.to_vec()),
            _ => Output::Close(conn),
        });
    }
    Ok(match status {
        0 => Ok(outputs),
        1 => Err(CallError::Failed(message)),
        2 => Err(CallError::Panicked(message)),
        _ => Err(CallError::Unavailable(message)),
    })
}

// ---------------------------------------------------------------- the helper process's side

/// The host services inside the helper: every service is a message to the daemon.
struct SocketServices {
    sock: Mutex<UnixStream>,
}

impl SocketServices {
    fn ask(&self, kind: u8, payload: &[u8]) -> Result<Vec<u8>, String> {
        self.ask_coded(kind, payload)
            .map_err(|(_, message)| message)
    }

    /// As `ask`, with the daemon's status byte (non-zero: an error) kept.
    fn ask_coded(&self, kind: u8, payload: &[u8]) -> Result<Vec<u8>, (u8, String)> {
        let mut sock = self.sock.lock().unwrap_or_else(|p| p.into_inner());
        write_frame(&mut *sock, kind, payload).map_err(|e| (1, e.to_string()))?;
        match read_frame(&mut *sock) {
            Ok((T_REPLY, reply)) => {
                let mut d = Dec(&reply);
                let ok = d.u8().map_err(|e| (1, e.to_string()))?;
                let bytes = d.bytes().map_err(|e| (1, e.to_string()))?.to_vec();
                if ok == 0 {
                    Ok(bytes)
                } else {
                    Err((ok, String::from_utf8_lossy(&bytes).into_owned()))
                }
            }
            Ok((other, _)) => Err((1, format!("unexpected message {other} from the daemon"))),
            Err(e) => Err((1, e.to_string())),
        }
    }
}

impl Services for SocketServices {
    fn log(&self, level: u32, message: &str) {
        let mut sock = self.sock.lock().unwrap_or_else(|p| p.into_inner());
        let _ = write_frame(
            &mut *sock,
            T_LOG,
            &Enc::default().u32(level).bytes(message.as_bytes()).0,
        );
    }

    fn submit(&self, request: &[u8]) -> Result<Vec<u8>, String> {
        self.ask(T_SUBMIT, request)
    }

    fn publish(&self, topic: &str, payload: &[u8], qos: u8) -> Result<(), PublishError> {
        self.ask_coded(
            T_PUBLISH,
            &Enc::default()
                .u8(qos)
                .bytes(topic.as_bytes())
                .bytes(payload)
                .0,
        )
        .map(|_| ())
        .map_err(|(rc, message)| PublishError::from_rc(FdmdRc::from(rc), message))
    }
}

/// Runs a helper: loads `path`, then serves calls from the socket on standard input until it
/// closes. The daemon checked the file before starting the helper.
pub fn helper_main(path: &Path) -> ExitCode {
    use std::os::fd::FromRawFd;
    // SAFETY: the daemon starts the helper with one end of a socket pair as standard input,
    // and nothing else in this process uses fd 0.
    let sock = unsafe { UnixStream::from_raw_fd(0) };
    let Ok(service_sock) = sock.try_clone() else {
        return ExitCode::from(3);
    };
    let mut sock = sock;
    let services = Arc::new(SocketServices {
        sock: Mutex::new(service_sock),
    });
    let loaded = match native::load(path, services) {
        Ok(l) => l,
        Err(e) => {
            let _ = write_frame(&mut sock, T_FAILED, e.to_string().as_bytes());
            return ExitCode::from(3);
        }
    };
    let info = loaded.info().clone();
    let hello = Enc::default()
        .u16(info.abi_major)
        .u16(info.abi_minor)
        .bytes(info.name.as_bytes())
        .bytes(info.version.as_bytes())
        .bytes(info.built_with.as_bytes());
    if write_frame(&mut sock, T_HELLO, &hello.0).is_err() {
        return ExitCode::from(3);
    }
    let mut ctx = None;
    while let Ok((kind, payload)) = read_frame(&mut sock) {
        let result = match (kind, ctx.as_mut()) {
            (T_INIT, None) => match loaded.init(&payload) {
                Ok(c) => {
                    ctx = Some(c);
                    Ok(Vec::new())
                }
                Err(e) => Err(e),
            },
            (T_HANDLE, Some(c)) => {
                let mut d = Dec(&payload);
                match (|| -> io::Result<_> { Ok((d.u32()?, d.u64()?, d.bytes()?, d.bytes()?)) })() {
                    Ok((k, conn, topic, data)) => {
                        match InputMsg::from_parts(k, conn, topic, data) {
                            Some(input) => loaded.handle(c, &input),
                            None => Err(CallError::Failed("unknown input kind".into())),
                        }
                    }
                    Err(e) => Err(CallError::Failed(e.to_string())),
                }
            }
            (T_HEALTH, Some(c)) => loaded.health(c).map(|()| Vec::new()),
            _ => Err(CallError::Unavailable(format!(
                "message {kind} not expected now"
            ))),
        };
        if write_frame(&mut sock, T_DONE, &encode_done(&result)).is_err() {
            break;
        }
    }
    if let Some(c) = ctx {
        loaded.shutdown(c);
    }
    ExitCode::SUCCESS
}

// ---------------------------------------------------------------- the daemon's side

struct Helper {
    process: Child,
    sock: UnixStream,
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

struct State {
    helper: Option<Helper>,
    failures: u32,
    next_try: Instant,
}

/// A plugin in a helper process, restarted with back-off.
pub struct Isolated {
    exe: PathBuf,
    plugin: std::fs::File,
    config: Vec<u8>,
    services: Arc<dyn Services>,
    timeout: Duration,
    info: PluginInfo,
    state: Mutex<State>,
    restarts: AtomicU32,
}

fn backoff(failures: u32) -> Duration {
    let ms = 100u64.saturating_mul(1u64 << failures.saturating_sub(1).min(20));
    Duration::from_millis(ms).min(MAX_BACKOFF)
}

impl Isolated {
    /// Starts the helper (`exe plugin-host /proc/self/fd/N`, with `plugin`, the checked file,
    /// inherited as descriptor N), loads and initialises the plugin. Load errors (wrong ABI,
    /// missing symbol) come back as `Unavailable` with the helper's reason.
    pub fn start(
        exe: &Path,
        plugin: std::fs::File,
        config: &[u8],
        services: Arc<dyn Services>,
        timeout: Duration,
    ) -> Result<Isolated, CallError> {
        let mut iso = Isolated {
            exe: exe.into(),
            plugin,
            config: config.to_vec(),
            services,
            timeout,
            info: PluginInfo {
                name: String::new(),
                version: String::new(),
                built_with: String::new(),
                abi_major: 0,
                abi_minor: 0,
            },
            state: Mutex::new(State {
                helper: None,
                failures: 0,
                next_try: Instant::now(),
            }),
            restarts: AtomicU32::new(0),
        };
        let (helper, info) = iso.spawn()?;
        iso.info = info;
        iso.state.lock().unwrap_or_else(|p| p.into_inner()).helper = Some(helper);
        Ok(iso)
    }

    fn spawn(&self) -> Result<(Helper, PluginInfo), CallError> {
        let unavailable = |e: io::Error| CallError::Unavailable(e.to_string());
        let (ours, theirs) = UnixStream::pair().map_err(unavailable)?;
        let fd = std::os::fd::AsRawFd::as_raw_fd(&self.plugin);
        let mut command = Command::new(&self.exe);
        // SAFETY: between fork and exec the closure only calls fcntl (async-signal-safe, no
        // allocation): it clears close-on-exec on the child's copy of the checked file's
        // descriptor, so the helper inherits it under the same number. The daemon's own copy
        // stays close-on-exec.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
                let plugin = std::os::fd::BorrowedFd::borrow_raw(fd);
                rustix::io::fcntl_setfd(plugin, rustix::io::FdFlags::empty())?;
                Ok(())
            });
        }
        let process = command
            .arg(HELPER_SUBCOMMAND)
            .arg(super::checks::proc_fd_path(fd))
            .stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(unavailable)?;
        let mut helper = Helper {
            process,
            sock: ours,
        };
        helper
            .sock
            .set_read_timeout(Some(self.timeout))
            .map_err(unavailable)?;
        let info = match read_frame(&mut helper.sock) {
            Ok((T_HELLO, payload)) => {
                let mut d = Dec(&payload);
                (|| -> io::Result<PluginInfo> {
                    Ok(PluginInfo {
                        abi_major: d.u16()?,
                        abi_minor: d.u16()?,
                        name: d.string()?,
                        version: d.string()?,
                        built_with: d.string()?,
                    })
                })()
                .map_err(unavailable)?
            }
            Ok((T_FAILED, reason)) => {
                return Err(CallError::Unavailable(
                    String::from_utf8_lossy(&reason).into_owned(),
                ));
            }
            Ok((other, _)) => {
                return Err(CallError::Unavailable(format!(
                    "helper sent message {other} instead of its greeting"
                )));
            }
            Err(e) => return Err(self.died(&mut helper, &e)),
        };
        let config = self.config.clone();
        self.exchange(&mut helper, T_INIT, &config)?
            .map_err(|e| CallError::Unavailable(format!("init failed: {e}")))?;
        Ok((helper, info))
    }

    fn died(&self, helper: &mut Helper, e: &io::Error) -> CallError {
        if matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ) {
            return CallError::Timeout(self.timeout.as_millis() as u64);
        }
        let _ = helper.process.kill();
        match helper.process.wait() {
            Ok(status) => CallError::Crashed(status.to_string()),
            Err(_) => CallError::Crashed(e.to_string()),
        }
    }

    /// Sends one request and serves the helper's service requests until its answer.
    fn exchange(
        &self,
        helper: &mut Helper,
        kind: u8,
        payload: &[u8],
    ) -> Result<Result<Vec<Output>, CallError>, CallError> {
        let deadline = Instant::now() + self.timeout;
        if let Err(e) = write_frame(&mut helper.sock, kind, payload) {
            return Err(self.died(helper, &e));
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(CallError::Timeout(self.timeout.as_millis() as u64));
            }
            let _ = helper.sock.set_read_timeout(Some(left));
            let (t, body) = match read_frame(&mut helper.sock) {
                Ok(f) => f,
                Err(e) => return Err(self.died(helper, &e)),
            };
            let reply = match t {
                T_DONE => {
                    return decode_done(&body)
                        .map_err(|e| CallError::Crashed(format!("bad answer: {e}")));
                }
                T_LOG => {
                    let mut d = Dec(&body);
                    if let (Ok(level), Ok(message)) = (d.u32(), d.string()) {
                        self.services.log(level, &message);
                    }
                    continue;
                }
                T_SUBMIT => self.services.submit(&body).map_err(|m| (1, m)),
                T_PUBLISH => {
                    let mut d = Dec(&body);
                    match (d.u8(), d.string(), d.bytes()) {
                        // The status byte carries the ABI code (3 refused, 4 unavailable).
                        (Ok(qos), Ok(topic), Ok(payload)) => self
                            .services
                            .publish(&topic, payload, qos)
                            .map(|()| Vec::new())
                            .map_err(|e| (e.rc() as u8, e.to_string())),
                        _ => Err((1, "malformed publish".to_owned())),
                    }
                }
                other => Err((1, format!("unexpected message {other}"))),
            };
            let answer = match reply {
                Ok(bytes) => Enc::default().u8(0).bytes(&bytes),
                Err((status, message)) => Enc::default().u8(status).bytes(message.as_bytes()),
            };
            if let Err(e) = write_frame(&mut helper.sock, T_REPLY, &answer.0) {
                return Err(self.died(helper, &e));
            }
        }
    }

    fn with_helper(&self, kind: u8, payload: &[u8]) -> Result<Vec<Output>, CallError> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.helper.is_none() {
            let now = Instant::now();
            if now < st.next_try {
                return Err(CallError::Restarting((st.next_try - now).as_millis() as u64));
            }
            match self.spawn() {
                Ok((helper, _)) => {
                    self.restarts.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!("plugin {}: helper process restarted", self.info.name);
                    st.helper = Some(helper);
                }
                Err(e) => {
                    st.failures += 1;
                    st.next_try = Instant::now() + backoff(st.failures);
                    return Err(e);
                }
            }
        }
        let Some(helper) = st.helper.as_mut() else {
            return Err(CallError::Unavailable("no helper".into()));
        };
        match self.exchange(helper, kind, payload) {
            Ok(result) => {
                st.failures = 0;
                result
            }
            Err(e) => {
                // Crashed or timed out: this helper is done; the next call starts another.
                st.helper = None;
                st.failures += 1;
                st.next_try = Instant::now() + backoff(st.failures);
                Err(e)
            }
        }
    }
}

impl Instance for Isolated {
    fn info(&self) -> PluginInfo {
        self.info.clone()
    }

    fn call(&self, input: InputMsg) -> Result<Vec<Output>, CallError> {
        let (kind, conn, topic, data) = input.parts();
        let payload = Enc::default().u32(kind).u64(conn).bytes(topic).bytes(data);
        self.with_helper(T_HANDLE, &payload.0)
    }

    fn health(&self) -> Result<(), CallError> {
        self.with_helper(T_HEALTH, &[]).map(|_| ())
    }

    fn restarts(&self) -> u32 {
        self.restarts.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_answers_round_trip() {
        let mut buf = Vec::new();
        let done = Ok(vec![Output::Write(7, b"hi".to_vec()), Output::Close(7)]);
        write_frame(&mut buf, T_DONE, &encode_done(&done)).unwrap();
        let (kind, payload) = read_frame(&mut buf.as_slice()).unwrap();
        assert_eq!(kind, T_DONE);
        assert_eq!(decode_done(&payload).unwrap(), done);
        let failed: Result<Vec<Output>, CallError> = Err(CallError::Panicked("boom".into()));
        assert_eq!(decode_done(&encode_done(&failed)).unwrap(), failed);
        assert!(read_frame(&mut [0u8, 0, 0, 0].as_slice()).is_err());
        assert!(read_frame(&mut [255u8, 255, 255, 255].as_slice()).is_err());
        assert_eq!(backoff(1), Duration::from_millis(100));
        assert_eq!(backoff(3), Duration::from_millis(400));
        assert_eq!(backoff(40), MAX_BACKOFF);
    }
}
