//! The PC/SC device layer of the VAT Signing Card signer (cargo feature `pcsc`), over
//! libpcsclite loaded at run time ([`super::pcsclite`]): without the library the signer reports
//! why in its state, and the daemon runs on.
//!
//! A monitor thread watches the system's pcscd: it picks the first reader whose name matches the
//! configured pattern, waits for card and reader events (`SCardGetStatusChange`, with the PnP
//! notification for readers that come and go), attaches a card that appears to the
//! [`CardSigner`] and detaches it when it or its reader goes, and re-establishes the PC/SC context
//! when pcscd itself restarts. Signing happens on the caller's thread over the card's own context
//! (pcsc-lite serialises calls per context, so the monitor's long waits never delay a signature).

use super::card::{CardSigner, Link, LinkError};
use super::pcsclite::{Context, Error, ReaderState, State};
use super::profile::{Pin, Profile};
use super::{Signer, SignerError, SignerIdentity, SignerState};
use serde_json::{Map, Value, json};
use std::ffi::CStr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long one wait for reader events lasts before the monitor looks at its stop flag.
const WAIT: Duration = Duration::from_millis(1000);

/// What the PC/SC signer needs.
#[derive(Debug, Clone)]
pub struct PcscSettings {
    /// Reader name pattern (`*` and `?` wildcards; no wildcard means "contains").
    pub reader: String,
    /// The card's APDU profile.
    pub profile: Profile,
    /// A file holding the PIN for unattended starts (mode 0600), if any.
    pub pin_file: Option<PathBuf>,
}

/// True when `name` matches `pattern`: a glob with `*` and `?`, or a plain substring.
pub fn reader_matches(pattern: &str, name: &str) -> bool {
    if !pattern.contains(['*', '?']) {
        return name.contains(pattern);
    }
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    // Iterative glob match with backtracking to the last `*`.
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// A card connected through pcscd, on its own context.
struct PcscLink {
    card: super::pcsclite::Card,
    buf: Vec<u8>,
}

impl Link for PcscLink {
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, LinkError> {
        match self.card.transmit(command, &mut self.buf) {
            Ok(answer) => Ok(answer.to_vec()),
            Err(Error::ResetCard) => {
                // Someone reset the card; reconnect (its PIN state is lost).
                match self.card.reconnect() {
                    Ok(()) => Err(LinkError::Reset),
                    Err(e) => Err(LinkError::Gone(format!(
                        "card reset, reconnect failed: {e}"
                    ))),
                }
            }
            Err(e) => Err(LinkError::Gone(format!("PC/SC: {e}"))),
        }
    }
}

fn connect(reader: &CStr) -> Result<PcscLink, Error> {
    let ctx = Context::establish()?;
    let card = ctx.connect(reader)?;
    Ok(PcscLink {
        card,
        buf: vec![0; super::pcsclite::MAX_BUFFER_SIZE_EXTENDED],
    })
}

/// The VAT Signing Card signer over PC/SC.
pub struct PcscSigner {
    card: Arc<CardSigner>,
    reader: String,
    stop: Arc<AtomicBool>,
    monitor_ctx: Arc<Mutex<Option<Context>>>,
}

impl PcscSigner {
    /// Starts the monitor thread. The signer is usable at once; it reports `absent` until a card
    /// is seen.
    pub fn start(settings: PcscSettings) -> std::io::Result<PcscSigner> {
        let card = Arc::new(CardSigner::new("pcsc", settings.profile, settings.pin_file));
        let stop = Arc::new(AtomicBool::new(false));
        let monitor_ctx = Arc::new(Mutex::new(None));
        let monitor = Monitor {
            card: card.clone(),
            pattern: settings.reader.clone(),
            stop: stop.clone(),
            ctx_slot: monitor_ctx.clone(),
        };
        std::thread::Builder::new()
            .name("vsc-monitor".into())
            .spawn(move || monitor.run())?;
        Ok(PcscSigner {
            card,
            reader: settings.reader,
            stop,
            monitor_ctx,
        })
    }
}

impl Drop for PcscSigner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(ctx) = self
            .monitor_ctx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            let _ = ctx.cancel();
        }
    }
}

impl Signer for PcscSigner {
    fn identity(&self) -> Result<SignerIdentity, SignerError> {
        self.card.identity()
    }

    fn state(&self) -> SignerState {
        self.card.state()
    }

    fn sign(&self, expected_id: &str, digest: &[u8; 32]) -> Result<Vec<u8>, SignerError> {
        self.card.sign(expected_id, digest)
    }

    fn submit_pin(&self, pin: &Pin) -> Result<SignerState, SignerError> {
        self.card.submit_pin(pin)
    }

    fn details(&self) -> Map<String, Value> {
        let mut m = self.card.details();
        m.insert("reader_pattern".into(), json!(self.reader));
        m
    }
}

struct Monitor {
    card: Arc<CardSigner>,
    pattern: String,
    stop: Arc<AtomicBool>,
    ctx_slot: Arc<Mutex<Option<Context>>>,
}

