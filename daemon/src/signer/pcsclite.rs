//! A small binding of the PC/SC C API (pcsc-lite's `libpcsclite.so.1`), loaded at run time.
//!
//! fdmd used the `pcsc` crate, whose `pcsc-sys` links libpcsclite at build time: building fdmd
//! then needed `pkg-config` and `libpcsclite-dev` even for development with the software
//! signer, so the README's first command failed on a machine with only the Rust toolchain.
//! `pcsc-sys` has no run-time option (its `PCSC_LIB_DIR`/`PCSC_LIB_NAME` skip pkg-config but
//! still link the library at build time), and no crate found loads pcsc-lite at run time, so
//! this module does it itself with
//! `libloading`, and only for the nine calls [`super::pcsc`] makes. The library is opened the
//! first time a context is established (that is, when the card backend is selected); if it
//! cannot be, every call answers [`Error::Library`], which the monitor reports as the signer's
//! state (`no signing card (201): PC/SC library …`). The daemon itself keeps running.
//!
//! `FDMD_PCSC_LIBRARY` names another file to load instead of `libpcsclite.so.1` (a library
//! installed elsewhere; the tests use it to check the missing-library path).
//!
//! The types follow pcsc-lite's `pcsclite.h` and `winscard.h` on Linux: `LONG` and `DWORD`
//! are C `long` and `unsigned long` (64 bits on arm64/amd64, 32 on armhf), handles are `LONG`.

use std::ffi::{CStr, CString, c_char, c_long, c_ulong, c_void};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

type Long = c_long;
type Dword = c_ulong;
type Handle = Long;

/// Largest extended APDU answer plus status word (pcsc-lite's `MAX_BUFFER_SIZE_EXTENDED`).
pub const MAX_BUFFER_SIZE_EXTENDED: usize = 4 + 3 + (1 << 16) + 3 + 2;
const MAX_ATR_SIZE: usize = 33;
/// The library file opened unless `FDMD_PCSC_LIBRARY` says otherwise.
pub const LIBRARY: &str = "libpcsclite.so.1";
/// The environment variable naming another library file.
pub const LIBRARY_ENV: &str = "FDMD_PCSC_LIBRARY";

const SCARD_SCOPE_USER: Dword = 0;
const SCARD_SHARE_EXCLUSIVE: Dword = 1;
const SCARD_PROTOCOL_T0: Dword = 1;
const SCARD_PROTOCOL_T1: Dword = 2;
const SCARD_LEAVE_CARD: Dword = 0;

const SCARD_E_CANCELLED: u32 = 0x8010_0002;
const SCARD_E_TIMEOUT: u32 = 0x8010_000A;
const SCARD_E_NO_READERS_AVAILABLE: u32 = 0x8010_002E;
const SCARD_W_RESET_CARD: u32 = 0x8010_0068;

/// A PC/SC failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The wait ended without an event.
    #[error("the wait timed out")]
    Timeout,
    /// `SCardCancel` ended the wait.
    #[error("the wait was cancelled")]
    Cancelled,
    /// pcscd knows no reader.
    #[error("no reader is available")]
    NoReadersAvailable,
    /// The card was reset by someone else.
    #[error("the card was reset")]
    ResetCard,
    /// libpcsclite could not be loaded.
    #[error("{0}")]
    Library(String),
    /// Any other PC/SC status code.
    #[error("PC/SC error 0x{0:08X}")]
    Other(u32),
}

fn check(rv: Long) -> Result<(), Error> {
    // Codes are 32-bit values in a C long (sign-extended on 32-bit targets).
    match rv as u32 {
        0 => Ok(()),
        SCARD_E_TIMEOUT => Err(Error::Timeout),
        SCARD_E_CANCELLED => Err(Error::Cancelled),
        SCARD_E_NO_READERS_AVAILABLE => Err(Error::NoReadersAvailable),
        SCARD_W_RESET_CARD => Err(Error::ResetCard),
        other => Err(Error::Other(other)),
    }
}

#[repr(C)]
struct IoRequest {
    protocol: Dword,
    pci_length: Dword,
}

