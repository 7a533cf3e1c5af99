//! `[signer] backend = "fdm-v1"` (docs/fdm-v1-backend.md): before fdmd journals a fiscal event,
//! a certified FDM v1 box signs it with an `H` request. Each request's sequence number, ticket
//! number and data are reserved (durably, in `fdm-v1-requests.sqlite`) before the first send, so
//! a timeout, a lost answer or a crash resends the very same request with its retry counter
//! raised (reference §1.7): the box answers 102 with its first signature, never a second event
//! for one order. The box's answer becomes the `fdm_v1` member of the record body; the journal
//! stays hash-chained and signed by fdmd's own key.

use super::codec::{self, HashAndSign};
use super::link::{Link, LinkError};
use crate::config::{FdmV1SignerSection, RateAmounts};
use crate::fiscal::order::Purpose;
use crate::fiscal::vat::VatLetter;
use crate::fiscal::{FdmCode, Order, Sale};
use crate::status::{Problem, ProblemCode};
use rusqlite::{OptionalExtension, params};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// The FDM v1 box fdmd signs with.
pub struct Backend {
    section: FdmV1SignerSection,
    /// The link and the reservations: one exchange with the box at a time.
    inner: Arc<Mutex<Inner>>,
    health: Arc<Mutex<Health>>,
}

struct Inner {
    link: Link,
    db: rusqlite::Connection,
}

/// What the last exchanges showed, for the status problems (`docs/status.md`).
#[derive(Debug, Default)]
struct Health {
    /// Why the last request got no signature, when the cause is the box's or the link's.
    failure: Option<Problem>,
    /// A warning on the last signed event (memory 90 % full).
    warning: Option<Problem>,
}

/// Why an event got no signature from the box: the code of the error receipt and its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// FDM result code of the error receipt.
    pub code: FdmCode,
    /// What the restaurant is told.
    pub message: String,
}

/// A reserved request: what is sent at every attempt.
#[derive(Debug, Clone)]
struct Reservation {
    seq: u8,
    ticket: u64,
    data: String,
    sends: u32,
}

