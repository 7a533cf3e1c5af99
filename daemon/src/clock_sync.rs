//! Whether the system clock is synchronised, as the kernel says (adjtimex(2), read only): an
//! NTP client (systemd-timesyncd, chrony, ntpd) clears `STA_UNSYNC` once it has set the clock.
//! A box without a hardware clock that has not reached its time server yet shows
//! `synchronised: false` in the status document (`docs/time.md`).

use serde::Serialize;

/// The kernel's view of the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ClockSync {
    /// True once an NTP client has synchronised the clock; `None` when the kernel cannot say.
    pub synchronised: Option<bool>,
    /// The kernel's estimate of the clock's maximum error, in milliseconds, when synchronised.
    pub max_error_ms: Option<i64>,
}

/// Reads the clock's state without changing anything.
pub fn read() -> ClockSync {
    // SAFETY: `timex` is a plain C struct for which all zeros is a valid value; with `modes`
    // zero, adjtimex only reads the kernel's state into it.
    let mut timex: libc::timex = unsafe { std::mem::zeroed() };
    // SAFETY: a valid, exclusive pointer to a `timex` for the duration of the call.
    let state = unsafe { libc::adjtimex(&mut timex) };
    if state == -1 {
        return ClockSync {
            synchronised: None,
            max_error_ms: None,
        };
    }
    let synchronised = state != libc::TIME_ERROR && timex.status & libc::STA_UNSYNC == 0;
    ClockSync {
        synchronised: Some(synchronised),
        // `c_long` is 32 bits on armhf, 64 elsewhere.
        #[allow(clippy::useless_conversion)]
        max_error_ms: synchronised.then(|| i64::from(timex.maxerror) / 1000),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_kernel_answers() {
        let sync = super::read();
        assert!(sync.synchronised.is_some(), "{sync:?}");
        assert_eq!(sync.max_error_ms.is_some(), sync.synchronised == Some(true));
    }
}
