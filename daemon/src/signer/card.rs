//! A signing card behind any APDU link: the generic part of the VAT Signing Card signer.
//!
//! [`CardSigner`] implements [`Signer`] for a card that a device layer attaches and detaches
//! (the PC/SC monitor in [`super::pcsc`], or a test). It keeps two locks: the *session* (the
//! card itself; every APDU exchange holds it, so calls to the card are serialised) and the
//! *view* (state, identity, counters), which never waits for the card: status, HTTP and the
//! journal writer's `identity()` read the view only. Everything card-specific comes from the
//! [`Profile`].

use super::profile::{Outcome, Pin, Profile, Template};
use super::{Signer, SignerError, SignerIdentity, SignerState, verify_ed25519};
use serde_json::{Map, Value, json};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

/// Why an exchange with the card did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// The card, the reader or the PC/SC service is gone.
    #[error("{0}")]
    Gone(String),
    /// The card was reset by someone else: it forgot its PIN.
    #[error("the card was reset")]
    Reset,
}

/// Something that carries command APDUs to a card and answers with the response APDU (data
/// followed by the two status bytes).
pub trait Link: Send {
    /// One exchange.
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, LinkError>;
}

/// One exchange, following ISO 7816 `61xx` (GET RESPONSE) and `6Cxx` (wrong Le) a bounded number
/// of times. Returns the data and the status word.
pub fn exchange(link: &mut dyn Link, command: &[u8]) -> Result<(Vec<u8>, u16), LinkError> {
    let mut data = Vec::new();
    let mut cmd = command.to_vec();
    for _ in 0..16 {
        let answer = link.transmit(&cmd)?;
        if answer.len() < 2 {
            return Err(LinkError::Gone(format!(
                "the card answered {} bytes, not a response APDU",
                answer.len()
            )));
        }
        let (body, sw) = answer.split_at(answer.len() - 2);
        data.extend_from_slice(body);
        match sw[0] {
            0x61 => cmd = vec![command[0] & 0x03, 0xC0, 0x00, 0x00, sw[1]],
            0x6C => {
                // Wrong Le: the same command again with the Le the card asks for.
                cmd = command.to_vec();
                let lc = command.get(4).map_or(0, |&b| b as usize);
                if command.len() == 5 || command.len() == 6 + lc {
                    cmd.pop();
                }
                cmd.push(sw[1]);
                data.clear();
            }
            _ => return Ok((data, u16::from_be_bytes([sw[0], sw[1]]))),
        }
    }
    Err(LinkError::Gone(
        "the card keeps asking for GET RESPONSE".into(),
    ))
}

/// What the card said about its PIN when it was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinStatus {
    /// Already verified (the card kept its state).
    Verified,
    /// Needed; tries left when the card says.
    Needed(Option<u8>),
    /// Blocked.
    Blocked,
}

/// A card once selected and read.
#[derive(Debug, Clone)]
pub struct Opened {
    /// Its identity.
    pub identity: SignerIdentity,
    /// Its PIN status.
    pub pin: PinStatus,
}

fn step_error(step: &str, sw: u16, outcome: Outcome, tries: Option<u8>) -> SignerError {
    match outcome {
        Outcome::Ok => SignerError::NoCard(format!("{step}: unexpected answer")),
        Outcome::WrongPin if tries == Some(0) => SignerError::Blocked,
        Outcome::WrongPin => SignerError::WrongPin { tries_left: tries },
        Outcome::Blocked => SignerError::Blocked,
        Outcome::PinRequired => SignerError::PinRequired,
        Outcome::Incompatible => {
            SignerError::Incompatible(format!("{step}: the card answered {sw:04X}"))
        }
        Outcome::Broken => SignerError::NoCard(format!("{step}: the card answered {sw:04X}")),
    }
}

fn gone(e: LinkError) -> SignerError {
    SignerError::NoCard(e.to_string())
}

/// Sends a template and expects "ok"; returns the data.
fn run(
    profile: &Profile,
    link: &mut dyn Link,
    step: &str,
    t: &Template,
    pin: Option<&[u8]>,
    digest: Option<&[u8]>,
) -> Result<Vec<u8>, SignerError> {
    let (data, sw) = exchange(link, &t.build(pin, digest)).map_err(gone)?;
    match profile.classify(sw) {
        (Outcome::Ok, _) => Ok(data),
        (outcome, tries) => Err(step_error(step, sw, outcome, tries)),
    }
}