#[repr(C)]
struct RawReaderState {
    reader: *const c_char,
    user_data: *mut c_void,
    current_state: Dword,
    event_state: Dword,
    atr_len: Dword,
    atr: [u8; MAX_ATR_SIZE],
}

/// The functions fdmd calls, resolved once from the loaded library.
struct Api {
    establish: unsafe extern "C" fn(Dword, *const c_void, *const c_void, *mut Handle) -> Long,
    release: unsafe extern "C" fn(Handle) -> Long,
    list_readers: unsafe extern "C" fn(Handle, *const c_char, *mut c_char, *mut Dword) -> Long,
    get_status_change: unsafe extern "C" fn(Handle, Dword, *mut RawReaderState, Dword) -> Long,
    cancel: unsafe extern "C" fn(Handle) -> Long,
    connect:
        unsafe extern "C" fn(Handle, *const c_char, Dword, Dword, *mut Handle, *mut Dword) -> Long,
    reconnect: unsafe extern "C" fn(Handle, Dword, Dword, Dword, *mut Dword) -> Long,
    disconnect: unsafe extern "C" fn(Handle, Dword) -> Long,
    transmit: unsafe extern "C" fn(
        Handle,
        *const IoRequest,
        *const u8,
        Dword,
        *mut IoRequest,
        *mut u8,
        *mut Dword,
    ) -> Long,
    /// Kept loaded for the life of the process (the pointers above point into it).
    _library: libloading::Library,
}

static API: OnceLock<Result<Api, String>> = OnceLock::new();

fn api() -> Result<&'static Api, Error> {
    API.get_or_init(load)
        .as_ref()
        .map_err(|e| Error::Library(e.clone()))
}

fn load() -> Result<Api, String> {
    let file = std::env::var_os(LIBRARY_ENV).unwrap_or_else(|| LIBRARY.into());
    let shown = file.to_string_lossy().into_owned();
    // SAFETY: libpcsclite's initialisers only set up its own state; the file is the system's
    // PC/SC client library (or the one the administrator named).
    let library = unsafe { libloading::Library::new(&file) }.map_err(|e| {
        format!("PC/SC library {shown} cannot be loaded ({e}); install libpcsclite1 and pcscd")
    })?;
    macro_rules! symbol {
        ($name:literal) => {
            // SAFETY: the type is the function's prototype in pcsc-lite's winscard.h.
            *unsafe { library.get(concat!($name, "\0").as_bytes()) }
                .map_err(|e| format!("PC/SC library {shown}: {e}"))?
        };
    }
    Ok(Api {
        establish: symbol!("SCardEstablishContext"),
        release: symbol!("SCardReleaseContext"),
        list_readers: symbol!("SCardListReaders"),
        get_status_change: symbol!("SCardGetStatusChange"),
        cancel: symbol!("SCardCancel"),
        connect: symbol!("SCardConnect"),
        reconnect: symbol!("SCardReconnect"),
        disconnect: symbol!("SCardDisconnect"),
        transmit: symbol!("SCardTransmit"),
        _library: library,
    })
}

/// Whether libpcsclite can be loaded, and why not.
pub fn library_available() -> Result<(), Error> {
    api().map(|_| ())
}

struct ContextInner {
    api: &'static Api,
    handle: Handle,
}

impl Drop for ContextInner {
    fn drop(&mut self) {
        // SAFETY: the handle came from SCardEstablishContext and is released once.
        unsafe { (self.api.release)(self.handle) };
    }
}

/// A PC/SC context (`SCardEstablishContext`), shared by its clones; released with the last.
/// pcsc-lite allows `SCardCancel` from another thread while one waits in it.
#[derive(Clone)]
pub struct Context(Arc<ContextInner>);

impl Context {
    /// A context of the user scope.
    pub fn establish() -> Result<Context, Error> {
        let api = api()?;
        let mut handle: Handle = 0;
        // SAFETY: the reserved pointers are null, the out-pointer is valid.
        check(unsafe {
            (api.establish)(
                SCARD_SCOPE_USER,
                std::ptr::null(),
                std::ptr::null(),
                &mut handle,
            )
        })?;
        Ok(Context(Arc::new(ContextInner { api, handle })))
    }

