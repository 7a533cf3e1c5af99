//! Loading a plugin library and calling it through the version-1 ABI. A library is loaded once
//! and never unloaded (`dlclose` of a Rust cdylib is unsafe). Every callback the host gives a
//! plugin catches panics, and every byte crossing the boundary is copied by the side that
//! receives it, so no allocator frees another's memory.

use fdmd_plugin_api::{
    FDMD_ABI_MAJOR, FDMD_ABI_MINOR, FDMD_ENTRY_V1_SYMBOL, FDMD_INPUT_CLOSED, FDMD_INPUT_DATA,
    FDMD_INPUT_MQTT, FDMD_INPUT_OPEN, FDMD_OUTPUT_CLOSE, FDMD_OUTPUT_WRITE, FDMD_RC_BAD_ARGUMENT,
    FDMD_RC_ERROR, FDMD_RC_OK, FDMD_RC_PANIC, FdmdBytes, FdmdEntryV1, FdmdHostApiV1, FdmdInput,
    FdmdPluginV1, FdmdRc,
};
use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Arc;

/// Largest request a plugin may submit, and largest output of one call.
pub const MAX_EXCHANGE_BYTES: usize = 16 * 1024 * 1024;
/// Longest name, version or built-with string read from a plugin table.
const MAX_TABLE_STRING: usize = 256;

/// What the host does for a plugin (the same in-process and in a helper process).
pub trait Services: Send + Sync {
    /// Logs a plugin's message.
    fn log(&self, level: u32, message: &str);
    /// Answers a JSON request (schema version 1) with JSON, or an error message.
    fn submit(&self, request: &[u8]) -> Result<Vec<u8>, String>;
    /// Publishes an MQTT message on a topic of the plugin's namespace.
    fn publish(
        &self,
        topic: &str,
        payload: &[u8],
        qos: u8,
    ) -> Result<(), super::mqtt::PublishError>;
}

/// What the plugin table says about itself.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PluginInfo {
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Toolchain or SDK.
    pub built_with: String,
    /// ABI major.
    pub abi_major: u16,
    /// ABI minor.
    pub abi_minor: u16,
}

/// Why a library was not loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// `dlopen` failed.
    #[error("cannot load the library: {0}")]
    Open(String),
    /// No version-1 entry symbol.
    #[error("no {FDMD_ENTRY_V1_SYMBOL} symbol: not an fdmd plugin of ABI version 1{0}")]
    MissingSymbol(String),
    /// The entry point failed.
    #[error("{FDMD_ENTRY_V1_SYMBOL} returned {0}")]
    Entry(FdmdRc),
    /// The table has an ABI major version this host does not know.
    #[error(
        "ABI version {major}.{minor} is not supported (this fdmd speaks {FDMD_ABI_MAJOR}.{FDMD_ABI_MINOR})"
    )]
    WrongAbi {
        /// Major.
        major: u16,
        /// Minor.
        minor: u16,
    },
    /// The table is smaller than a version-1.0 table, or a required slot is absent.
    #[error("bad plugin table: {0}")]
    BadTable(String),
}

/// Why a call failed. The daemon keeps serving whatever happens.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CallError {
    /// The plugin returned an error.
    #[error("plugin error: {0}")]
    Failed(String),
    /// The plugin panicked; the panic was caught.
    #[error("plugin panicked: {0}")]
    Panicked(String),
    /// No answer within the call timeout.
    #[error("plugin did not answer within {0} ms")]
    Timeout(u64),
    /// Too many calls waiting for a plugin that does not answer.
    #[error("plugin is busy with earlier calls")]
    Busy,
    /// The helper process died during the call.
    #[error("plugin process died: {0}")]
    Crashed(String),
    /// The helper process is being restarted.
    #[error("plugin process is restarting (next attempt in {0} ms)")]
    Restarting(u64),
    /// The plugin could not be (re)started.
    #[error("plugin unavailable: {0}")]
    Unavailable(String),
}

/// One input, owned (the host side of [`FdmdInput`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputMsg {
    /// A connection opened.
    Open(u64),
    /// Bytes on a connection.
    Data(u64, Vec<u8>),
    /// A connection closed.
    Closed(u64),
    /// An MQTT message.
    Mqtt {
        /// Topic.
        topic: String,
        /// Payload.
        payload: Vec<u8>,
    },
}