/// Selects the application and reads the id, the public key and the PIN status.
pub fn open(profile: &Profile, link: &mut dyn Link) -> Result<Opened, SignerError> {
    let c = &profile.commands;
    run(profile, link, "select", &c.select, None, None)?;
    let id = run(profile, link, "read id", &c.read_id, None, None)?;
    if id.len() != profile.id_len || !id.iter().all(|b| b.is_ascii_graphic()) {
        return Err(SignerError::Incompatible(format!(
            "the VSC id is not {} printable characters",
            profile.id_len
        )));
    }
    let public_key = run(
        profile,
        link,
        "read public key",
        &c.read_public_key,
        None,
        None,
    )?;
    if public_key.len() != profile.public_key_len {
        return Err(SignerError::Incompatible(format!(
            "the public key is {} bytes, not {}",
            public_key.len(),
            profile.public_key_len
        )));
    }
    let pin = pin_status(profile, link)?;
    Ok(Opened {
        identity: SignerIdentity {
            id: String::from_utf8_lossy(&id).into_owned(),
            algorithm: profile.algorithm.clone(),
            public_key,
            certified: false,
        },
        pin,
    })
}

/// Asks the card for its PIN status.
pub fn pin_status(profile: &Profile, link: &mut dyn Link) -> Result<PinStatus, SignerError> {
    let (_, sw) = exchange(link, &profile.commands.pin_tries.build(None, None)).map_err(gone)?;
    Ok(match profile.classify(sw) {
        (Outcome::Ok, _) => PinStatus::Verified,
        (Outcome::WrongPin, Some(0)) | (Outcome::Blocked, _) => PinStatus::Blocked,
        (Outcome::WrongPin, tries) => PinStatus::Needed(tries),
        (Outcome::PinRequired, _) => PinStatus::Needed(None),
        (outcome, tries) => return Err(step_error("PIN tries", sw, outcome, tries)),
    })
}

/// Presents a PIN.
pub fn verify_pin(profile: &Profile, link: &mut dyn Link, pin: &Pin) -> Result<(), SignerError> {
    let encoded = profile.encode_pin(pin).map_err(SignerError::BadPinFormat)?;
    let c = &profile.commands;
    run(
        profile,
        link,
        "verify PIN",
        &c.verify_pin,
        Some(encoded.digits()),
        None,
    )
    .map(|_| ())
}

/// Why [`sign`] refused a card's signature.
const BAD_SIGNATURE: &str = "the card returned a signature that does not verify";

/// Signs a digest and checks the signature against the card's key before returning it.
pub fn sign(
    profile: &Profile,
    link: &mut dyn Link,
    digest: &[u8; 32],
    public_key: &[u8],
) -> Result<Vec<u8>, SignerError> {
    let sig = run(
        profile,
        link,
        "sign",
        &profile.commands.sign,
        None,
        Some(digest),
    )?;
    if sig.len() != profile.signature_len || !verify_ed25519(public_key, digest, &sig) {
        return Err(SignerError::NoCard(BAD_SIGNATURE.into()));
    }
    Ok(sig)
}

/// A link that remembers its last failure, so the signer knows a failed exchange from a card
/// that answered with an error status.
struct Tracked {
    inner: Box<dyn Link>,
    failed: Option<LinkError>,
}

impl Link for Tracked {
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, LinkError> {
        let r = self.inner.transmit(command);
        if let Err(e) = &r {
            self.failed = Some(e.clone());
        }
        r
    }
}

struct Session {
    link: Tracked,
    reader: String,
    identity: SignerIdentity,
    verified: bool,
    blocked: bool,
    /// Set when the card returned a signature that does not verify with its own public key:
    /// it is not asked again (a broken card, or not the card it says it is) until it is put in
    /// again. The signer then reports no usable card (201) with this reason.
    broken: Option<String>,
}

/// What status reports see; never waits for the card.
#[derive(Debug, Clone)]
struct View {
    state: SignerState,
    identity: Option<SignerIdentity>,
    reader: Option<String>,
    why: String,
    signatures: u64,
    sign_us_total: u64,
    last_sign_us: u64,
}