    /// The names of the readers pcscd knows.
    pub fn list_readers(&self) -> Result<Vec<CString>, Error> {
        let Context(inner) = self;
        let mut len: Dword = 0;
        // SAFETY: a null buffer asks for the length only.
        check(unsafe {
            (inner.api.list_readers)(
                inner.handle,
                std::ptr::null(),
                std::ptr::null_mut(),
                &mut len,
            )
        })?;
        let mut buf = vec![0u8; len as usize];
        // SAFETY: the buffer holds `len` bytes, as the length says.
        check(unsafe {
            (inner.api.list_readers)(
                inner.handle,
                std::ptr::null(),
                buf.as_mut_ptr().cast(),
                &mut len,
            )
        })?;
        buf.truncate(len as usize);
        // A multi-string: names ended by NUL, the list by an empty name.
        Ok(buf
            .split(|&b| b == 0)
            .filter(|name| !name.is_empty())
            .filter_map(|name| CString::new(name).ok())
            .collect())
    }

    /// Waits up to `timeout` for a change of any of `states` (`SCardGetStatusChange`).
    pub fn get_status_change(
        &self,
        timeout: Duration,
        states: &mut [ReaderState],
    ) -> Result<(), Error> {
        let Context(inner) = self;
        let mut raw: Vec<RawReaderState> = states
            .iter()
            .map(|s| RawReaderState {
                reader: s.name.as_ptr(),
                user_data: std::ptr::null_mut(),
                current_state: s.current,
                event_state: s.event,
                atr_len: 0,
                atr: [0; MAX_ATR_SIZE],
            })
            .collect();
        let ms = timeout.as_millis().min(u32::MAX as u128 - 1) as Dword;
        // SAFETY: `raw` holds `raw.len()` states whose names live in `states` for the call.
        let rv = unsafe {
            (inner.api.get_status_change)(inner.handle, ms, raw.as_mut_ptr(), raw.len() as Dword)
        };
        for (state, raw) in states.iter_mut().zip(&raw) {
            state.event = raw.event_state;
        }
        check(rv)
    }

    /// Ends a wait in [`Context::get_status_change`] (from another thread).
    pub fn cancel(&self) -> Result<(), Error> {
        let Context(inner) = self;
        // SAFETY: a valid context handle.
        check(unsafe { (inner.api.cancel)(inner.handle) })
    }

    /// Connects to the card in `reader`, exclusively, with T=0 or T=1.
    pub fn connect(&self, reader: &CStr) -> Result<Card, Error> {
        let Context(inner) = self;
        let mut handle: Handle = 0;
        let mut protocol: Dword = 0;
        // SAFETY: a NUL-ended reader name and valid out-pointers.
        check(unsafe {
            (inner.api.connect)(
                inner.handle,
                reader.as_ptr(),
                SCARD_SHARE_EXCLUSIVE,
                SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1,
                &mut handle,
                &mut protocol,
            )
        })?;
        Ok(Card {
            context: self.clone(),
            handle,
            protocol,
        })
    }
}

/// A connected card; disconnected (card left as it is) when dropped.
pub struct Card {
    /// The card's handle must not outlive its context.
    context: Context,
    handle: Handle,
    protocol: Dword,
}