impl Backend {
    /// Opens the reservations (`fdm-v1-requests.sqlite` in `data_dir`); the link is opened at
    /// the first request.
    pub fn open(section: &FdmV1SignerSection, data_dir: &Path) -> anyhow::Result<Self> {
        let db = rusqlite::Connection::open(data_dir.join("fdm-v1-requests.sqlite"))?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "FULL")?;
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS requests (
                register TEXT NOT NULL,
                request_id TEXT NOT NULL,
                seq INTEGER NOT NULL,
                ticket INTEGER NOT NULL,
                data TEXT NOT NULL,
                sends INTEGER NOT NULL DEFAULT 0,
                uncertain INTEGER NOT NULL DEFAULT 0,
                PRIMARY KEY (register, request_id)
            );
            CREATE TABLE IF NOT EXISTS counters (
                name TEXT PRIMARY KEY,
                value INTEGER NOT NULL
            );",
        )?;
        let target = section
            .target()
            .ok_or_else(|| anyhow::anyhow!("signer.fdm-v1: set either address or device"))?;
        tracing::info!(
            "signing fiscal events with the FDM v1 box on {target} as ECR {} (and journal records with fdmd's own key)",
            section.ecr_id
        );
        Ok(Backend {
            section: section.clone(),
            inner: Arc::new(Mutex::new(Inner {
                link: Link::new(target, Duration::from_millis(section.timeout_ms)),
                db,
            })),
            health: Arc::new(Mutex::new(Health::default())),
        })
    }

    /// Has the box sign `order` (checked and completed, computed as `sale`) and answers the
    /// body member to journal.
    ///
    /// A clock-in or clock-out is preceded by an `I` request, as the certified Odoo driver did
    /// (reference §6): the box's identification goes into the member as `identification`.
    pub async fn sign(&self, order: &Order, sale: &Sale) -> Result<Value, Refusal> {
        let request = hash_and_sign(order, sale, &self.section)?;
        let (inner, health) = (self.inner.clone(), self.health.clone());
        let section = self.section.clone();
        let (register, request_id) = (order.register.clone(), order.request_id.clone());
        let clocking = matches!(order.purpose, Purpose::WorkIn | Purpose::WorkOut);
        tokio::task::spawn_blocking(move || {
            let mut inner = inner.lock().unwrap_or_else(PoisonError::into_inner);
            let identification = if clocking {
                match inner.identify() {
                    Ok(id) => Some(id),
                    Err(failure) => {
                        let result = Err(failure);
                        note(&health, &result);
                        return result;
                    }
                }
            } else {
                None
            };
            let mut result = inner.sign(&section, &register, &request_id, request);
            if let (Ok(Value::Object(member)), Some(id)) = (&mut result, identification) {
                member.insert(
                    "identification".into(),
                    json!({
                        "firmware": id.firmware,
                        "protocol": id.protocol,
                        "vsc_id": id.vsc_id,
                        "vsc_version": id.vsc_version,
                    }),
                );
            }
            note(&health, &result);
            result
        })
        .await
        .map_err(|e| Refusal {
            code: FdmCode::NotOperational,
            message: format!("FDM v1: {e}"),
        })?
        .map_err(|f| f.refusal)
    }

    /// Gives the box's card its PIN with a `P` request (after a 202); answers the box's code
    /// (001 accepted, 204 wrong PIN …). The PIN is 1 to 5 digits (sent zero-padded).
    pub async fn submit_pin(&self, pin: crate::signer::Pin) -> Result<FdmCode, Refusal> {
        if pin.digits().len() > 5 {
            return Err(Refusal {
                code: FdmCode::InvalidData,
                message: "the PIN of an FDM v1 box's card is at most 5 digits".into(),
            });
        }
        let inner = self.inner.clone();
        let health = self.health.clone();
        let work = tokio::task::spawn_blocking(move || {
            let mut inner = inner.lock().unwrap_or_else(PoisonError::into_inner);
            let seq = inner.next_seq().map_err(db_refusal)?;
            let mut message = codec::header(b'P', seq, 0).into_bytes();
            message.extend(std::iter::repeat_n(b'0', 5 - pin.digits().len()));
            message.extend_from_slice(pin.digits());
            drop(pin);
            let answer = inner.link.exchange(&message);
            message.fill(0);
            let answer = answer.map_err(|e| down(&e))?;
            let common = codec::parse_common(&answer).map_err(|e| Refusal {
                code: FdmCode::NotOperational,
                message: format!("FDM v1: {e} (fdm_v1_down)"),
            })?;
            let code = FdmCode::from_number(common.code).unwrap_or(FdmCode::Unspecified);
            if !code.is_error() {
                let mut h = health.lock().unwrap_or_else(PoisonError::into_inner);
                if h.failure.as_ref().map(|p| p.code) == Some(ProblemCode::FdmV1PinRequired) {
                    h.failure = None;
                }
            }
            Ok(code)
        });
        work.await.map_err(|e| Refusal {
            code: FdmCode::NotOperational,
            message: format!("FDM v1: {e}"),
        })?
    }

    /// Asks the box for its status (`S`): a box that does not answer, or answers with an error,
    /// is listed as a status problem before any order; an answer clears `fdm_v1_down`.
    pub async fn probe(&self) {
        let (inner, health) = (self.inner.clone(), self.health.clone());
        let work = tokio::task::spawn_blocking(move || {
            let mut inner = inner.lock().unwrap_or_else(PoisonError::into_inner);
            let seq = inner.next_seq().map_err(|e| e.to_string())?;
            let answer = inner
                .link
                .exchange(codec::header(b'S', seq, 0).as_bytes())
                .map_err(|e| e.to_string())?;
            codec::parse_common(&answer).map_err(|e| e.to_string())
        });
        let result = work.await.map_err(|e| e.to_string()).and_then(|r| r);
        let mut h = health.lock().unwrap_or_else(PoisonError::into_inner);
        match result {
            Ok(c) if c.code < 200 => {
                if h.failure.as_ref().map(|p| p.code) == Some(ProblemCode::FdmV1Down) {
                    h.failure = None;
                }
            }
            Ok(c) => {
                let code = if c.code == 202 || c.code == 204 {
                    ProblemCode::FdmV1PinRequired
                } else {
                    ProblemCode::FdmV1Refused
                };
                h.failure = Some(Problem::new(
                    code,
                    Some(format!("the box {} answers S with {:03}", c.fdm_id, c.code)),
                ));
            }
            Err(e) => {
                h.failure = Some(Problem::new(
                    ProblemCode::FdmV1Down,
                    Some(format!("FDM v1: {e}")),
                ));
            }
        }
    }

    /// Whether the last exchange left `fdm_v1_down` listed.
    pub fn is_down(&self) -> bool {
        let h = self.health.lock().unwrap_or_else(PoisonError::into_inner);
        h.failure.as_ref().map(|p| p.code) == Some(ProblemCode::FdmV1Down)
    }

    /// The status problems the box's last answers show (none while it signs without warnings).
    pub fn problems(&self) -> Vec<Problem> {
        let health = self.health.lock().unwrap_or_else(PoisonError::into_inner);
        health
            .failure
            .iter()
            .chain(&health.warning)
            .cloned()
            .collect()
    }
}