/// A card signer: the card's session, its observable state and the PIN rules.
pub struct CardSigner {
    backend: &'static str,
    profile: Profile,
    pin_file: Option<PathBuf>,
    session: Mutex<Option<Session>>,
    view: Mutex<View>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl CardSigner {
    /// A signer with no card yet; `backend` names the device layer in status reports.
    pub fn new(backend: &'static str, profile: Profile, pin_file: Option<PathBuf>) -> Self {
        CardSigner {
            backend,
            profile,
            pin_file,
            session: Mutex::new(None),
            view: Mutex::new(View {
                state: SignerState::Absent,
                identity: None,
                reader: None,
                why: "no card seen yet".into(),
                signatures: 0,
                sign_us_total: 0,
                last_sign_us: 0,
            }),
        }
    }

    /// The profile in use.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// True while a card is attached.
    pub fn attached(&self) -> bool {
        lock(&self.session).is_some()
    }

    fn set_view(&self, state: SignerState, why: impl Into<String>) {
        let mut v = lock(&self.view);
        let why = why.into();
        if v.state != state {
            tracing::info!(backend = self.backend, "signer: {state:?}: {why}");
        }
        v.state = state;
        v.why = why;
    }

    /// A card appeared in `reader`: open it, and give it the PIN from the PIN file when the card
    /// shows all its tries (so a wrong file costs at most one try, never the card).
    pub fn attach(&self, link: Box<dyn Link>, reader: &str) {
        let mut session = lock(&self.session);
        *session = None;
        let mut link = Tracked {
            inner: link,
            failed: None,
        };
        let opened = open(&self.profile, &mut link);
        let opened = match opened {
            Ok(o) => o,
            Err(e) => {
                let state = match &e {
                    SignerError::Incompatible(r) => SignerState::Incompatible { reason: r.clone() },
                    SignerError::Blocked => SignerState::Blocked,
                    _ => SignerState::Absent,
                };
                {
                    let mut v = lock(&self.view);
                    v.reader = Some(reader.to_owned());
                    v.identity = None;
                }
                self.set_view(state, format!("card in {reader}: {e}"));
                return;
            }
        };
        let id = opened.identity.id.clone();
        {
            let mut v = lock(&self.view);
            v.identity = Some(opened.identity.clone());
            v.reader = Some(reader.to_owned());
        }
        let mut s = Session {
            link,
            reader: reader.to_owned(),
            identity: opened.identity,
            verified: false,
            blocked: false,
            broken: None,
        };
        match opened.pin {
            PinStatus::Verified => {
                s.verified = true;
                self.set_view(SignerState::Ready, format!("card {id} in {reader}"));
            }
            PinStatus::Blocked => {
                s.blocked = true;
                self.set_view(
                    SignerState::Blocked,
                    format!("card {id} in {reader} is blocked"),
                );
            }
            PinStatus::Needed(tries) => {
                self.set_view(
                    SignerState::PinRequired { tries_left: tries },
                    format!("card {id} in {reader} waits for its PIN"),
                );
                if tries == Some(self.profile.pin.max_tries)
                    && let Some(pin) = self.pin_from_file()
                {
                    let r = self.verify_in(&mut s, &pin);
                    match r {
                        Ok(_) => tracing::info!("signer: PIN from the PIN file accepted"),
                        Err(e) => tracing::error!(
                            "signer: the PIN file's PIN was refused ({e}); it will not be tried again for this card until a correct PIN is given"
                        ),
                    }
                } else if self.pin_file.is_some() {
                    tracing::warn!(
                        "signer: the card does not show all its PIN tries; the PIN file is not used (give the PIN with `fdmctl vsc pin`)"
                    );
                }
            }
        }
        *session = Some(s);
    }

    /// The card or its reader went away.
    pub fn detach(&self, why: &str) {
        let had = lock(&self.session).take().is_some();
        let mut v = lock(&self.view);
        if had || v.state != SignerState::Absent || v.why != why {
            if had {
                tracing::warn!(backend = self.backend, "signer: card gone: {why}");
            }
            v.state = SignerState::Absent;
            v.why = why.to_owned();
            v.identity = None;
        }
    }

    fn pin_from_file(&self) -> Option<Pin> {
        let path = self.pin_file.as_ref()?;
        match read_pin_file(path) {
            Ok(pin) => Some(pin),
            Err(e) => {
                tracing::error!("signer: PIN file {}: {e}", path.display());
                None
            }
        }
    }

    fn verify_in(&self, s: &mut Session, pin: &Pin) -> Result<SignerState, SignerError> {
        if s.blocked {
            return Err(SignerError::Blocked);
        }
        let id = s.identity.id.clone();
        match verify_pin(&self.profile, &mut s.link, pin) {
            Ok(()) => {
                s.verified = true;
                self.set_view(SignerState::Ready, format!("card {id} in {}", s.reader));
                Ok(SignerState::Ready)
            }
            Err(e) => {
                self.after_error(s, &e);
                Err(e)
            }
        }
    }

    /// The card signed wrongly: it signs nothing more until it is put in again.
    fn mark_broken(&self, s: &mut Session) {
        let why = format!(
            "card {} in {} is broken: {BAD_SIGNATURE} with its own public key; replace it",
            s.identity.id, s.reader
        );
        tracing::error!(backend = self.backend, "signer: {why}");
        s.broken = Some(why.clone());
        self.set_view(SignerState::Absent, why);
    }

    /// Updates the session and view after a failed exchange.
    fn after_error(&self, s: &mut Session, e: &SignerError) {
        let id = s.identity.id.clone();
        match e {
            SignerError::WrongPin { tries_left } => {
                s.verified = false;
                self.set_view(
                    SignerState::PinRequired {
                        tries_left: *tries_left,
                    },
                    format!("card {id}: wrong PIN"),
                );
            }
            SignerError::PinRequired => {
                s.verified = false;
                self.set_view(
                    SignerState::PinRequired { tries_left: None },
                    format!("card {id} asks for its PIN again"),
                );
            }
            SignerError::Blocked => {
                s.verified = false;
                s.blocked = true;
                self.set_view(SignerState::Blocked, format!("card {id} is blocked"));
            }
            _ => {}
        }
    }

    /// Runs `f` on the attached card; a link failure detaches it (the monitor re-attaches when
    /// the card comes back).
    fn with_session<R>(
        &self,
        f: impl FnOnce(&mut Session) -> Result<R, SignerError>,
    ) -> Result<R, SignerError> {
        let mut guard = lock(&self.session);
        let Some(s) = guard.as_mut() else {
            return Err(self.error_from_view());
        };
        s.link.failed = None;
        let r = f(s);
        match s.link.failed.take() {
            Some(LinkError::Gone(why)) => {
                // The card, its reader or the PC/SC service is gone.
                *guard = None;
                drop(guard);
                self.detach(&why);
            }
            Some(LinkError::Reset) => {
                // Someone reset the card: it forgot its PIN.
                s.verified = false;
                let id = s.identity.id.clone();
                self.set_view(
                    SignerState::PinRequired { tries_left: None },
                    format!("card {id} was reset and needs its PIN again"),
                );
            }
            None => {}
        }
        r
    }

    fn error_from_view(&self) -> SignerError {
        let v = lock(&self.view);
        match &v.state {
            SignerState::Ready | SignerState::Absent => SignerError::NoCard(v.why.clone()),
            SignerState::PinRequired { .. } => SignerError::PinRequired,
            SignerState::Blocked => SignerError::Blocked,
            SignerState::Incompatible { reason } => SignerError::Incompatible(reason.clone()),
        }
    }
}

/// Checks a PIN file as [`read_pin_file`] does before reading it (and `fdmd check-config`
/// does): it exists and is readable by its owner only.
pub fn check_pin_file(path: &std::path::Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(format!(
            "readable by group or others (mode {:o}); it must be 0600 or 0400",
            meta.permissions().mode() & 0o777
        ));
    }
    Ok(())
}