impl Card {
    fn api(&self) -> &'static Api {
        self.context.0.api
    }

    /// Sends an APDU; the answer is written to the start of `buf`.
    pub fn transmit<'b>(&mut self, command: &[u8], buf: &'b mut [u8]) -> Result<&'b [u8], Error> {
        let send = IoRequest {
            protocol: self.protocol,
            pci_length: std::mem::size_of::<IoRequest>() as Dword,
        };
        let mut len = buf.len() as Dword;
        // SAFETY: the command and buffer lengths are those of the slices passed.
        check(unsafe {
            (self.api().transmit)(
                self.handle,
                &send,
                command.as_ptr(),
                command.len() as Dword,
                std::ptr::null_mut(),
                buf.as_mut_ptr(),
                &mut len,
            )
        })?;
        buf.get(..len as usize).ok_or(Error::Other(0))
    }

    /// Reconnects after a reset, exclusively, the card left as it is.
    pub fn reconnect(&mut self) -> Result<(), Error> {
        let mut protocol: Dword = 0;
        // SAFETY: a valid card handle and out-pointer.
        check(unsafe {
            (self.api().reconnect)(
                self.handle,
                SCARD_SHARE_EXCLUSIVE,
                SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1,
                SCARD_LEAVE_CARD,
                &mut protocol,
            )
        })?;
        self.protocol = protocol;
        Ok(())
    }
}

impl Drop for Card {
    fn drop(&mut self) {
        // SAFETY: the handle came from SCardConnect and is disconnected once.
        unsafe { (self.api().disconnect)(self.handle, SCARD_LEAVE_CARD) };
    }
}

/// Reader states (`SCARD_STATE_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct State(Dword);

impl State {
    /// The application does not know the state yet.
    pub const UNAWARE: State = State(0);
    /// The reader is to be ignored.
    pub const IGNORE: State = State(0x1);
    /// The state changed.
    pub const CHANGED: State = State(0x2);
    /// The reader is not known.
    pub const UNKNOWN: State = State(0x4);
    /// The reader's state is not available.
    pub const UNAVAILABLE: State = State(0x8);
    /// A card is in the reader.
    pub const PRESENT: State = State(0x20);
    /// The card does not answer.
    pub const MUTE: State = State(0x200);

    /// Whether every bit of `other` is set.
    pub fn contains(self, other: State) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any bit of `other` is set.
    pub fn intersects(self, other: State) -> bool {
        self.0 & other.0 != 0
    }
}

impl std::ops::BitOr for State {
    type Output = State;
    fn bitor(self, other: State) -> State {
        State(self.0 | other.0)
    }
}

/// The name pcsc-lite gives the pseudo-reader that changes when readers come and go.
pub fn pnp_notification() -> CString {
    c"\\\\?PnP?\\Notification".to_owned()
}

/// A reader watched by [`Context::get_status_change`].
#[derive(Debug, Clone)]
pub struct ReaderState {
    name: CString,
    current: Dword,
    event: Dword,
}

impl ReaderState {
    /// A reader whose state the caller believes is `current`.
    pub fn new(name: CString, current: State) -> ReaderState {
        ReaderState {
            name,
            current: current.0,
            event: 0,
        }
    }

    /// The reader's name.
    pub fn name(&self) -> &CStr {
        &self.name
    }

    /// The state the last wait reported (the event counter bits masked out).
    pub fn event_state(&self) -> State {
        State(self.event & 0xFFFF)
    }

    /// pcsc-lite's count of card events in this reader (the high 16 bits of the event state).
    pub fn event_count(&self) -> u32 {
        ((self.event >> 16) & 0xFFFF) as u32
    }

    /// Takes the reported state as the known one for the next wait.
    pub fn sync_current_state(&mut self) {
        self.current = self.event;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_map_to_errors_on_any_width_of_long() {
        assert_eq!(check(0), Ok(()));
        assert_eq!(check(0x8010_000A_u32 as i32 as Long), Err(Error::Timeout));
        assert_eq!(check(0x8010_0002_u32 as Long), Err(Error::Cancelled));
        assert_eq!(
            check(0x8010_001D_u32 as Long),
            Err(Error::Other(0x8010_001D))
        );
    }

    #[test]
    fn event_state_and_count_are_split() {
        let mut s = ReaderState::new(pnp_notification(), State::UNAWARE);
        s.event = (7 << 16) | 0x22;
        assert!(s.event_state().contains(State::PRESENT | State::CHANGED));
        assert!(!s.event_state().intersects(State::MUTE));
        assert_eq!(s.event_count(), 7);
        s.sync_current_state();
        assert_eq!(s.current, (7 << 16) | 0x22);
    }
}