/// A failed signing and the status problem it shows, if the cause is not the event's.
struct Failure {
    refusal: Refusal,
    problem: Option<ProblemCode>,
}

fn db_refusal(e: rusqlite::Error) -> Refusal {
    Refusal {
        code: FdmCode::NotOperational,
        message: format!("FDM v1: reserving the request failed: {e}"),
    }
}

fn down(e: &LinkError) -> Refusal {
    Refusal {
        code: FdmCode::NotOperational,
        message: format!("FDM v1: {e} (fdm_v1_down)"),
    }
}

impl Inner {
    /// The next sequence number (`00`–`99`), kept across restarts.
    fn next_seq(&mut self) -> Result<u8, rusqlite::Error> {
        let tx = self.db.transaction()?;
        let last: Option<i64> = tx
            .query_row("SELECT value FROM counters WHERE name = 'seq'", [], |r| {
                r.get(0)
            })
            .optional()?;
        let next = last.map_or(0, |l| (l + 1) % 100);
        tx.execute(
            "INSERT INTO counters (name, value) VALUES ('seq', ?1)
             ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            params![next],
        )?;
        tx.commit()?;
        Ok(u8::try_from(next).unwrap_or(0))
    }

    /// The request's reservation: the one made at its first attempt, or a new one (the next
    /// sequence and ticket numbers, `request` as it is now), committed before the box is asked.
    fn reserve(
        &mut self,
        register: &str,
        request_id: &str,
        mut request: HashAndSign,
    ) -> Result<Reservation, Refusal> {
        let found = self
            .db
            .query_row(
                "SELECT seq, ticket, data, sends FROM requests WHERE register = ?1 AND request_id = ?2",
                params![register, request_id],
                |r| {
                    Ok(Reservation {
                        seq: r.get::<_, u8>(0)?,
                        ticket: r.get::<_, i64>(1)?.try_into().unwrap_or(0),
                        data: r.get(2)?,
                        sends: r.get(3)?,
                    })
                },
            )
            .optional()
            .map_err(db_refusal)?;
        if let Some(r) = found {
            return Ok(r);
        }
        let seq = self.next_seq().map_err(db_refusal)?;
        let ticket: i64 = self
            .db
            .query_row(
                "SELECT COALESCE(MAX(ticket), 0) + 1 FROM requests",
                [],
                |r| r.get(0),
            )
            .map_err(db_refusal)?;
        request.ticket = u64::try_from(ticket).unwrap_or(0);
        let data = request.data().map_err(|e| Refusal {
            code: FdmCode::InvalidData,
            message: e.to_string(),
        })?;
        self.db
            .execute(
                "INSERT INTO requests (register, request_id, seq, ticket, data) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![register, request_id, seq, ticket, data],
            )
            .map_err(db_refusal)?;
        Ok(Reservation {
            seq,
            ticket: request.ticket,
            data,
            sends: 0,
        })
    }