/// Reads a PIN file: it must be readable by its owner only.
pub fn read_pin_file(path: &std::path::Path) -> Result<Pin, String> {
    check_pin_file(path)?;
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    Pin::parse(&text)
}

impl Signer for CardSigner {
    fn identity(&self) -> Result<SignerIdentity, SignerError> {
        let v = lock(&self.view);
        match (&v.state, &v.identity) {
            (SignerState::Ready, Some(id)) => Ok(id.clone()),
            _ => {
                drop(v);
                Err(self.error_from_view())
            }
        }
    }

    fn state(&self) -> SignerState {
        lock(&self.view).state.clone()
    }

    fn sign(&self, expected_id: &str, digest: &[u8; 32]) -> Result<Vec<u8>, SignerError> {
        let started = Instant::now();
        let result = self.with_session(|s| {
            if s.identity.id != expected_id {
                return Err(SignerError::IdentityChanged {
                    expected: expected_id.to_owned(),
                    found: s.identity.id.clone(),
                });
            }
            if let Some(why) = &s.broken {
                return Err(SignerError::NoCard(why.clone()));
            }
            if s.blocked {
                return Err(SignerError::Blocked);
            }
            if !s.verified {
                return Err(SignerError::PinRequired);
            }
            let r = sign(&self.profile, &mut s.link, digest, &s.identity.public_key);
            match &r {
                Err(SignerError::NoCard(why)) if why == BAD_SIGNATURE => self.mark_broken(s),
                Err(e) => self.after_error(s, e),
                Ok(_) => {}
            }
            r
        });
        if result.is_ok() {
            let us = started.elapsed().as_micros() as u64;
            let mut v = lock(&self.view);
            v.signatures += 1;
            v.sign_us_total += us;
            v.last_sign_us = us;
        }
        result
    }

