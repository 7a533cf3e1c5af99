//! # fdmd-plugin-api: write protocol plugins for fdmd
//!
//! fdmd (an on-premise Belgian fiscal data module host) owns the transports — a TCP listener, a
//! serial device, MQTT topics — and hands their bytes to plugins. A plugin translates between a
//! POS vendor's protocol and fdmd's JSON requests (orders, pre-computed events, status), which it
//! sends with [`Host::submit`]. Plugins never touch the journal.
//!
//! The boundary is a small, versioned C ABI ([`abi`], header `include/fdmd_plugin.h`), so a
//! plugin can be written in C as well. This crate adds the safe Rust side: implement [`Plugin`]
//! and call [`export_plugin!`]. The macro exports `fdmd_plugin_entry_v1`, catches a panic at
//! every entry (it becomes `FDMD_RC_PANIC` and the message is kept for `last_error`), and
//! never lets the host free the plugin's memory or the other way round.
//!
//! Build the plugin as a `cdylib` with `panic = "unwind"` (the default). See `docs/plugins.md`
//! in the fdmd repository for signing, installing and `fdmctl plugin check`.
//!
//! ```
//! use fdmd_plugin_api::{Host, Input, Output, Plugin, export_plugin};
//!
//! /// Answers every line with its length.
//! struct Echo {
//!     host: Host,
//! }
//!
//! impl Plugin for Echo {
//!     fn init(host: Host, _config: &[u8]) -> Result<Self, String> {
//!         host.log_info("echo plugin ready");
//!         Ok(Echo { host })
//!     }
//!
//!     fn handle(&mut self, input: Input<'_>, out: &mut Output<'_>) -> Result<(), String> {
//!         if let Input::Data { conn, bytes } = input {
//!             out.write(conn, format!("{}\n", bytes.len()).as_bytes());
//!         }
//!         Ok(())
//!     }
//! }
//!
//! export_plugin!(Echo, name = "echo", version = "0.1.0");
//! # fn main() {}
//! ```
//!
//! ## Requests to the host (`submit`, schema version 1)
//!
//! Every request is a JSON object with `"v": 1` and a `"type"`:
//!
//! | type | fields | answer |
//! |---|---|---|
//! | `status` | — | `{"v":1,"fdm_id","vsc_id","ready","code","message","software_version"}` |
//! | `order` | `order`: an order exactly as `docs/mqtt.md` describes it (money as decimal strings) | the receipt JSON of `docs/mqtt.md` |
//! | `precomputed` | `event`: `request_id`, `pos_date`, `pos_time`, `operator`, `ecr_id`, `ticket_number`, `label`, `total`, `rate_amounts` (`[[percent, amount], …]`, decimal strings), `plu_hash` | the receipt JSON |
//! | `pin` | `pin`: the PIN digits | `{"v":1,"code"}` |
//!
//! The register is the one the configuration binds the plugin to; a request cannot name another.
//! Unknown fields are ignored, so later minor versions can add fields.

#![deny(missing_docs)]

pub mod abi;

pub use abi::*;

use core::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// One input the host gives a plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input<'a> {
    /// A connection opened.
    Open {
        /// Connection id.
        conn: u64,
    },
    /// Bytes arrived on a connection.
    Data {
        /// Connection id.
        conn: u64,
        /// The bytes, as read (any split: a message may come in several pieces).
        bytes: &'a [u8],
    },
    /// A connection closed.
    Closed {
        /// Connection id.
        conn: u64,
    },
    /// An MQTT message on one of the plugin's topics.
    Mqtt {
        /// Topic.
        topic: &'a str,
        /// Payload.
        payload: &'a [u8],
    },
}

/// Where a plugin puts its outputs during one call. The host copies them.
pub struct Output<'a> {
    emit: FdmdEmitFn,
    ctx: *mut c_void,
    _call: core::marker::PhantomData<&'a mut ()>,
}