impl InputMsg {
    /// (kind, conn, topic, data) as the ABI carries them.
    pub fn parts(&self) -> (u32, u64, &[u8], &[u8]) {
        match self {
            InputMsg::Open(c) => (FDMD_INPUT_OPEN, *c, &[], &[]),
            InputMsg::Data(c, d) => (FDMD_INPUT_DATA, *c, &[], d),
            InputMsg::Closed(c) => (FDMD_INPUT_CLOSED, *c, &[], &[]),
            InputMsg::Mqtt { topic, payload } => (FDMD_INPUT_MQTT, 0, topic.as_bytes(), payload),
        }
    }

    /// Rebuilds an input from its ABI parts.
    pub fn from_parts(kind: u32, conn: u64, topic: &[u8], data: &[u8]) -> Option<InputMsg> {
        Some(match kind {
            FDMD_INPUT_OPEN => InputMsg::Open(conn),
            FDMD_INPUT_DATA => InputMsg::Data(conn, data.to_vec()),
            FDMD_INPUT_CLOSED => InputMsg::Closed(conn),
            FDMD_INPUT_MQTT => InputMsg::Mqtt {
                topic: String::from_utf8(topic.to_vec()).ok()?,
                payload: data.to_vec(),
            },
            _ => return None,
        })
    }
}

/// One output of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Write bytes to a connection.
    Write(u64, Vec<u8>),
    /// Close a connection.
    Close(u64),
}

/// A loaded library: its table (copied) and the host table given to it. Lives forever.
pub struct Loaded {
    table: FdmdPluginV1,
    host: &'static FdmdHostApiV1,
    info: PluginInfo,
}

// SAFETY: the table is immutable data and function pointers of a library that is never
// unloaded; the host table is leaked and immutable.
unsafe impl Send for Loaded {}
// SAFETY: as above; calls on one context are serialised by the callers.
unsafe impl Sync for Loaded {}

/// A plugin context, used by one thread at a time.
pub struct PluginCtx(*mut c_void);

// SAFETY: the ABI lets calls on one context come from any thread as long as they are
// serialised; the owners of a `PluginCtx` serialise them.
unsafe impl Send for PluginCtx {}

struct HostCtx {
    services: Arc<dyn Services>,
}

unsafe extern "C" fn host_log(ctx: *mut c_void, level: u32, message: FdmdBytes) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `ctx` is the leaked HostCtx of this table; `message` is valid during the call.
        let (host, msg) = unsafe { (&*(ctx as *const HostCtx), message.as_slice()) };
        let msg = &msg[..msg.len().min(64 * 1024)];
        host.services.log(level, &String::from_utf8_lossy(msg));
    }));
}

unsafe extern "C" fn host_now(_ctx: *mut c_void) -> u64 {
    crate::app::unix_ms()
}

unsafe extern "C" fn host_publish(
    ctx: *mut c_void,
    topic: FdmdBytes,
    payload: FdmdBytes,
    qos: u8,
) -> FdmdRc {
    catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: as in `host_log`.
        let (host, topic, payload) = unsafe {
            (
                &*(ctx as *const HostCtx),
                topic.as_slice(),
                payload.as_slice(),
            )
        };
        let Ok(topic) = std::str::from_utf8(topic) else {
            return FDMD_RC_BAD_ARGUMENT;
        };
        if payload.len() > MAX_EXCHANGE_BYTES {
            return FDMD_RC_BAD_ARGUMENT;
        }
        match host.services.publish(topic, payload, qos) {
            Ok(()) => FDMD_RC_OK,
            Err(e) => e.rc(),
        }
    }))
    .unwrap_or(FDMD_RC_PANIC)
}

unsafe extern "C" fn host_submit(
    ctx: *mut c_void,
    request: FdmdBytes,
    reply: fdmd_plugin_api::FdmdSinkFn,
    reply_ctx: *mut c_void,
) -> FdmdRc {
    let answer = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: as in `host_log`.
        let (host, request) = unsafe { (&*(ctx as *const HostCtx), request.as_slice()) };
        if request.len() > MAX_EXCHANGE_BYTES {
            return Err("request too large".to_owned());
        }
        host.services.submit(request)
    }));
    let (rc, bytes) = match answer {
        Ok(Ok(bytes)) => (FDMD_RC_OK, bytes),
        Ok(Err(message)) => (FDMD_RC_ERROR, message.into_bytes()),
        Err(_) => (FDMD_RC_PANIC, b"host failed".to_vec()),
    };
    // SAFETY: the plugin's sink copies the bytes during this call.
    unsafe { reply(reply_ctx, FdmdBytes::from_slice(&bytes)) };
    rc
}