    fn submit_pin(&self, pin: &Pin) -> Result<SignerState, SignerError> {
        self.profile
            .encode_pin(pin)
            .map_err(SignerError::BadPinFormat)?;
        // Always asked to the card, even when it has its PIN already: "PIN accepted" means the
        // card accepted this PIN (a wrong one costs a try and the card's verified state, as
        // the card decides).
        self.with_session(|s| {
            if let Some(why) = &s.broken {
                return Err(SignerError::NoCard(why.clone()));
            }
            self.verify_in(s, pin)
        })
    }

    fn details(&self) -> Map<String, Value> {
        let v = lock(&self.view).clone();
        let mut m = Map::new();
        m.insert("backend".into(), json!(self.backend));
        m.insert("profile".into(), json!(self.profile.name));
        m.insert("reader".into(), json!(v.reader));
        m.insert("card_id".into(), json!(v.identity.as_ref().map(|i| &i.id)));
        m.insert("detail".into(), json!(v.why));
        m.insert("signatures".into(), json!(v.signatures));
        m.insert(
            "sign_ms_avg".into(),
            json!(
                v.sign_us_total
                    .checked_div(v.signatures)
                    .map_or(0.0, |us| us as f64 / 1000.0)
            ),
        );
        m.insert("sign_ms_last".into(), json!(v.last_sign_us as f64 / 1000.0));
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer as _, SigningKey};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// A card in Rust implementing the built-in profile, for unit tests of the generic logic.
    struct FakeCard {
        key: SigningKey,
        pin: Vec<u8>,
        tries: u8,
        verified: bool,
        pulled: Arc<AtomicBool>,
        /// Signs with another key than the one it shows.
        signs_wrongly: bool,
    }

    impl Link for FakeCard {
        fn transmit(&mut self, c: &[u8]) -> Result<Vec<u8>, LinkError> {
            if self.pulled.load(Ordering::SeqCst) {
                return Err(LinkError::Gone("card removed".into()));
            }
            let sw = |d: &[u8], sw: u16| [d, &sw.to_be_bytes()].concat();
            Ok(match (c[0], c[1], c[3]) {
                (0x00, 0xA4, _) => sw(&[], 0x9000),
                (0x80, 0xCA, 0x01) => sw(b"0000000196-860", 0x9000),
                (0x80, 0xCA, 0x02) => sw(self.key.verifying_key().as_bytes(), 0x9000),
                (0x00, 0x20, _) if self.tries == 0 => sw(&[], 0x6983),
                (0x00, 0x20, _) if c.len() == 4 => {
                    if self.verified {
                        sw(&[], 0x9000)
                    } else {
                        sw(&[], 0x63C0 | self.tries as u16)
                    }
                }
                (0x00, 0x20, _) => {
                    if c[5..] == self.pin[..] {
                        self.tries = 3;
                        self.verified = true;
                        sw(&[], 0x9000)
                    } else {
                        self.tries -= 1;
                        self.verified = false;
                        sw(&[], 0x63C0 | self.tries as u16)
                    }
                }
                (0x80, 0x2A, _) if !self.verified => sw(&[], 0x6982),
                (0x80, 0x2A, _) if self.signs_wrongly => sw(
                    &SigningKey::from_bytes(&[6; 32]).sign(&c[5..37]).to_bytes(),
                    0x9000,
                ),
                (0x80, 0x2A, _) => sw(&self.key.sign(&c[5..37]).to_bytes(), 0x9000),
                _ => sw(&[], 0x6D00),
            })
        }
    }