    fn set(
        &self,
        register: &str,
        request_id: &str,
        column: &str,
        value: i64,
    ) -> Result<(), Refusal> {
        self.db
            .execute(
                &format!(
                    "UPDATE requests SET {column} = ?3 WHERE register = ?1 AND request_id = ?2"
                ),
                params![register, request_id, value],
            )
            .map(drop)
            .map_err(db_refusal)
    }

    /// Asks the box who it is (`I`, one attempt): a box that does not answer is down, an error
    /// code refuses as for an `H`.
    fn identify(&mut self) -> Result<codec::Identification, Failure> {
        let seq = self.next_seq().map_err(|e| Failure {
            refusal: db_refusal(e),
            problem: None,
        })?;
        let answer = self
            .link
            .exchange(codec::header(b'I', seq, 0).as_bytes())
            .map_err(|e| Failure {
                refusal: down(&e),
                problem: Some(ProblemCode::FdmV1Down),
            })?;
        let common = codec::parse_common(&answer).map_err(invalid_answer)?;
        if FdmCode::from_number(common.code)
            .unwrap_or(FdmCode::Unspecified)
            .is_error()
        {
            return Err(refused(&common, "identify itself"));
        }
        codec::parse_identification(&answer).map_err(invalid_answer)
    }

    fn sign(
        &mut self,
        section: &FdmV1SignerSection,
        register: &str,
        request_id: &str,
        request: HashAndSign,
    ) -> Result<Value, Failure> {
        let fail = |refusal: Refusal, problem: Option<ProblemCode>| Failure { refusal, problem };
        let mut r = self
            .reserve(register, request_id, request)
            .map_err(|e| fail(e, None))?;
        let mut last_error = None;
        for attempt in 0..section.attempts {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(section.retry_delay_ms));
            }
            // The retry counter of this send, durable before it leaves (a crash then resends
            // with the next one).
            let retry = u8::try_from(r.sends.min(9)).unwrap_or(9);
            r.sends += 1;
            self.set(register, request_id, "sends", i64::from(r.sends))
                .map_err(|e| fail(e, None))?;
            let message = format!("{}{}", codec::header(b'H', r.seq, retry), r.data);
            match self.link.exchange(message.as_bytes()) {
                Ok(answer) => return self.answered(register, request_id, &r, &answer),
                Err(e) => {
                    if self.link.acked() {
                        // The box took the request: it may have signed it. Only this very
                        // request may be sent for this order from now on.
                        self.set(register, request_id, "uncertain", 1)
                            .map_err(|e| fail(e, None))?;
                    }
                    tracing::warn!(
                        "FDM v1 H{:02} (retry {retry}) for {register}/{request_id}: {e}",
                        r.seq
                    );
                    last_error = Some(e);
                }
            }
        }
        self.release_if_never_taken(register, request_id);
        let message = match last_error {
            Some(e) => format!("FDM v1: {e} (fdm_v1_down)"),
            None => "FDM v1: no attempt was made (attempts = 0) (fdm_v1_down)".into(),
        };
        Err(fail(
            Refusal {
                code: FdmCode::NotOperational,
                message,
            },
            Some(ProblemCode::FdmV1Down),
        ))
    }

    /// Frees the reservation of a request the box never took (no ACK to any send, or an error
    /// answer each time), so the next order gets its ticket number: no gap.
    fn release_if_never_taken(&self, register: &str, request_id: &str) {
        let r = self.db.execute(
            "DELETE FROM requests WHERE register = ?1 AND request_id = ?2 AND uncertain = 0
             AND ticket = (SELECT MAX(ticket) FROM requests)",
            params![register, request_id],
        );
        if let Err(e) = r {
            tracing::warn!("FDM v1: releasing the reservation of {register}/{request_id}: {e}");
        }
    }

    fn answered(
        &mut self,
        register: &str,
        request_id: &str,
        r: &Reservation,
        answer: &[u8],
    ) -> Result<Value, Failure> {
        let invalid = invalid_answer;
        let common = codec::parse_common(answer).map_err(invalid)?;
        let code = FdmCode::from_number(common.code).unwrap_or(FdmCode::Unspecified);
        if code.is_error() {
            // Taken before (a lost answer): the reservation stays for the register's resend.
            self.release_if_never_taken(register, request_id);
            return Err(refused(&common, "sign"));
        }
        let signed = codec::parse_signed(answer).map_err(invalid)?;
        if signed.signature.is_empty() {
            return Err(invalid(codec::ResponseError::Field(
                "a success without a signature".into(),
            )));
        }
        Ok(json!({
            "fdm_id": common.fdm_id,
            "vsc_id": signed.vsc_id,
            "fdm_date": signed.date,
            "fdm_time": signed.time,
            "label": signed.label,
            "event_counter": signed.event_counter,
            "total_counter": signed.total_counter,
            "signature": signed.signature,
            "code": common.code,
            "sequence": r.seq,
            "ecr_ticket_number": r.ticket,
            "request": r.data,
        }))
    }
}

