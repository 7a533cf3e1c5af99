//! A journal written by the real daemon code (`fdmd::assembly`), and its exports.

use fdmd::assembly::{AppBuilder, BlockingApp};
use fdmd::journal::{Journal, JournalConfig};
use fdmd::reports::{ReportKind, ReportRequest};
use fdmd::service::{Numbering, Receipt, SeriesScope};
use fdmd::signer::{Signer, SoftwareSigner};
use fdmd_core::journal::export;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A clock the test moves by hand (FDM times of the box's records).
pub struct TestClock(Mutex<chrono::DateTime<chrono::FixedOffset>>);

impl fdmd::journal::Clock for TestClock {
    fn now(&self) -> chrono::DateTime<chrono::FixedOffset> {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl TestClock {
    /// Moves the clock on.
    pub fn advance(&self, d: chrono::Duration) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) += d;
    }
}

/// FDM production number of the test boxes.
pub const FDM_ID: &str = "DEVFDMD0001";
/// Operator INSZ.
pub const OPERATOR: &str = "85073003328";

/// A box: a journal in a directory, the daemon's registration path on it.
pub struct FdmBox {
    pub dir: PathBuf,
    pub seed: [u8; 32],
    app: Option<BlockingApp>,
    journal: Option<Journal>,
    n: u64,
    /// The box's clock: starts at 2026-11-02 08:00 (Brussels), moves 1 s per order.
    pub clock: Arc<TestClock>,
    /// Receipts of the signed orders.
    pub receipts: Vec<Value>,
}

impl FdmBox {
    /// A new journal in `dir` signed with the development signer of `seed`.
    pub fn new(dir: &Path, seed: [u8; 32]) -> FdmBox {
        std::fs::create_dir_all(dir).expect("box dir");
        let mut b = FdmBox {
            dir: dir.to_owned(),
            seed,
            app: None,
            journal: None,
            n: 0,
            clock: Arc::new(TestClock(Mutex::new(
                chrono::DateTime::parse_from_rfc3339("2026-11-02T08:00:00.000+01:00")
                    .expect("start time"),
            ))),
            receipts: Vec::new(),
        };
        b.open();
        b
    }

    fn open(&mut self) {
        blocking(|| self.open_now());
    }

    fn open_now(&mut self) {
        let mut config = JournalConfig::new(self.dir.join("journal.sqlite"), FDM_ID);
        config.clock = self.clock.clone();
        let journal = Journal::open(config, Arc::new(SoftwareSigner::from_seed(self.seed)))
            .expect("open journal");
        let app = AppBuilder::for_journal(
            journal.clone(),
            Numbering {
                scope: SeriesScope::Establishment,
                digits: 8,
                ..Default::default()
            },
        )
        .expect("assemble");
        self.journal = Some(journal);
        self.app = Some(app);
    }

    /// The signer's public key.
    pub fn public_key(&self) -> Vec<u8> {
        SoftwareSigner::from_seed(self.seed)
            .identity()
            .expect("identity")
            .public_key
    }

    fn app(&self) -> &BlockingApp {
        self.app.as_ref().expect("box is open")
    }

    /// Registers an order of `lines` (description, quantity, unit price, VAT letter); returns
    /// the receipt.
    pub fn order(&mut self, event_type: &str, lines: &[(&str, i64, &str, &str)]) -> Value {
        self.n += 1;
        self.clock.advance(chrono::Duration::seconds(1));
        let lines: Vec<Value> = lines
            .iter()
            .map(|(d, q, p, v)| json!({"description": d, "quantity": q, "unit_price": p, "vat": v}))
            .collect();
        let order = json!({
            "request_id": format!(
                "{}-{}",
                self.dir.file_name().unwrap_or_default().to_string_lossy(),
                self.n
            ),
            "operator": OPERATOR,
            "event_type": event_type,
            "lines": lines,
        });
        let bytes = serde_json::to_vec(&order).expect("order");
        match blocking(|| self.app().handle_order_enrolling("till-1", &bytes)) {
            Receipt::Signed(v) => {
                self.receipts.push(v.clone());
                v
            }
            other => panic!("order refused: {:?}", other.to_json()),
        }
    }

    /// A varied day of orders: sales at every rate, a refund, a pro forma, a training ticket.
    pub fn orders(&mut self, count: u64) {
        for i in 0..count {
            let price = format!("{}.{:02}", 2 + i % 9, (i * 37) % 100);
            match i % 7 {
                5 => {
                    self.order("normal", &[("Retour", -1, &price, "B")]);
                }
                6 => {
                    self.order("pro_forma", &[("Tafel", 2, &price, "B")]);
                }
                4 => {
                    self.order("training", &[("Oefening", 1, &price, "A")]);
                }
                _ => {
                    self.order(
                        "normal",
                        &[
                            ("Spaghetti", 1 + (i % 3) as i64, &price, "B"),
                            ("Cola", 1, "2.20", "A"),
                            ("Bon", 1, "1.00", "D"),
                        ],
                    );
                }
            }
        }
    }

    /// Makes a Z report (admin).
    pub fn z_report(&mut self) -> Value {
        let req = ReportRequest::from_json(br#"{"kind":"z"}"#, None).expect("request");
        assert_eq!(req.kind, ReportKind::Z);
        let app = self.app();
        blocking(|| app.runtime().block_on(app.app().reports.make(&req))).expect("Z report")
    }

    /// Closes the journal (the file can be copied then).
    pub fn close(&mut self) {
        blocking(|| {
            self.app = None;
            if let Some(j) = self.journal.take() {
                j.close();
            }
        });
    }

    /// Reopens a closed box.
    pub fn reopen(&mut self) {
        if self.journal.is_none() {
            self.open();
        }
    }

    /// The last seq of the journal.
    pub fn last_seq(&self) -> u64 {
        let conn = read_only(&self.dir);
        conn.query_row("SELECT max(seq) FROM records", [], |r| r.get::<_, i64>(0))
            .expect("max seq") as u64
    }

    /// The export of records `from..=to`, as `fdmctl export` writes it.
    pub fn export(&self, from: u64, to: u64) -> Vec<u8> {
        let conn = read_only(&self.dir);
        let mut out = Vec::new();
        export::write_export(&conn, from, to, "2026-12-06T21:00:00.000+01:00", &mut out)
            .expect("export");
        out
    }
}

/// Runs the daemon's blocking code (it has a runtime of its own) from a test's async context.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    if tokio::runtime::Handle::try_current().is_ok() {
        tokio::task::block_in_place(f)
    } else {
        f()
    }
}

fn read_only(dir: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open_with_flags(
        dir.join("journal.sqlite"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("read journal")
}

impl Drop for FdmBox {
    fn drop(&mut self) {
        self.close();
    }
}