struct Collected {
    outputs: Vec<Output>,
    bytes: usize,
    overflow: bool,
}

unsafe extern "C" fn collect_output(ctx: *mut c_void, kind: u32, conn: u64, bytes: FdmdBytes) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `ctx` is the `Collected` of the ongoing call; `bytes` valid during the call.
        let (c, data) = unsafe { (&mut *(ctx as *mut Collected), bytes.as_slice()) };
        if c.bytes + data.len() > MAX_EXCHANGE_BYTES {
            c.overflow = true;
            return;
        }
        c.bytes += data.len();
        match kind {
            FDMD_OUTPUT_WRITE => c.outputs.push(Output::Write(conn, data.to_vec())),
            FDMD_OUTPUT_CLOSE => c.outputs.push(Output::Close(conn)),
            _ => {} // a later minor version's output kind: ignored
        }
    }));
}

unsafe extern "C" fn copy_message(ctx: *mut c_void, bytes: FdmdBytes) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `ctx` is the `Vec<u8>` passed next to this function.
        let (out, data) = unsafe { (&mut *(ctx as *mut Vec<u8>), bytes.as_slice()) };
        out.extend_from_slice(&data[..data.len().min(64 * 1024)]);
    }));
}

fn table_string(b: FdmdBytes) -> String {
    if b.len > MAX_TABLE_STRING {
        return "(too long)".into();
    }
    // SAFETY: the table points at static strings of the loaded library.
    String::from_utf8_lossy(unsafe { b.as_slice() }).into_owned()
}

/// Loads a library (never unloaded), looks up its entry, checks its table. The file must have
/// passed [`super::checks::check`] first: loading runs the library's initialisers.
pub fn load(path: &Path, services: Arc<dyn Services>) -> Result<Loaded, LoadError> {
    // SAFETY: loading runs the library's initialisers; the file passed the owner, mode and
    // signature checks, which is the trust decision. The library is leaked, never unloaded.
    let library: &'static libloading::Library = Box::leak(Box::new(
        unsafe { libloading::Library::new(path) }.map_err(|e| LoadError::Open(e.to_string()))?,
    ));
    let entry_name = format!("{FDMD_ENTRY_V1_SYMBOL}\0");
    // SAFETY: the symbol's type is the one the ABI defines for this name.
    let entry: FdmdEntryV1 = match unsafe { library.get::<FdmdEntryV1>(entry_name.as_bytes()) } {
        Ok(symbol) => *symbol,
        Err(_) => {
            // Say which version it is, when it is a plugin of another major version.
            let newer = (2..=9).find(|v| {
                let name = format!("fdmd_plugin_entry_v{v}\0");
                // SAFETY: only the presence of the symbol is looked at; it is never called.
                unsafe { library.get::<*const c_void>(name.as_bytes()) }.is_ok()
            });
            return Err(LoadError::MissingSymbol(newer.map_or(String::new(), |v| {
                format!(" (it exports the ABI {v} entry)")
            })));
        }
    };
    let host_ctx = Box::leak(Box::new(HostCtx { services })) as *mut HostCtx as *mut c_void;
    let host: &'static FdmdHostApiV1 = Box::leak(Box::new(FdmdHostApiV1 {
        abi_major: FDMD_ABI_MAJOR,
        abi_minor: FDMD_ABI_MINOR,
        struct_size: std::mem::size_of::<FdmdHostApiV1>() as u32,
        host_ctx,
        log: Some(host_log),
        now_unix_ms: Some(host_now),
        publish: Some(host_publish),
        submit: Some(host_submit),
    }));
    let mut out: *const FdmdPluginV1 = std::ptr::null();
    // SAFETY: calling the entry point per the ABI.
    let rc = unsafe { entry(host, &mut out) };
    if rc != FDMD_RC_OK {
        return Err(LoadError::Entry(rc));
    }
    if out.is_null() {
        return Err(LoadError::BadTable("the entry point gave no table".into()));
    }
    // The first 8 bytes (major, minor, size) are the same in every version.
    // SAFETY: the plugin's table starts with the common header.
    let (major, minor, size) = unsafe {
        let head = out as *const u16;
        (
            *head,
            *head.add(1),
            *(out as *const u8).add(4).cast::<u32>(),
        )
    };
    if major != FDMD_ABI_MAJOR {
        return Err(LoadError::WrongAbi { major, minor });
    }
    if (size as usize) < std::mem::size_of::<FdmdPluginV1>() {
        return Err(LoadError::BadTable(format!(
            "struct_size {size} is smaller than a version {FDMD_ABI_MAJOR}.0 table"
        )));
    }
    // SAFETY: the table is at least as large as the fields this host knows.
    let table = unsafe { std::ptr::read(out) };
    if table.init.is_none() || table.handle.is_none() {
        return Err(LoadError::BadTable("init and handle are required".into()));
    }
    let info = PluginInfo {
        name: table_string(table.name),
        version: table_string(table.version),
        built_with: table_string(table.built_with),
        abi_major: major,
        abi_minor: minor,
    };
    Ok(Loaded { table, host, info })
}