    fn card(pulled: &Arc<AtomicBool>) -> Box<dyn Link> {
        Box::new(FakeCard {
            key: SigningKey::from_bytes(&[5; 32]),
            pin: b"12345\xFF\xFF\xFF".to_vec(),
            tries: 3,
            verified: false,
            pulled: pulled.clone(),
            signs_wrongly: false,
        })
    }

    #[test]
    fn a_card_that_signs_wrongly_is_marked_broken_with_the_reason() {
        let pulled = Arc::new(AtomicBool::new(false));
        let s = Arc::new(CardSigner::new("test", Profile::builtin(), None));
        s.attach(
            Box::new(FakeCard {
                key: SigningKey::from_bytes(&[5; 32]),
                pin: b"12345\xFF\xFF\xFF".to_vec(),
                tries: 3,
                verified: false,
                pulled: pulled.clone(),
                signs_wrongly: true,
            }),
            "Reader 0",
        );
        assert_eq!(
            s.submit_pin(&Pin::parse("12345").unwrap()),
            Ok(SignerState::Ready)
        );
        let id = s.identity().unwrap();
        let status = crate::status::Status::new(
            s.clone(),
            Arc::new(crate::journal::JournalStats::default()),
        );
        assert!(
            !status
                .problems()
                .iter()
                .any(|p| p.code == crate::status::ProblemCode::NoSigningCard)
        );
        assert!(matches!(
            s.sign(&id.id, &[1; 32]),
            Err(SignerError::NoCard(_))
        ));
        // No longer ready: state, identity and status say why; nothing more is signed, and a
        // PIN does not make it ready again.
        assert_eq!(s.state(), SignerState::Absent);
        let Err(SignerError::NoCard(why)) = s.identity() else {
            panic!("identity of a broken card: {:?}", s.identity());
        };
        assert!(
            why.contains("is broken") && why.contains("does not verify"),
            "{why}"
        );
        assert!(
            status
                .problems()
                .iter()
                .any(|p| p.code == crate::status::ProblemCode::NoSigningCard
                    && p.message().starts_with("no signing card (201)")
                    && p.message().contains("is broken")),
            "{:?}",
            status.problems()
        );
        assert_eq!(
            s.sign(&id.id, &[2; 32]),
            Err(SignerError::NoCard(why.clone()))
        );
        assert_eq!(
            s.submit_pin(&Pin::parse("12345").unwrap()),
            Err(SignerError::NoCard(why))
        );
        assert_eq!(s.state(), SignerState::Absent);
        // Put in again (a good card): it is asked afresh.
        s.detach("card removed");
        s.attach(card(&pulled), "Reader 0");
        assert_eq!(
            s.submit_pin(&Pin::parse("12345").unwrap()),
            Ok(SignerState::Ready)
        );
        assert!(s.sign("0000000196-860", &[1; 32]).is_ok());
    }

    #[test]
    fn a_pin_given_to_a_card_that_has_one_is_asked_to_the_card() {
        let pulled = Arc::new(AtomicBool::new(false));
        let s = CardSigner::new("test", Profile::builtin(), None);
        s.attach(card(&pulled), "Reader 0");
        assert_eq!(
            s.submit_pin(&Pin::parse("12345").unwrap()),
            Ok(SignerState::Ready)
        );
        // A wrong PIN now is not "accepted": the card refuses it.
        assert_eq!(
            s.submit_pin(&Pin::parse("11111").unwrap()),
            Err(SignerError::WrongPin {
                tries_left: Some(2)
            })
        );
        assert_eq!(
            s.submit_pin(&Pin::parse("12345").unwrap()),
            Ok(SignerState::Ready)
        );
        assert_eq!(s.state(), SignerState::Ready);
    }

