//! The C ABI, version 1: only `#[repr(C)]` types, integers, raw pointers and nullable function
//! pointers. `include/fdmd_plugin.h` is generated from this file.
//!
//! Rules both sides follow:
//! - Every table starts with `abi_major`, `abi_minor` and `struct_size`. A minor version only
//!   appends fields; a reader uses a field only when `struct_size` covers it. A new major version
//!   gets a new entry symbol (`fdmd_plugin_entry_v2`).
//! - Every function slot may be NULL (absent).
//! - Bytes cross the boundary only as [`FdmdBytes`] borrowed for the duration of one call. Whoever
//!   allocates frees: output goes through a callback of the receiving side, which copies it.
//! - Calls on one plugin context are serialised by the host but may come from any thread, so a
//!   plugin must not keep state in thread-locals.

use core::ffi::c_void;

/// ABI major version of this header. A plugin with another major version is refused.
pub const FDMD_ABI_MAJOR: u16 = 1;
/// ABI minor version of this header. Minor versions only append fields to the tables.
pub const FDMD_ABI_MINOR: u16 = 0;
/// Version of the JSON schema of host requests (`submit`) and their answers.
pub const FDMD_SCHEMA_VERSION: u32 = 1;

/// Result code of every call across the boundary.
pub type FdmdRc = i32;
/// The call succeeded.
pub const FDMD_RC_OK: FdmdRc = 0;
/// The call failed; `last_error` tells why.
pub const FDMD_RC_ERROR: FdmdRc = 1;
/// The plugin panicked (Rust) or otherwise failed unexpectedly; the panic was caught.
pub const FDMD_RC_PANIC: FdmdRc = 2;
/// An argument was NULL or malformed.
pub const FDMD_RC_BAD_ARGUMENT: FdmdRc = 3;
/// The service is not available (absent slot, host shutting down, ABI not supported).
pub const FDMD_RC_UNAVAILABLE: FdmdRc = 4;

/// Log level: error.
pub const FDMD_LOG_ERROR: u32 = 1;
/// Log level: warning.
pub const FDMD_LOG_WARN: u32 = 2;
/// Log level: information.
pub const FDMD_LOG_INFO: u32 = 3;
/// Log level: debugging.
pub const FDMD_LOG_DEBUG: u32 = 4;

/// Input kind: a transport connection opened (`conn` is new).
pub const FDMD_INPUT_OPEN: u32 = 1;
/// Input kind: bytes arrived on connection `conn`.
pub const FDMD_INPUT_DATA: u32 = 2;
/// Input kind: connection `conn` closed; forget its state.
pub const FDMD_INPUT_CLOSED: u32 = 3;
/// Input kind: an MQTT message arrived on `topic`.
pub const FDMD_INPUT_MQTT: u32 = 4;

/// Output kind: write these bytes to connection `conn`.
pub const FDMD_OUTPUT_WRITE: u32 = 1;
/// Output kind: close connection `conn` (after the writes before it).
pub const FDMD_OUTPUT_CLOSE: u32 = 2;

/// A borrowed byte slice (UTF-8 text where a string is meant; not NUL-terminated). Valid only
/// during the call it is passed to. `ptr` may be NULL when `len` is 0.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct FdmdBytes {
    /// First byte.
    pub ptr: *const u8,
    /// Number of bytes.
    pub len: usize,
}

// SAFETY: FdmdBytes is a plain pointer and length; the static tables that hold it only point at
// `'static` string literals.
unsafe impl Sync for FdmdBytes {}
// SAFETY: as above.
unsafe impl Send for FdmdBytes {}

impl FdmdBytes {
    /// Borrows a `'static` string (for the plugin table's name and version).
    pub const fn from_static(s: &'static str) -> Self {
        FdmdBytes {
            ptr: s.as_ptr(),
            len: s.len(),
        }
    }

    /// Borrows a slice for the duration of one call.
    pub fn from_slice(s: &[u8]) -> Self {
        FdmdBytes {
            ptr: s.as_ptr(),
            len: s.len(),
        }
    }

    /// The bytes.
    ///
    /// # Safety
    /// `ptr` must point at `len` readable bytes that stay valid for `'a` (or `len` must be 0).
    pub unsafe fn as_slice<'a>(self) -> &'a [u8] {
        if self.ptr.is_null() || self.len == 0 {
            &[]
        } else {
            // SAFETY: guaranteed by the caller.
            unsafe { core::slice::from_raw_parts(self.ptr, self.len) }
        }
    }
}

/// Receives bytes from the other side and copies them (replies, error messages). `sink_ctx` is
/// the pointer given next to the function.
pub type FdmdSinkFn = unsafe extern "C" fn(sink_ctx: *mut c_void, bytes: FdmdBytes);

/// Receives one output of a plugin call (`FDMD_OUTPUT_*`), copied by the host.
pub type FdmdEmitFn =
    unsafe extern "C" fn(emit_ctx: *mut c_void, kind: u32, conn: u64, bytes: FdmdBytes);

