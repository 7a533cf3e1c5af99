//! End to end with real processes: `fdmd --dev` boxes copy their journals to the real
//! `fdmd-backoffice serve` on a throwaway PostgreSQL (`[backoffice]`, daemon/src/replication/).
//! Needs the `fdmd` binary of the same build: `cargo build -p fdmd` (same target directory).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const OFFICE_BIN: &str = env!("CARGO_BIN_EXE_fdmd-backoffice");
const ADMIN: &str = "admin-token-for-the-boxes-test-0123";

fn fdmd_bin() -> PathBuf {
    let path = Path::new(OFFICE_BIN).with_file_name("fdmd");
    assert!(
        path.exists(),
        "fdmd not found at {}: run `cargo build -p fdmd` first (same target directory)",
        path.display()
    );
    path
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP request (bounded in time); status and JSON body (Null when the connection fails).
fn http(
    addr: SocketAddr,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Vec<u8>>,
) -> (StatusCode, Value) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    match rt.block_on(fdmd::client::request(
        addr,
        method,
        path,
        token,
        body,
        Duration::from_secs(10),
    )) {
        Ok((status, bytes)) => (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, Value::Null),
    }
}

/// Polls `check` every 100 ms for at most `limit`.
fn wait_for(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what}: not within {limit:?}");
}

/// A `fdmd --dev` box whose `[backoffice]` points at `office`.
struct BoxProc {
    child: Option<Child>,
    dir: PathBuf,
    http: SocketAddr,
    mqtt: u16,
    orders: u64,
}

impl BoxProc {
    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn new(root: &Path, name: &str, office: SocketAddr) -> BoxProc {
        let dir = root.join(name);
        std::fs::create_dir_all(dir.join("conf.d")).unwrap();
        let (http, mqtt) = (free_port(), free_port());
        std::fs::write(
            dir.join("fdmd.toml"),
            format!(
                "[fdm]\nid = \"DEVFDMD0001\"\ndata_dir = \"{data}\"\n[establishment]\nname = \"{name}\"\naddress = \"Grote Markt 1, 1000 Brussel\"\nvat_number = \"BE0123456749\"\n[http]\nlisten = \"127.0.0.1:{http}\"\n[mqtt]\nlisten = \"127.0.0.1:{mqtt}\"\n",
                data = dir.join("data").display()
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join("conf.d/50-backoffice.toml"),
            format!(
                "[backoffice]\nenabled = true\nurl = \"http://{office}\"\nestablishment = \"{name}\"\ncredential_file = \"{cred}\"\nsegment_records = 7\npoll_ms = 100\nretry_min_ms = 50\nretry_max_ms = 400\ntimeout_ms = 10000\n",
                cred = dir.join("credential").display()
            ),
        )
        .unwrap();
        let mut b = BoxProc {
            child: None,
            dir,
            http: ([127, 0, 0, 1], http).into(),
            mqtt,
            orders: 0,
        };
        b.start();
        b
    }

    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("fdmd.log"))
            .unwrap();
        let child = Command::new(fdmd_bin())
            .arg("--dev")
            .arg("--config")
            .arg(self.dir.join("fdmd.toml"))
            .arg("--data-dir")
            .arg(self.data())
            .args(["--http-listen", &self.http.to_string()])
            .args(["--mqtt-listen", &format!("127.0.0.1:{}", self.mqtt)])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let addr = self.http;
        wait_for("fdmd answers", Duration::from_secs(30), || {
            http(addr, Method::GET, "/v1/status", None, None).0 == StatusCode::OK
        });
    }

    fn stop(&mut self) {
        let mut child = self.child.take().unwrap();
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "fdmd did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn key(&self) -> String {
        let (_, signer) = http(self.http, Method::GET, "/v1/signer", None, None);
        signer["public_key"].as_str().unwrap().to_owned()
    }

    fn token(&self) -> String {
        let v: Value = serde_json::from_slice(
            &std::fs::read(self.data().join("dev-credentials.json")).unwrap(),
        )
        .unwrap();
        v["http_token"].as_str().unwrap().to_owned()
    }

    /// Signs `n` orders; `tag` makes them differ from another run's.
    fn orders(&mut self, n: u64, tag: &str) {
        let token = self.token();
        for _ in 0..n {
            self.orders += 1;
            let body = json!({"request_id": format!("{tag}-{}", self.orders), "operator": "85073003328", "event_type": "normal",
                "lines": [{"description": format!("Cola {tag}"), "quantity": 1, "unit_price": "2.20", "vat": "A"}]});
            let (status, r) = http(
                self.http,
                Method::POST,
                "/v1/registers/dev-register/orders",
                Some(&token),
                Some(serde_json::to_vec(&body).unwrap()),
            );
            assert_eq!(status, StatusCode::CREATED, "{r}");
        }
    }

    /// Whether the back office acknowledged every record of the journal (read live from the
    /// status document's journal member, not from the copy's own last look at it).
    fn synced(&self) -> bool {
        let admin = fdmd::access::read_admin_token(&self.data()).unwrap();
        let (_, doc) = http(self.http, Method::GET, "/v1/status", Some(&admin), None);
        let journal = doc["journal"]["last_seq"].as_u64().unwrap_or(0);
        journal > 0 && doc["backoffice"]["last_sent_seq"].as_u64() == Some(journal)
    }

    /// `fdmctl backoffice status` against this box: exit code and output.
    fn fdmctl_status(&self) -> (i32, String) {
        let fdmctl = Path::new(OFFICE_BIN).with_file_name("fdmctl");
        assert!(fdmctl.exists(), "build fdmctl first: cargo build -p fdmctl");
        let out = Command::new(fdmctl)
            .arg("backoffice")
            .arg("status")
            .arg("--config")
            .arg(self.dir.join("fdmd.toml"))
            .arg("--data-dir")
            .arg(self.data())
            .args(["--http", &self.http.to_string()])
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    }

    fn copy_status(&self) -> Value {
        let admin = fdmd::access::read_admin_token(&self.data()).unwrap();
        let (_, doc) = http(self.http, Method::GET, "/v1/status", Some(&admin), None);
        doc["backoffice"].clone()
    }
}