/// Why the inner loop ended.
enum Next {
    /// List the readers again (reader gone, readers changed).
    Relist,
    /// The context is broken (pcscd stopped): establish a new one.
    Reconnect,
    /// Stop the monitor.
    Stop,
}

impl Monitor {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn pause(&self, total: Duration) {
        let step = Duration::from_millis(100);
        let mut waited = Duration::ZERO;
        while waited < total && !self.stopped() {
            std::thread::sleep(step);
            waited += step;
        }
    }

    fn run(self) {
        while !self.stopped() {
            let ctx = match Context::establish() {
                Ok(c) => c,
                Err(e @ Error::Library(_)) => {
                    // Not going to change while the process runs: said once, then waited on.
                    self.card.detach(&e.to_string());
                    while !self.stopped() {
                        self.pause(WAIT);
                    }
                    return;
                }
                Err(e) => {
                    self.card
                        .detach(&format!("PC/SC service not available: {e}"));
                    self.pause(WAIT);
                    continue;
                }
            };
            *self.ctx_slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(ctx.clone());
            loop {
                if self.stopped() {
                    return;
                }
                match self.watch(&ctx) {
                    Next::Relist => continue,
                    Next::Reconnect => break,
                    Next::Stop => return,
                }
            }
            *self.ctx_slot.lock().unwrap_or_else(|p| p.into_inner()) = None;
            self.pause(Duration::from_millis(200));
        }
    }

    /// Finds the reader and follows its events until something makes a new look necessary.
    fn watch(&self, ctx: &Context) -> Next {
        let readers = match ctx.list_readers() {
            Ok(r) => r,
            Err(Error::NoReadersAvailable) => Vec::new(),
            Err(e) => {
                self.card.detach(&format!("PC/SC: {e}"));
                return Next::Reconnect;
            }
        };
        let reader = readers
            .into_iter()
            .find(|r| reader_matches(&self.pattern, &r.to_string_lossy()));
        let mut states = vec![ReaderState::new(
            super::pcsclite::pnp_notification(),
            State::UNAWARE,
        )];
        let name = match &reader {
            Some(r) => {
                states.push(ReaderState::new(r.clone(), State::UNAWARE));
                r.to_string_lossy().into_owned()
            }
            None => {
                self.card
                    .detach(&format!("no reader matching {:?}", self.pattern));
                String::new()
            }
        };
        // Event count of the card attached last (or tried last), while one is present.
        let mut present: Option<u32> = None;
        loop {
            match ctx.get_status_change(WAIT, &mut states) {
                Ok(()) => {}
                Err(Error::Timeout) => {
                    if self.stopped() {
                        return Next::Stop;
                    }
                    // A card still present whose session broke (a failed exchange): try again.
                    if present.is_some()
                        && !self.card.attached()
                        && !matches!(self.card.state(), SignerState::Incompatible { .. })
                        && let Some(r) = states.get(1)
                    {
                        self.attach(&name, r.name());
                    }
                    continue;
                }
                Err(Error::Cancelled) if self.stopped() => return Next::Stop,
                Err(e) => {
                    self.card.detach(&format!("PC/SC: {e}"));
                    return Next::Reconnect;
                }
            }
            if self.stopped() {
                return Next::Stop;
            }
            let pnp_changed = states[0].event_state().contains(State::CHANGED);
            if let Some(r) = states.get(1) {
                let ev = r.event_state();
                if ev.intersects(State::UNKNOWN | State::IGNORE | State::UNAVAILABLE) {
                    self.card.detach(&format!("reader {name} is gone"));
                    return Next::Relist;
                }
                if ev.contains(State::PRESENT) && !ev.contains(State::MUTE) {
                    let count = r.event_count();
                    if present != Some(count) {
                        // A card arrived, or another one replaced it between two looks.
                        self.attach(&name, r.name());
                        present = Some(count);
                    }
                } else {
                    present = None;
                    self.card.detach(&format!("no card in {name}"));
                }
            }
            for s in states.iter_mut() {
                s.sync_current_state();
            }
            if pnp_changed && reader.is_none() {
                return Next::Relist;
            }
        }
    }

    fn attach(&self, name: &str, reader: &CStr) {
        match connect(reader) {
            Ok(link) => self.card.attach(Box::new(link), name),
            Err(e) => self
                .card
                .detach(&format!("card in {name} cannot be used: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::reader_matches;

    #[test]
    fn reader_patterns() {
        assert!(reader_matches("Virtual PCD", "Virtual PCD 00 00"));
        assert!(reader_matches("*", "anything"));
        assert!(reader_matches("Virtual PCD 00 0?", "Virtual PCD 00 01"));
        assert!(reader_matches("*PCD*01", "Virtual PCD 00 01"));
        assert!(!reader_matches("*PCD*01", "Virtual PCD 00 00"));
        assert!(!reader_matches("Gemalto", "Virtual PCD 00 00"));
        assert!(reader_matches("", "Virtual PCD 00 00"));
    }
}