impl Loaded {
    /// What the plugin says about itself.
    pub fn info(&self) -> &PluginInfo {
        &self.info
    }

    fn last_error(&self, ctx: *mut c_void) -> String {
        let mut message = Vec::new();
        if let Some(last_error) = self.table.last_error {
            // SAFETY: per the ABI; `copy_message` copies into `message`.
            unsafe {
                last_error(
                    ctx,
                    copy_message,
                    &mut message as *mut Vec<u8> as *mut c_void,
                )
            };
        }
        String::from_utf8_lossy(&message).into_owned()
    }

    fn failure(&self, ctx: *mut c_void, rc: FdmdRc) -> CallError {
        let message = self.last_error(ctx);
        if rc == FDMD_RC_PANIC {
            CallError::Panicked(message)
        } else {
            CallError::Failed(format!("rc {rc}: {message}"))
        }
    }

    /// Creates a context from the plugin's JSON configuration.
    pub fn init(&self, config: &[u8]) -> Result<PluginCtx, CallError> {
        let Some(init) = self.table.init else {
            return Err(CallError::Unavailable("no init".into()));
        };
        let mut ctx: *mut c_void = std::ptr::null_mut();
        // SAFETY: per the ABI; `config` is valid during the call.
        let rc = unsafe { init(self.host, FdmdBytes::from_slice(config), &mut ctx) };
        if rc != FDMD_RC_OK {
            return Err(self.failure(std::ptr::null_mut(), rc));
        }
        Ok(PluginCtx(ctx))
    }

    /// Handles one input.
    pub fn handle(&self, ctx: &mut PluginCtx, input: &InputMsg) -> Result<Vec<Output>, CallError> {
        let Some(handle) = self.table.handle else {
            return Err(CallError::Unavailable("no handle".into()));
        };
        let (kind, conn, topic, data) = input.parts();
        let raw = FdmdInput {
            kind,
            conn,
            topic: FdmdBytes::from_slice(topic),
            data: FdmdBytes::from_slice(data),
        };
        let mut collected = Collected {
            outputs: Vec::new(),
            bytes: 0,
            overflow: false,
        };
        // SAFETY: per the ABI; `raw` and `collected` outlive the call.
        let rc = unsafe {
            handle(
                ctx.0,
                &raw,
                collect_output,
                &mut collected as *mut Collected as *mut c_void,
            )
        };
        if rc != FDMD_RC_OK {
            return Err(self.failure(ctx.0, rc));
        }
        if collected.overflow {
            return Err(CallError::Failed(format!(
                "output larger than {MAX_EXCHANGE_BYTES} bytes"
            )));
        }
        Ok(collected.outputs)
    }

    /// Asks whether the plugin is healthy (an absent slot means yes).
    pub fn health(&self, ctx: &mut PluginCtx) -> Result<(), CallError> {
        match self.table.health {
            None => Ok(()),
            // SAFETY: per the ABI.
            Some(health) => match unsafe { health(ctx.0) } {
                FDMD_RC_OK => Ok(()),
                rc => Err(self.failure(ctx.0, rc)),
            },
        }
    }

    /// Releases a context.
    pub fn shutdown(&self, ctx: PluginCtx) {
        if let Some(shutdown) = self.table.shutdown {
            // SAFETY: per the ABI; the context is not used again.
            unsafe { shutdown(ctx.0) }
        }
    }
}