    #[test]
    fn pin_then_sign_then_pulled() {
        let pulled = Arc::new(AtomicBool::new(false));
        let s = CardSigner::new("test", Profile::builtin(), None);
        assert!(matches!(s.identity(), Err(SignerError::NoCard(_))));
        s.attach(card(&pulled), "Reader 0");
        assert_eq!(
            s.state(),
            SignerState::PinRequired {
                tries_left: Some(3)
            }
        );
        assert_eq!(s.identity(), Err(SignerError::PinRequired));
        assert_eq!(
            s.sign("0000000196-860", &[1; 32]),
            Err(SignerError::PinRequired)
        );
        assert!(matches!(
            s.submit_pin(&Pin::parse("12").unwrap()),
            Err(SignerError::BadPinFormat(_))
        ));
        assert_eq!(
            s.submit_pin(&Pin::parse("11111").unwrap()),
            Err(SignerError::WrongPin {
                tries_left: Some(2)
            })
        );
        assert_eq!(
            s.state(),
            SignerState::PinRequired {
                tries_left: Some(2)
            }
        );
        assert_eq!(
            s.submit_pin(&Pin::parse("12345").unwrap()),
            Ok(SignerState::Ready)
        );
        let id = s.identity().unwrap();
        assert_eq!(id.id, "0000000196-860");
        let sig = s.sign(&id.id, &[1; 32]).unwrap();
        assert!(verify_ed25519(&id.public_key, &[1; 32], &sig));
        assert!(matches!(
            s.sign("0000000000-000", &[1; 32]),
            Err(SignerError::IdentityChanged { .. })
        ));
        pulled.store(true, Ordering::SeqCst);
        assert!(matches!(
            s.sign(&id.id, &[1; 32]),
            Err(SignerError::NoCard(_))
        ));
        assert_eq!(s.state(), SignerState::Absent);
        assert!(!s.attached());
        // Put back: the PIN is needed again.
        pulled.store(false, Ordering::SeqCst);
        s.attach(card(&pulled), "Reader 0");
        assert_eq!(
            s.state(),
            SignerState::PinRequired {
                tries_left: Some(3)
            }
        );
    }

    #[test]
    fn three_wrong_pins_block_the_card() {
        let pulled = Arc::new(AtomicBool::new(false));
        let s = CardSigner::new("test", Profile::builtin(), None);
        s.attach(card(&pulled), "Reader 0");
        let wrong = Pin::parse("99999").unwrap();
        assert_eq!(
            s.submit_pin(&wrong),
            Err(SignerError::WrongPin {
                tries_left: Some(2)
            })
        );
        assert_eq!(
            s.submit_pin(&wrong),
            Err(SignerError::WrongPin {
                tries_left: Some(1)
            })
        );
        assert_eq!(s.submit_pin(&wrong), Err(SignerError::Blocked));
        assert_eq!(s.state(), SignerState::Blocked);
        assert_eq!(
            s.submit_pin(&Pin::parse("12345").unwrap()),
            Err(SignerError::Blocked)
        );
        assert_eq!(s.identity(), Err(SignerError::Blocked));
    }

    #[test]
    fn the_pin_file_is_used_only_with_all_tries_left() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("vsc-pin");
        std::fs::write(&file, "99999\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let pulled = Arc::new(AtomicBool::new(false));
        let s = CardSigner::new("test", Profile::builtin(), Some(file.clone()));
        s.attach(card(&pulled), "Reader 0");
        // Wrong file: one try spent, never a second one.
        assert_eq!(
            s.state(),
            SignerState::PinRequired {
                tries_left: Some(2)
            }
        );
        let mut c = FakeCard {
            key: SigningKey::from_bytes(&[5; 32]),
            pin: b"12345\xFF\xFF\xFF".to_vec(),
            tries: 2,
            verified: false,
            pulled: pulled.clone(),
            signs_wrongly: false,
        };
        let _ = c.transmit(&[0, 0xA4, 4, 0x0C]);
        s.attach(Box::new(c), "Reader 0");
        assert_eq!(
            s.state(),
            SignerState::PinRequired {
                tries_left: Some(2)
            }
        );
        std::fs::write(&file, "12345\n").unwrap();
        s.attach(card(&pulled), "Reader 0");
        assert_eq!(s.state(), SignerState::Ready);
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(read_pin_file(&file).is_err());
    }
}