/// Keeps what this exchange says of the box's health.
fn note(health: &Mutex<Health>, result: &Result<Value, Failure>) {
    let mut h = health.lock().unwrap_or_else(PoisonError::into_inner);
    match result {
        Ok(member) => {
            h.failure = None;
            h.warning = (member["code"] == json!(101)).then(|| {
                Problem::new(
                    ProblemCode::FdmV1MemoryNearlyFull,
                    Some("the FDM v1 box answered 101: its memory is 90 % full".into()),
                )
            });
        }
        Err(f) => {
            if let Some(code) = f.problem {
                h.failure = Some(Problem::new(code, Some(f.refusal.message.clone())));
            }
        }
    }
}

/// An answer without the reference's form: the box is treated as down.
fn invalid_answer(e: codec::ResponseError) -> Failure {
    Failure {
        refusal: Refusal {
            code: FdmCode::NotOperational,
            message: format!("FDM v1: {e} (fdm_v1_down)"),
        },
        problem: Some(ProblemCode::FdmV1Down),
    }
}

/// The box answered an error code to a request (`what`: "sign", "identify itself").
fn refused(common: &codec::Common, what: &str) -> Failure {
    let code = FdmCode::from_number(common.code).unwrap_or(FdmCode::Unspecified);
    let problem = match code {
        FdmCode::PinRequired | FdmCode::InvalidPin => Some(ProblemCode::FdmV1PinRequired),
        FdmCode::InvalidData | FdmCode::UnknownIdentifier => None,
        _ => Some(ProblemCode::FdmV1Refused),
    };
    let hint = problem.map(|p| format!(" ({p})")).unwrap_or_default();
    Failure {
        refusal: Refusal {
            code,
            message: format!(
                "the FDM v1 box {} refused to {what} ({:03}){hint}",
                common.fdm_id, common.code
            ),
        },
        problem,
    }
}

fn cents(amount: Decimal) -> Result<u64, Refusal> {
    (amount.abs() * Decimal::ONE_HUNDRED)
        .round()
        .to_u64()
        .ok_or_else(|| Refusal {
            code: FdmCode::InvalidData,
            message: format!("FDM v1: the amount {amount} does not fit the H request"),
        })
}