impl Drop for BoxProc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn office_cli(db: &str, args: &[&str]) -> String {
    let out = Command::new(OFFICE_BIN)
        .arg("--db")
        .arg(db)
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{args:?}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

struct Office(Child);

impl Office {
    fn serve(db: &str, addr: SocketAddr, token_file: &Path) -> Office {
        let child = Command::new(OFFICE_BIN)
            .arg("--db")
            .arg(db)
            .args(["serve", "--listen", &addr.to_string()])
            .arg("--admin-token-file")
            .arg(token_file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for("the back office answers", Duration::from_secs(30), || {
            http(addr, Method::GET, "/v1/establishments", Some(ADMIN), None).0 == StatusCode::OK
        });
        Office(child)
    }
}

impl Drop for Office {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn establishment(office: SocketAddr, id: &str) -> Value {
    let (_, list) = http(office, Method::GET, "/v1/establishments", Some(ADMIN), None);
    list.as_array()
        .or_else(|| list["establishments"].as_array())
        .unwrap()
        .iter()
        .find(|e| e["id"] == id)
        .cloned()
        .unwrap()
}

fn enrol(db: &str, b: &BoxProc, id: &str) {
    let out = office_cli(
        db,
        &[
            "enrol",
            "--id",
            id,
            "--name",
            id,
            "--vat-number",
            "BE0123456749",
            "--key",
            &b.key(),
        ],
    );
    let credential = out.lines().last().unwrap().trim().to_owned();
    std::fs::write(b.dir.join("credential"), format!("{credential}\n")).unwrap();
}

#[test]
fn boxes_signing_while_the_office_is_down_are_copied_once_and_a_restored_box_is_a_fork() {
    let root = tempfile::tempdir().unwrap();
    let pg = common::pg::Pg::start();
    pg.psql("postgres", "CREATE DATABASE office");
    let db = pg.conninfo("office");
    office_cli(&db, &["migrate"]);
    let token_file = root.path().join("admin-token");
    std::fs::write(&token_file, format!("{ADMIN}\n")).unwrap();
    let office: SocketAddr = ([127, 0, 0, 1], free_port()).into();

    // Two boxes, the back office down (nobody listens on its port).
    let mut a = BoxProc::new(root.path(), "box-a", office);
    let mut b = BoxProc::new(root.path(), "box-b", office);
    enrol(&db, &a, "box-a");
    enrol(&db, &b, "box-b");
    a.orders(30, "a");
    b.orders(20, "b");
    wait_for(
        "box-a reports its failures",
        Duration::from_secs(20),
        || {
            let s = a.copy_status();
            s["failures"].as_u64().unwrap_or(0) >= 2
                && s["behind_records"].as_u64().unwrap_or(0) > 30
        },
    );
    let s = a.copy_status();
    assert_eq!(s["last_sent_seq"], 0, "{s}");
    assert!(s["last_error"].is_string(), "{s}");

    // The back office comes up: everything arrives, once, and verifies.
    let server = Office::serve(&db, office, &token_file);
    for (bx, id) in [(&a, "box-a"), (&b, "box-b")] {
        wait_for(&format!("{id} copied"), Duration::from_secs(60), || {
            bx.synced()
        });
        let s = bx.copy_status();
        let last = s["last_sent_seq"].as_u64().unwrap();
        assert!(s["last_error"].is_null(), "{s}");
        let counts = pg.psql(
            "office",
            &format!("SELECT count(*) || ' ' || count(DISTINCT seq) || ' ' || max(seq) FROM records WHERE establishment_id = '{id}'"),
        );
        assert_eq!(counts, format!("{last} {last} {last}"), "{id}");
        let e = establishment(office, id);
        assert_eq!(e["flagged"], false, "{e}");
        assert_eq!(e["last_seq"], last, "{e}");
    }
    // The copy's state is in the admin view only: a register's token does not see it.
    let (_, doc) = http(b.http, Method::GET, "/v1/status", Some(&b.token()), None);
    assert!(
        doc["journal"].is_object() && doc["backoffice"].is_null(),
        "{doc}"
    );
    let refused = pg.psql("office", "SELECT count(*) FROM refused_segments");
    assert_eq!(refused, "0");

    // Box a is stopped and its data directory copied (an SD-card image); it signs more, which
    // reaches the back office.
    a.stop();
    let image = root.path().join("box-a-image");
    assert!(
        Command::new("cp")
            .arg("-a")
            .arg(a.data())
            .arg(&image)
            .status()
            .unwrap()
            .success()
    );
    a.start();
    a.orders(10, "a-later");
    wait_for(
        "box-a's later orders copied",
        Duration::from_secs(60),
        || a.synced(),
    );
    let before: String = pg.psql(
        "office",
        "SELECT string_agg(encode(hash, 'hex'), ',' ORDER BY seq) FROM records WHERE establishment_id = 'box-a'",
    );
    let stored_last = establishment(office, "box-a")["last_seq"].as_u64().unwrap();

    // The card dies; the old image is restored and the box signs different orders.
    a.stop();
    std::fs::remove_dir_all(a.data()).unwrap();
    assert!(
        Command::new("cp")
            .arg("-a")
            .arg(&image)
            .arg(a.data())
            .status()
            .unwrap()
            .success()
    );
    a.start();
    a.orders(12, "a-restored");
    wait_for("box-a stops on the fork", Duration::from_secs(60), || {
        a.copy_status()["halted"] == true
    });
    let s = a.copy_status();
    assert!(s["last_error"].as_str().unwrap().contains("fork"), "{s}");
    let e = establishment(office, "box-a");
    assert_eq!(e["flagged"], true, "{e}");
    assert_eq!(e["flag_code"], "fork", "{e}");
    assert_eq!(e["last_seq"], stored_last, "nothing overwritten: {e}");
    let after: String = pg.psql(
        "office",
        "SELECT string_agg(encode(hash, 'hex'), ',' ORDER BY seq) FROM records WHERE establishment_id = 'box-a'",
    );
    assert_eq!(before, after, "the stored chain changed");
    // One refusal kept as evidence: the box does not resend it in a loop.
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        pg.psql("office", "SELECT count(*) FROM refused_segments"),
        "1"
    );
    // Box b goes on unaffected.
    b.orders(5, "b-later");
    wait_for("box-b still copied", Duration::from_secs(60), || b.synced());
    assert_eq!(establishment(office, "box-b")["flagged"], false);
    // fdmctl backoffice status: working (0) on b, stopped on the refusal (1) on a.
    let (code, out) = b.fdmctl_status();
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("(0 behind)"), "{out}");
    let (code, out) = a.fdmctl_status();
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("STOPPED") && out.contains("fork"), "{out}");
    // With fdmd down, it reads the cursor file and the journal (exit 3).
    b.stop();
    let (code, out) = b.fdmctl_status();
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("acknowledged records up to"), "{out}");
    drop(server);
}