impl Output<'_> {
    /// Writes bytes to a connection.
    pub fn write(&mut self, conn: u64, bytes: &[u8]) {
        // SAFETY: the host gave `emit` and `ctx` for this call; the slice outlives the call.
        unsafe {
            (self.emit)(
                self.ctx,
                FDMD_OUTPUT_WRITE,
                conn,
                FdmdBytes::from_slice(bytes),
            )
        }
    }

    /// Closes a connection after the writes before it.
    pub fn close(&mut self, conn: u64) {
        // SAFETY: as in `write`.
        unsafe {
            (self.emit)(
                self.ctx,
                FDMD_OUTPUT_CLOSE,
                conn,
                FdmdBytes::from_slice(&[]),
            )
        }
    }
}

/// Why a host service failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostError {
    /// The `FDMD_RC_*` code.
    pub rc: FdmdRc,
    /// The host's message, when it gave one.
    pub message: String,
}

impl core::fmt::Display for HostError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "host service failed (rc {}): {}", self.rc, self.message)
    }
}

impl std::error::Error for HostError {}

/// The host's services, valid for the life of the process.
#[derive(Debug, Clone, Copy)]
pub struct Host {
    api: *const FdmdHostApiV1,
}

// SAFETY: the host table is immutable and lives for the whole process; the host synchronises
// the services behind it.
unsafe impl Send for Host {}
// SAFETY: as above.
unsafe impl Sync for Host {}

unsafe extern "C" fn copy_into_vec(ctx: *mut c_void, bytes: FdmdBytes) {
    if ctx.is_null() {
        return;
    }
    // SAFETY: `ctx` is the `Vec<u8>` this crate passed next to this function, and `bytes` is
    // valid during this call.
    unsafe {
        let out = &mut *(ctx as *mut Vec<u8>);
        out.extend_from_slice(bytes.as_slice());
    }
}

impl Host {
    /// Wraps the host table.
    ///
    /// # Safety
    /// `api` must be the table the host passed to the entry or `init` call.
    pub unsafe fn from_raw(api: *const FdmdHostApiV1) -> Host {
        Host { api }
    }

    fn table(&self) -> Option<&FdmdHostApiV1> {
        // SAFETY: the host keeps its table alive for the life of the process.
        unsafe { self.api.as_ref() }
    }

    /// Logs a message at a level (`FDMD_LOG_*`).
    pub fn log(&self, level: u32, message: &str) {
        if let Some(t) = self.table()
            && let Some(log) = t.log
        {
            // SAFETY: slot given by the host; the message outlives the call.
            unsafe { log(t.host_ctx, level, FdmdBytes::from_slice(message.as_bytes())) }
        }
    }

    /// Logs at information level.
    pub fn log_info(&self, message: &str) {
        self.log(FDMD_LOG_INFO, message)
    }

    /// Logs at warning level.
    pub fn log_warn(&self, message: &str) {
        self.log(FDMD_LOG_WARN, message)
    }

    /// Milliseconds since the Unix epoch (the host's clock), or the system clock when the host
    /// gives none.
    pub fn now_unix_ms(&self) -> u64 {
        if let Some(t) = self.table()
            && let Some(now) = t.now_unix_ms
        {
            // SAFETY: slot given by the host.
            return unsafe { now(t.host_ctx) };
        }
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }

    /// Publishes an MQTT message in this plugin instance's namespace: `topic` is its `…/out`
    /// topic or one below it, in full or relative to `…/out` (`"display/1"`); `qos` is 0 or 1.
    /// Never blocks (the host queues the message); a topic outside the namespace, a QoS above 1
    /// or a payload over the host's limit is refused (`FDMD_RC_BAD_ARGUMENT`), a full queue or
    /// MQTT being off is `FDMD_RC_UNAVAILABLE`.
    pub fn publish(&self, topic: &str, payload: &[u8], qos: u8) -> Result<(), HostError> {
        let t = self.table().ok_or_else(unavailable)?;
        let publish = t.publish.ok_or_else(unavailable)?;
        // SAFETY: slot given by the host; both slices outlive the call.
        let rc = unsafe {
            publish(
                t.host_ctx,
                FdmdBytes::from_slice(topic.as_bytes()),
                FdmdBytes::from_slice(payload),
                qos,
            )
        };
        if rc == FDMD_RC_OK {
            Ok(())
        } else {
            Err(HostError {
                rc,
                message: match rc {
                    FDMD_RC_BAD_ARGUMENT => {
                        "publish refused: topic outside the plugin's namespace, QoS above 1 or payload too large (the daemon's log says which)"
                    }
                    FDMD_RC_UNAVAILABLE => "publish failed: MQTT not available or queue full",
                    _ => "publish refused",
                }
                .into(),
            })
        }
    }

    /// Sends a JSON request to the daemon and returns its JSON answer (see the crate docs).
    pub fn submit(&self, request: &[u8]) -> Result<Vec<u8>, HostError> {
        let t = self.table().ok_or_else(unavailable)?;
        let submit = t.submit.ok_or_else(unavailable)?;
        let mut reply: Vec<u8> = Vec::new();
        // SAFETY: slot given by the host; `reply` outlives the call and is only touched by
        // `copy_into_vec`, which this crate owns.
        let rc = unsafe {
            submit(
                t.host_ctx,
                FdmdBytes::from_slice(request),
                copy_into_vec,
                &mut reply as *mut Vec<u8> as *mut c_void,
            )
        };
        if rc == FDMD_RC_OK {
            Ok(reply)
        } else {
            Err(HostError {
                rc,
                message: String::from_utf8_lossy(&reply).into_owned(),
            })
        }
    }
}

fn unavailable() -> HostError {
    HostError {
        rc: FDMD_RC_UNAVAILABLE,
        message: "the host does not offer this service".into(),
    }
}

/// A protocol plugin. One value is created per configured instance by [`Plugin::init`]; the
/// host serialises calls on it, possibly from different threads.
pub trait Plugin: Sized + Send + 'static {
    /// Creates the plugin from its configuration (the JSON object of its `config` key).
    fn init(host: Host, config: &[u8]) -> Result<Self, String>;

    /// Handles one input; outputs go to `out`.
    fn handle(&mut self, input: Input<'_>, out: &mut Output<'_>) -> Result<(), String>;

    /// Reports whether the plugin is healthy.
    fn health(&mut self) -> Result<(), String> {
        Ok(())
    }

    /// Called once before the daemon stops.
    fn shutdown(&mut self) {}
}

/// Glue used by [`export_plugin!`]; not part of the stable API.
#[doc(hidden)]
pub mod __private {
    use super::*;
    use std::sync::Mutex;

    struct Ctx<P> {
        plugin: P,
        last_error: String,
    }

    /// What the plugin was built with.
    pub const BUILT_WITH: &str = concat!("fdmd-plugin-api ", env!("CARGO_PKG_VERSION"));

    /// Message of the last `init` failure (there is no context yet to keep it in).
    static INIT_ERROR: Mutex<String> = Mutex::new(String::new());

    fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
        if let Some(s) = payload.downcast_ref::<&str>() {
            format!("panic: {s}")
        } else if let Some(s) = payload.downcast_ref::<String>() {
            format!("panic: {s}")
        } else {
            "panic".to_owned()
        }
    }

    fn set_init_error(message: String) {
        if let Ok(mut e) = INIT_ERROR.lock() {
            *e = message;
        }
    }

    /// The entry point body.
    ///
    /// # Safety
    /// Called by the host through `fdmd_plugin_entry_v1`.
    pub unsafe fn entry(
        host: *const FdmdHostApiV1,
        out: *mut *const FdmdPluginV1,
        table: &'static FdmdPluginV1,
    ) -> FdmdRc {
        if out.is_null() {
            return FDMD_RC_BAD_ARGUMENT;
        }
        // SAFETY: the host passes its table (or NULL).
        if let Some(h) = unsafe { host.as_ref() }
            && h.abi_major != FDMD_ABI_MAJOR
        {
            return FDMD_RC_UNAVAILABLE;
        }
        // SAFETY: checked non-null above.
        unsafe { *out = table };
        FDMD_RC_OK
    }

    /// `init` slot.
    ///
    /// # Safety
    /// Called by the host per the ABI.
    pub unsafe extern "C" fn init<P: Plugin>(
        host: *const FdmdHostApiV1,
        config: FdmdBytes,
        ctx_out: *mut *mut c_void,
    ) -> FdmdRc {
        if ctx_out.is_null() {
            return FDMD_RC_BAD_ARGUMENT;
        }
        // SAFETY: `config` is valid during this call.
        let config = unsafe { config.as_slice() };
        // SAFETY: `host` is the host's table.
        let host = unsafe { Host::from_raw(host) };
        match catch_unwind(AssertUnwindSafe(|| P::init(host, config))) {
            Ok(Ok(plugin)) => {
                let ctx = Box::new(Ctx {
                    plugin,
                    last_error: String::new(),
                });
                // SAFETY: checked non-null above.
                unsafe { *ctx_out = Box::into_raw(ctx) as *mut c_void };
                FDMD_RC_OK
            }
            Ok(Err(e)) => {
                set_init_error(e);
                FDMD_RC_ERROR
            }
            Err(p) => {
                set_init_error(panic_message(&*p));
                FDMD_RC_PANIC
            }
        }
    }

    /// `handle` slot.
    ///
    /// # Safety
    /// Called by the host per the ABI, with a context from `init`.
    pub unsafe extern "C" fn handle<P: Plugin>(
        ctx: *mut c_void,
        input: *const FdmdInput,
        emit: FdmdEmitFn,
        emit_ctx: *mut c_void,
    ) -> FdmdRc {
        // SAFETY: `ctx` came from `init::<P>`; calls on it are serialised by the host.
        let Some(ctx) = (unsafe { (ctx as *mut Ctx<P>).as_mut() }) else {
            return FDMD_RC_BAD_ARGUMENT;
        };
        // SAFETY: `input` is valid during this call.
        let Some(raw) = (unsafe { input.as_ref() }) else {
            return FDMD_RC_BAD_ARGUMENT;
        };
        // SAFETY: the slices are valid during this call.
        let (topic, data) = unsafe { (raw.topic.as_slice(), raw.data.as_slice()) };
        let input = match raw.kind {
            FDMD_INPUT_OPEN => Input::Open { conn: raw.conn },
            FDMD_INPUT_DATA => Input::Data {
                conn: raw.conn,
                bytes: data,
            },
            FDMD_INPUT_CLOSED => Input::Closed { conn: raw.conn },
            FDMD_INPUT_MQTT => match core::str::from_utf8(topic) {
                Ok(topic) => Input::Mqtt {
                    topic,
                    payload: data,
                },
                Err(_) => return FDMD_RC_BAD_ARGUMENT,
            },
            // A later minor version may add kinds; an old plugin ignores them.
            _ => return FDMD_RC_OK,
        };
        let mut out = Output {
            emit,
            ctx: emit_ctx,
            _call: core::marker::PhantomData,
        };
        let plugin = &mut ctx.plugin;
        match catch_unwind(AssertUnwindSafe(|| plugin.handle(input, &mut out))) {
            Ok(Ok(())) => FDMD_RC_OK,
            Ok(Err(e)) => {
                ctx.last_error = e;
                FDMD_RC_ERROR
            }
            Err(p) => {
                ctx.last_error = panic_message(&*p);
                FDMD_RC_PANIC
            }
        }
    }

    /// `health` slot.
    ///
    /// # Safety
    /// Called by the host per the ABI, with a context from `init`.
    pub unsafe extern "C" fn health<P: Plugin>(ctx: *mut c_void) -> FdmdRc {
        // SAFETY: as in `handle`.
        let Some(ctx) = (unsafe { (ctx as *mut Ctx<P>).as_mut() }) else {
            return FDMD_RC_BAD_ARGUMENT;
        };
        let plugin = &mut ctx.plugin;
        match catch_unwind(AssertUnwindSafe(|| plugin.health())) {
            Ok(Ok(())) => FDMD_RC_OK,
            Ok(Err(e)) => {
                ctx.last_error = e;
                FDMD_RC_ERROR
            }
            Err(p) => {
                ctx.last_error = panic_message(&*p);
                FDMD_RC_PANIC
            }
        }
    }

    /// `shutdown` slot: runs the plugin's shutdown and frees the context (with the plugin's own
    /// allocator).
    ///
    /// # Safety
    /// Called by the host once per context, which it never uses again.
    pub unsafe extern "C" fn shutdown<P: Plugin>(ctx: *mut c_void) {
        if ctx.is_null() {
            return;
        }
        // SAFETY: `ctx` came from `Box::into_raw` in `init::<P>`.
        let mut ctx = unsafe { Box::from_raw(ctx as *mut Ctx<P>) };
        let _ = catch_unwind(AssertUnwindSafe(|| ctx.plugin.shutdown()));
        let _ = catch_unwind(AssertUnwindSafe(move || drop(ctx)));
    }

    /// `last_error` slot.
    ///
    /// # Safety
    /// Called by the host per the ABI.
    pub unsafe extern "C" fn last_error<P: Plugin>(
        ctx: *mut c_void,
        sink: FdmdSinkFn,
        sink_ctx: *mut c_void,
    ) {
        // SAFETY: as in `handle` (NULL means: the error of `init`).
        let message = match unsafe { (ctx as *mut Ctx<P>).as_ref() } {
            Some(ctx) => ctx.last_error.clone(),
            None => INIT_ERROR.lock().map(|e| e.clone()).unwrap_or_default(),
        };
        // SAFETY: the host's sink copies the bytes during the call.
        unsafe { sink(sink_ctx, FdmdBytes::from_slice(message.as_bytes())) }
    }

    /// The table for plugin type `P`.
    pub const fn table<P: Plugin>(
        name: &'static str,
        version: &'static str,
        built_with: &'static str,
    ) -> FdmdPluginV1 {
        FdmdPluginV1 {
            abi_major: FDMD_ABI_MAJOR,
            abi_minor: FDMD_ABI_MINOR,
            struct_size: core::mem::size_of::<FdmdPluginV1>() as u32,
            name: FdmdBytes::from_static(name),
            version: FdmdBytes::from_static(version),
            built_with: FdmdBytes::from_static(built_with),
            init: Some(init::<P>),
            handle: Some(handle::<P>),
            health: Some(health::<P>),
            shutdown: Some(shutdown::<P>),
            last_error: Some(last_error::<P>),
        }
    }
}

/// Exports a [`Plugin`] type as a version-1 fdmd plugin: defines `fdmd_plugin_entry_v1` and the
/// plugin's static table. Use it once per `cdylib`.
#[macro_export]
macro_rules! export_plugin {
    ($ty:ty, name = $name:expr, version = $version:expr) => {
        static __FDMD_PLUGIN_TABLE: $crate::FdmdPluginV1 =
            $crate::__private::table::<$ty>($name, $version, $crate::__private::BUILT_WITH);

        /// The version-1 entry point of this fdmd plugin.
        ///
        /// # Safety
        /// Called by the fdmd host with its service table and an output pointer.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn fdmd_plugin_entry_v1(
            host: *const $crate::FdmdHostApiV1,
            out: *mut *const $crate::FdmdPluginV1,
        ) -> $crate::FdmdRc {
            // SAFETY: forwarded from the host, per the ABI.
            unsafe { $crate::__private::entry(host, out, &__FDMD_PLUGIN_TABLE) }
        }
    };
}