/// The `H` request of an order (its ticket number is set at the reservation).
fn hash_and_sign(
    order: &Order,
    sale: &Sale,
    section: &FdmV1SignerSection,
) -> Result<HashAndSign, Refusal> {
    let mut rate_cents = [0u64; 4];
    for v in &sale.vat {
        let slot = match v.letter {
            VatLetter::A => 0,
            VatLetter::B => 1,
            VatLetter::C => 2,
            // X (outside the scope of VAT) does not exist in v1: 0 %, with D.
            VatLetter::D | VatLetter::X => 3,
        };
        let amount = match section.rate_amounts {
            RateAmounts::Vat => v.vat,
            RateAmounts::Base => v.base,
        };
        rate_cents[slot] += cents(amount)?;
    }
    let now = chrono::Local::now();
    Ok(HashAndSign {
        date: now.format("%Y%m%d").to_string(),
        time: now.format("%H%M%S").to_string(),
        operator: order.operator.clone(),
        ecr_id: section.ecr_id.clone(),
        ticket: 0,
        label: sale.label.to_string(),
        total_cents: cents(sale.total)?,
        rate_cents,
        plu: sale.plu_hash.clone(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn order(id: &str) -> (Order, Sale) {
        let json = format!(
            r#"{{"request_id": "{id}", "operator": "85073003328", "event_type": "normal",
                "lines": [{{"description": "Cola", "quantity": 1, "unit_price": "2.20", "vat": "A"}},
                          {{"description": "Snack", "quantity": 1, "unit_price": "11.90", "vat": "B"}}]}}"#
        );
        let o = Order::from_json("till-1", json.as_bytes()).unwrap();
        let s = Sale::compute(&o).unwrap();
        (o, s)
    }

    #[test]
    fn the_h_request_of_the_efsta_ticket() {
        let section = FdmV1SignerSection {
            ecr_id: "CFDM0010000001".into(),
            ..FdmV1SignerSection::default()
        };
        let (o, s) = order("a");
        let mut h = hash_and_sign(&o, &s, &section).unwrap();
        h.ticket = 7;
        assert_eq!(h.label, "NS");
        assert_eq!(h.total_cents, 1410);
        assert_eq!(h.rate_cents, [38, 128, 0, 0], "VAT per rate");
        assert!(h.plu.ends_with("797bc46f"));
        let base = FdmV1SignerSection {
            rate_amounts: RateAmounts::Base,
            ..section
        };
        let h = hash_and_sign(&o, &s, &base).unwrap();
        assert_eq!(h.rate_cents, [182, 1062, 0, 0], "net base per rate");
    }

    #[test]
    fn a_request_keeps_its_reservation_across_restarts_and_a_refused_one_is_released() {
        let dir = tempfile::tempdir().unwrap();
        let section = FdmV1SignerSection {
            address: Some("127.0.0.1:9".into()),
            ecr_id: "CFDM0010000001".into(),
            ..FdmV1SignerSection::default()
        };
        let (o, s) = order("a");
        let h = || hash_and_sign(&o, &s, &section).unwrap();
        let first = {
            let b = Backend::open(&section, dir.path()).unwrap();
            let mut inner = b.inner.lock().unwrap();
            let first = inner.reserve("till-1", "a", h()).unwrap();
            assert_eq!((first.seq, first.ticket), (0, 1));
            assert_eq!(inner.reserve("till-1", "a", h()).unwrap().data, first.data);
            let second = inner.reserve("till-1", "b", h()).unwrap();
            assert_eq!((second.seq, second.ticket), (1, 2));
            // "b" was never taken by the box: released, its ticket number goes to the next.
            inner.release_if_never_taken("till-1", "b");
            first
        };
        let b = Backend::open(&section, dir.path()).unwrap();
        let mut inner = b.inner.lock().unwrap();
        let again = inner.reserve("till-1", "a", h()).unwrap();
        assert_eq!(
            (again.seq, again.ticket, again.data),
            (first.seq, first.ticket, first.data)
        );
        let c = inner.reserve("till-1", "c", h()).unwrap();
        assert_eq!((c.seq, c.ticket), (2, 2));
    }
}