/// Services the host gives a plugin. The table and `host_ctx` stay valid for the life of the
/// process.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct FdmdHostApiV1 {
    /// Always 1 for this table.
    pub abi_major: u16,
    /// Minor version of the host.
    pub abi_minor: u16,
    /// `sizeof(FdmdHostApiV1)` as the host built it.
    pub struct_size: u32,
    /// Opaque; passed back to every service.
    pub host_ctx: *mut c_void,
    /// Writes one line to the daemon's log, tagged with the plugin's name.
    pub log: Option<unsafe extern "C" fn(host_ctx: *mut c_void, level: u32, message: FdmdBytes)>,
    /// Wall-clock time, milliseconds since the Unix epoch.
    pub now_unix_ms: Option<unsafe extern "C" fn(host_ctx: *mut c_void) -> u64>,
    /// Publishes an MQTT message on a topic of this plugin instance's namespace: its `…/out`
    /// topic or one below it, given in full or relative to `…/out` (`"display/1"`). QoS 0 or 1.
    /// Never blocks: the message is queued. Returns `FDMD_RC_BAD_ARGUMENT` for a topic outside
    /// the namespace, a QoS above 1 or a payload over the limit, and `FDMD_RC_UNAVAILABLE` when
    /// MQTT is off or the queue is full; the daemon's log says which.
    pub publish: Option<
        unsafe extern "C" fn(
            host_ctx: *mut c_void,
            topic: FdmdBytes,
            payload: FdmdBytes,
            qos: u8,
        ) -> FdmdRc,
    >,
    /// Sends a JSON request (schema `FDMD_SCHEMA_VERSION`: status, order, precomputed, pin) to
    /// the daemon and waits for its JSON answer, which is given to `reply` before this returns.
    /// This is the only way into the journal.
    pub submit: Option<
        unsafe extern "C" fn(
            host_ctx: *mut c_void,
            request: FdmdBytes,
            reply: FdmdSinkFn,
            reply_ctx: *mut c_void,
        ) -> FdmdRc,
    >,
}

/// One input for [`FdmdPluginV1::handle`].
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct FdmdInput {
    /// `FDMD_INPUT_*`.
    pub kind: u32,
    /// Connection id, unique within the plugin while the connection is open (0 for MQTT).
    pub conn: u64,
    /// MQTT topic (`FDMD_INPUT_MQTT` only), else empty.
    pub topic: FdmdBytes,
    /// The bytes (`FDMD_INPUT_DATA`: as read from the transport; `FDMD_INPUT_MQTT`: the payload).
    pub data: FdmdBytes,
}

/// The table a version-1 plugin gives the host. It lives in the plugin's static memory.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct FdmdPluginV1 {
    /// Must equal `FDMD_ABI_MAJOR` (1).
    pub abi_major: u16,
    /// The minor version the plugin was built with.
    pub abi_minor: u16,
    /// `sizeof(FdmdPluginV1)` as the plugin built it.
    pub struct_size: u32,
    /// Plugin name, UTF-8.
    pub name: FdmdBytes,
    /// Plugin version, UTF-8.
    pub version: FdmdBytes,
    /// Toolchain or SDK the plugin was built with, UTF-8 (informational).
    pub built_with: FdmdBytes,
    /// Creates a context from the plugin's configuration (JSON). Required.
    pub init: Option<
        unsafe extern "C" fn(
            host: *const FdmdHostApiV1,
            config: FdmdBytes,
            ctx_out: *mut *mut c_void,
        ) -> FdmdRc,
    >,
    /// Handles one input; outputs go to `emit` before it returns. Required.
    pub handle: Option<
        unsafe extern "C" fn(
            ctx: *mut c_void,
            input: *const FdmdInput,
            emit: FdmdEmitFn,
            emit_ctx: *mut c_void,
        ) -> FdmdRc,
    >,
    /// `FDMD_RC_OK` when the plugin is healthy. Optional.
    pub health: Option<unsafe extern "C" fn(ctx: *mut c_void) -> FdmdRc>,
    /// Releases the context. Optional. The library itself is never unloaded.
    pub shutdown: Option<unsafe extern "C" fn(ctx: *mut c_void)>,
    /// Gives the last error message of `ctx` (or of `init`, when `ctx` is NULL) to `sink`.
    /// Optional.
    pub last_error:
        Option<unsafe extern "C" fn(ctx: *mut c_void, sink: FdmdSinkFn, sink_ctx: *mut c_void)>,
}

// SAFETY: the table is immutable static data; its pointers point at `'static` strings and
// functions.
unsafe impl Sync for FdmdPluginV1 {}
// SAFETY: as above.
unsafe impl Send for FdmdPluginV1 {}
// SAFETY: the host's table is immutable once given; `host_ctx` is shared data the host
// synchronises itself.
unsafe impl Sync for FdmdHostApiV1 {}
// SAFETY: as above.
unsafe impl Send for FdmdHostApiV1 {}

/// Type of the entry symbol `fdmd_plugin_entry_v1`.
pub type FdmdEntryV1 =
    unsafe extern "C" fn(host: *const FdmdHostApiV1, out: *mut *const FdmdPluginV1) -> FdmdRc;

/// Name of the version-1 entry symbol.
pub const FDMD_ENTRY_V1_SYMBOL: &str = "fdmd_plugin_entry_v1";
