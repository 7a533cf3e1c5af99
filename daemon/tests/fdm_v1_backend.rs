//! `[signer] backend = "fdm-v1"` end to end (issue 18 part 3): fdmd is the cash register towards
//! an FDM v1 box. Against a second fdmd serving the `fdm-v1` plugin (orders over MQTT), and
//! against a small FDM v1 emulator written here from the reference notes (gks-fdm.md §1), not
//! from the plugin: lost answers, NAKs, the box going down mid-load, the PIN.
#![allow(clippy::unwrap_used)]

mod plugin_support;
mod support;

use hyper::{Method, StatusCode};
use plugin_support::*;
use serde_json::Value;
use support::{Daemon, free_port, order};

const ECR: &str = "CFDM0010000001";

/// fdmd signing with the FDM v1 box at `addr`, with `extra` lines in `[signer.fdm-v1]`.
fn pos_of(addr: &str, extra: &str) -> Daemon {
    Daemon::start_dev_with_config(&format!(
        "[signer]\nbackend = \"fdm-v1\"\n[signer.fdm-v1]\naddress = \"{addr}\"\necr_id = \"{ECR}\"\n{extra}"
    ))
}

/// The codes of the problems in fdmd's status (admin view).
fn problems(d: &Daemon) -> Vec<String> {
    let (code, status) = d.request(Method::GET, "/v1/status", Some(&d.admin_token()), None);
    assert_eq!(code, StatusCode::OK, "{status}");
    status["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["code"].as_str().unwrap().to_owned())
        .collect()
}

fn post(pos: &Daemon, id: &str) -> (StatusCode, Value) {
    pos.request(
        Method::POST,
        "/v1/registers/dev-register/orders",
        Some(&pos.dev_register_token()),
        Some(order(
            id,
            &[("Cola", 1, "2.20", "A"), ("Snack", 1, "11.90", "B")],
        )),
    )
}

/// The fiscal events of a journal, through `fdmctl export`.
fn fiscal_events(d: &Daemon) -> Vec<Value> {
    journal_records(d)
        .into_iter()
        .filter(|r| r["kind"] == "fiscal_event")
        .collect()
}

/// The pre-computed events of a journal with their signatures (hex), through `fdmctl export`.
fn precomputed_with_signatures(d: &Daemon) -> Vec<(String, Value)> {
    let (code, out) = support::fdmctl(&["export", "--data-dir", d.data_dir().to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    out.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["type"] == "record")
        .map(|l| {
            let record: Value = serde_json::from_str(l["record"].as_str().unwrap()).unwrap();
            (l["signature"].as_str().unwrap().to_owned(), record)
        })
        .filter(|(_, r)| r["body"]["source"] == "precomputed")
        .collect()
}

fn verify(d: &Daemon) {
    let (code, out) = support::fdmctl(&["verify", "--data-dir", d.data_dir().to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn registers_over_mqtt_are_signed_by_a_second_fdmds_fdm_v1_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = PluginDir::new(dir.path());
    plugins.add_signed(&built_plugin("libfdmd_plugin_fdm_v1.so"), "fdm-v1.so");
    let tcp = free_port();
    let box_b = Daemon::start_dev_with_config(&plugins.section(&format!(
        "[[plugins.instance]]\nname = \"fdm-v1\"\nfile = \"fdm-v1.so\"\nregister = \"ecr-1\"\nisolate = true\ntcp_listen = \"127.0.0.1:{tcp}\"\n"
    )));
    drop(LineClient::connect(([127, 0, 0, 1], tcp).into())); // waits until the port is up
    let pos = pos_of(&format!("127.0.0.1:{tcp}"), "timeout_ms = 3000\n");

    let receipts: Vec<Value> = (1..=4)
        .map(|i| mqtt_order(&pos, &format!("m-{i}")))
        .collect();
    let b_records = precomputed_with_signatures(&box_b);
    assert_eq!(
        b_records.len(),
        4,
        "one event in B per order: {b_records:?}"
    );
    let mut last_total = None;
    for (i, (r, (b_signature, b))) in receipts.iter().zip(&b_records).enumerate() {
        assert_eq!(r["status"], "signed", "{r}");
        let f = &r["fdm_v1"];
        assert_eq!(f["label"], "NS", "{r}");
        assert_eq!(f["code"], 0, "{r}");
        assert_eq!(f["ecr_ticket_number"], i as u64 + 1, "{r}");
        assert!(f["vsc_id"].as_str().unwrap().starts_with("DEVSW-"), "{r}");
        // B's record of this order: our ECR id and ticket number, and B's signature in ours.
        assert_eq!(b["body"]["ecr_id"], ECR, "{b}");
        assert_eq!(b["body"]["pos_ticket_number"], (i + 1).to_string(), "{b}");
        assert_eq!(b["body"]["total"], "2.20", "{b}");
        let b_signature = b_signature.to_ascii_uppercase();
        assert_eq!(
            f["signature"].as_str().unwrap(),
            &b_signature[..40],
            "B's signature in A's receipt"
        );
        assert_eq!(f["total_counter"], b["body"]["total_counter"], "{b}");
        let total = f["total_counter"].as_u64().unwrap();
        if let Some(last) = last_total {
            assert_eq!(total, last + 1, "B's counters run on");
        }
        last_total = Some(total);
    }
    // The register resends an order: A's stored receipt, no second event in B.
    let again = mqtt_order(&pos, "m-2");
    assert_eq!(again["fdm_v1"], receipts[1]["fdm_v1"]);
    assert_eq!(precomputed_with_signatures(&box_b).len(), 4);
    // A clock-in: B's plugin answers the `I` and signs the `H` (an NS of 0.00).
    let (code, work_in) = clocking(&pos, "w-1", "work_in");
    assert_eq!(code, StatusCode::CREATED, "{work_in}");
    let id = &work_in["fdm_v1"]["identification"];
    assert!(
        id["vsc_id"].as_str().unwrap().starts_with("DEVSW-"),
        "{work_in}"
    );
    let b_records = precomputed_with_signatures(&box_b);
    assert_eq!(b_records.len(), 5, "{b_records:?}");
    assert_eq!(
        b_records[4].1["body"]["total"], "0.00",
        "{:?}",
        b_records[4]
    );
    assert!(problems(&pos).is_empty());
    verify(&pos);
    verify(&box_b);
}

#[test]
fn a_lost_answer_and_a_nak_are_resent_as_the_same_request_and_signed_once() {
    let emu = emulator::Emulator::start();
    let pos = pos_of(
        &emu.addr.to_string(),
        "timeout_ms = 500\nattempts = 3\nretry_delay_ms = 50\n",
    );

    // The box signs, but its answer is lost: fdmd resends the same request (retry 1) and the
    // box answers 102 with its first signature.
    emu.shared.drop_next_response.store(1, emulator::SeqCst);
    let (code, first) = post(&pos, "o-1");
    assert_eq!(code, StatusCode::CREATED, "{first}");
    let f = &first["fdm_v1"];
    assert_eq!(f["code"], 102, "{first}");
    assert_eq!(
        (f["event_counter"].clone(), f["total_counter"].clone()),
        (1.into(), 1.into())
    );
    let requests = emu.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(&requests[0][3..4], "0");
    assert_eq!(requests[1][..3], requests[0][..3], "same sequence");
    assert_eq!(&requests[1][3..4], "1", "retry 1");
    assert_eq!(requests[0][4..], requests[1][4..], "the very same data");
    assert_eq!(requests[0].len(), 162);
    assert_eq!(&requests[0][18..43], &format!("85073003328{ECR}"));
    assert_eq!(&requests[0][43..51], "     1NS");
    assert_eq!(&requests[0][51..62], "       1410", "total in cents");
    assert_eq!(&requests[0][62..77], "2100        038", "VAT at 21 %");
    assert!(requests[0].ends_with("797bc46f"), "PLU hash");
    assert_eq!(emu.events(), 1, "one FDM event for the order");

    // The box NAKs the frame once: the same frame again (not a new attempt).
    emu.shared.nak_next.store(1, emulator::SeqCst);
    let (code, second) = post(&pos, "o-2");
    assert_eq!(code, StatusCode::CREATED, "{second}");
    assert_eq!(second["fdm_v1"]["code"], 0);
    assert_eq!(second["fdm_v1"]["total_counter"], 2);
    let requests = emu.requests();
    assert_eq!(requests.len(), 3, "{requests:?}");
    assert_eq!(&requests[2][3..4], "0", "a NAK is no new attempt");
    assert_ne!(
        requests[2][..3],
        requests[0][..3],
        "a new request, a new sequence"
    );

    // The register resends: answered from the journal, the box is not asked.
    let (code, again) = post(&pos, "o-2");
    assert_eq!(code, StatusCode::OK, "{again}");
    assert_eq!(again["fdm_v1"], second["fdm_v1"]);
    assert_eq!(emu.requests().len(), 3);
    assert_eq!(emu.events(), 2);
    let text = second["text"].as_str().unwrap_or_default();
    for shown in ["FDM v1", "EMUFDM00001", "NS 2/2"] {
        assert!(text.contains(shown), "{shown} not in\n{text}");
    }
    verify(&pos);
}

#[test]
fn the_box_going_down_mid_load_refuses_orders_without_records_or_gaps() {
    let emu = emulator::Emulator::start();
    let pos = pos_of(
        &emu.addr.to_string(),
        "timeout_ms = 500\nattempts = 2\nretry_delay_ms = 50\n",
    );
    for i in 1..=3 {
        let (code, r) = post(&pos, &format!("d-{i}"));
        assert_eq!(code, StatusCode::CREATED, "{r}");
    }
    emu.shared.down.store(true, emulator::SeqCst);
    for i in 4..=5 {
        let (code, r) = post(&pos, &format!("d-{i}"));
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{r}");
        assert_eq!(r["code"], 208, "{r}");
        assert!(
            r["message"].as_str().unwrap().ends_with("(fdm_v1_down)"),
            "{r}"
        );
    }
    assert_eq!(problems(&pos), ["fdm_v1_down"]);
    let (code, stored) = pos.request(
        Method::GET,
        "/v1/receipts/dev-register/d-4",
        Some(&pos.dev_register_token()),
        None,
    );
    assert_ne!(
        code,
        StatusCode::OK,
        "no record without the box's signature: {stored}"
    );

    emu.shared.down.store(false, emulator::SeqCst);
    // The register resends d-5 (d-4 is given up), then goes on: the box's ticket numbers and
    // fdmd's run on, the refused orders took none.
    let mut tickets = Vec::new();
    for id in ["d-5", "d-6", "d-7"] {
        let (code, r) = post(&pos, id);
        assert_eq!(code, StatusCode::CREATED, "{r}");
        tickets.push(r["fdm_v1"]["ecr_ticket_number"].as_u64().unwrap());
    }
    assert_eq!(tickets, [4, 5, 6], "no gap in the box's ticket numbers");
    assert!(problems(&pos).is_empty());
    assert_eq!(emu.events(), 6);

    let events = fiscal_events(&pos);
    assert_eq!(events.len(), 6, "{events:?}");
    let numbers: Vec<u64> = events
        .iter()
        .map(|r| r["body"]["ticket_number"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, [1, 2, 3, 4, 5, 6], "no gap in fdmd's numbering");
    for r in &events {
        assert_eq!(
            r["body"]["fdm_v1"]["signature"].as_str().unwrap().len(),
            40,
            "every record carries the box's signature: {r}"
        );
    }
    verify(&pos);
}

#[test]
fn a_box_that_is_off_at_start_shows_in_the_status_before_any_order() {
    let emu = emulator::Emulator::start();
    emu.shared.down.store(true, emulator::SeqCst);
    let pos = pos_of(&emu.addr.to_string(), "timeout_ms = 300\n");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while problems(&pos).is_empty() {
        assert!(std::time::Instant::now() < deadline, "no problem listed");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(problems(&pos), ["fdm_v1_down"]);
    emu.shared.down.store(false, emulator::SeqCst);
    let (code, r) = post(&pos, "u-1");
    assert_eq!(code, StatusCode::CREATED, "{r}");
    assert!(problems(&pos).is_empty());
}

#[test]
fn a_box_that_wants_its_pin_gets_it_through_the_admin_pin_route() {
    let emu = emulator::Emulator::start();
    emu.shared.need_pin.store(true, emulator::SeqCst);
    let pos = pos_of(&emu.addr.to_string(), "timeout_ms = 500\nattempts = 1\n");
    let (code, r) = post(&pos, "p-1");
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{r}");
    assert_eq!(r["code"], 202, "{r}");
    assert_eq!(problems(&pos), ["fdm_v1_pin_required"]);
    let pin = |pin: &str| {
        pos.request(
            Method::POST,
            "/v1/admin/signer/pin",
            Some(&pos.admin_token()),
            Some(format!("{{\"pin\": \"{pin}\"}}").into_bytes()),
        )
    };
    let (code, r) = pin("123456");
    assert_eq!(
        code,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a box's PIN has 5 digits: {r}"
    );
    let (code, r) = pin("11111");
    assert_eq!(code, StatusCode::FORBIDDEN, "{r}");
    assert_eq!(r["code"], 204, "{r}");
    let (code, r) = pin("12345");
    assert_eq!(code, StatusCode::OK, "{r}");
    assert!(problems(&pos).is_empty());
    let (code, r) = post(&pos, "p-1");
    assert_eq!(code, StatusCode::CREATED, "{r}");
    assert_eq!(
        r["fdm_v1"]["ecr_ticket_number"], 1,
        "the refused order took no number"
    );
}

#[test]
fn pre_computed_events_are_refused_under_the_fdm_v1_backend() {
    use std::io::{Read, Write};
    let emu = emulator::Emulator::start();
    let dir = tempfile::tempdir().unwrap();
    let plugins = PluginDir::new(dir.path());
    plugins.add_signed(&built_plugin("libfdmd_plugin_fdm_v1.so"), "fdm-v1.so");
    let tcp = free_port();
    let pos = Daemon::start_dev_with_config(&format!(
        "[signer]\nbackend = \"fdm-v1\"\n[signer.fdm-v1]\naddress = \"{}\"\necr_id = \"{ECR}\"\n{}",
        emu.addr,
        plugins.section(&format!(
            "[[plugins.instance]]\nname = \"fdm-v1\"\nfile = \"fdm-v1.so\"\nregister = \"ecr-1\"\nisolate = true\ntcp_listen = \"127.0.0.1:{tcp}\"\n"
        ))
    ));
    drop(LineClient::connect(([127, 0, 0, 1], tcp).into()));
    // A register's own H request (the EFSTA ticket) to this fdmd's plugin.
    let mut h = String::from("H0102026112220150085073003328BODO0010000001   123NS");
    h += &format!("{:>11}", "1410");
    for (rate, cents) in [
        ("2100", "038"),
        ("1200", "128"),
        (" 600", "000"),
        (" 000", "000"),
    ] {
        h += rate;
        h += &format!("{cents:>11}");
    }
    h += &format!("{:>40}", "797bc46f");
    assert_eq!(h.len(), 162);
    let lrc = (h.bytes().fold(0u8, |a, b| a.wrapping_add(b)) ^ 0xFF).wrapping_add(1);
    let mut frame = vec![0x02];
    frame.extend_from_slice(h.as_bytes());
    frame.extend([0x03, lrc]);
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", tcp)).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    stream.write_all(&frame).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while got.len() < 1 + 1 + 109 + 2 {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "closed after {got:?}");
        got.extend_from_slice(&buf[..n]);
    }
    let response = String::from_utf8_lossy(&got[2..2 + 109]).into_owned();
    assert_eq!(
        &response[4..10],
        "207000",
        "refused, not signed: {response:?}"
    );
    assert_eq!(emu.events(), 0, "nothing sent to the box");
    let log = pos.log();
    assert!(log.contains("not sent to an FDM v1 box"), "{log}");
}

/// A pseudo-terminal pair: (master, the terminal side held open raw, its path).
/// A clock-in or clock-out as the register sends it.
fn clocking(pos: &Daemon, id: &str, purpose: &str) -> (StatusCode, Value) {
    let body = serde_json::json!({
        "request_id": id, "operator": "85073003328", "event_type": "normal", "purpose": purpose
    });
    pos.request(
        Method::POST,
        "/v1/registers/dev-register/orders",
        Some(&pos.dev_register_token()),
        Some(serde_json::to_vec(&body).unwrap()),
    )
}

#[test]
fn clock_in_and_out_are_identified_then_signed_by_the_box_as_zero_ns_events() {
    let emu = emulator::Emulator::start();
    let pos = pos_of(
        &emu.addr.to_string(),
        "timeout_ms = 500\nattempts = 2\nretry_delay_ms = 50\n",
    );
    let (code, work_in) = clocking(&pos, "w-in", "work_in");
    assert_eq!(code, StatusCode::CREATED, "{work_in}");
    // An `I` request first (as the certified Odoo driver did), then the `H`: an NS of 0.00 with
    // the PLU hash of the one "WORK IN" line at 0 %.
    let requests = emu.i_and_h_requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(&requests[0][..1], "I", "{requests:?}");
    assert_eq!(requests[0].len(), 4, "I is a header only");
    let h = &requests[1];
    assert_eq!((&h[..1], h.len()), ("H", 162));
    assert_ne!(h[1..3], requests[0][1..3], "a sequence number each");
    assert_eq!(&h[43..51], "     1NS");
    assert_eq!(&h[51..62], "        000", "total 0.00");
    let f = &work_in["fdm_v1"];
    assert_eq!(
        (f["code"].clone(), f["label"].clone()),
        (0.into(), "NS".into()),
        "{work_in}"
    );
    let id = &f["identification"];
    assert_eq!(id["vsc_id"], "EMU-VSC-000001", "{work_in}");
    assert_eq!(id["firmware"], "EMU-FDM 1.0", "{work_in}");
    assert_eq!(
        (id["protocol"].clone(), id["vsc_version"].clone()),
        ("1".into(), "001".into())
    );
    // A sale between, then the clock-out: the box's NS counter counts all three.
    let (code, sale) = post(&pos, "o-1");
    assert_eq!(code, StatusCode::CREATED, "{sale}");
    let (code, work_out) = clocking(&pos, "w-out", "work_out");
    assert_eq!(code, StatusCode::CREATED, "{work_out}");
    assert_eq!(work_out["fdm_v1"]["event_counter"], 3, "{work_out}");
    assert_eq!(emu.events(), 3);
    // The box down: a clock-in is refused (208) and journaled nowhere.
    emu.shared.down.store(true, emulator::SeqCst);
    let before = fiscal_events(&pos).len();
    let (code, refused) = clocking(&pos, "w-in-2", "work_in");
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{refused}");
    assert_eq!(refused["code"], 208, "{refused}");
    assert_eq!(fiscal_events(&pos).len(), before);
    verify(&pos);
}

fn open_pty() -> (std::fs::File, std::fs::File, String) {
    use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
    use std::os::unix::fs::OpenOptionsExt;
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).unwrap();
    grantpt(&master).unwrap();
    unlockpt(&master).unwrap();
    let name = ptsname(&master, Vec::new()).unwrap().into_string().unwrap();
    // Held open and raw from the start, so the line discipline echoes nothing back.
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(rustix::fs::OFlags::NOCTTY.bits() as i32)
        .open(&name)
        .unwrap();
    let mut t = rustix::termios::tcgetattr(&slave).unwrap();
    t.make_raw();
    rustix::termios::tcsetattr(&slave, rustix::termios::OptionalActions::Now, &t).unwrap();
    (std::fs::File::from(master), slave, name)
}

#[test]
fn a_box_on_a_serial_line_signs_and_a_lost_answer_is_resent() {
    let (master, _slave, device) = open_pty();
    let emu = emulator::Emulator::on_serial(master);
    let pos = Daemon::start_dev_with_config(&format!(
        "[signer]\nbackend = \"fdm-v1\"\n[signer.fdm-v1]\ndevice = \"{device}\"\necr_id = \"{ECR}\"\ntimeout_ms = 500\nretry_delay_ms = 50\n"
    ));
    let (code, first) = post(&pos, "s-1");
    assert_eq!(code, StatusCode::CREATED, "{first}");
    assert_eq!(first["fdm_v1"]["fdm_id"], "EMUFDM00001", "{first}");
    emu.shared.drop_next_response.store(1, emulator::SeqCst);
    let (code, second) = post(&pos, "s-2");
    assert_eq!(code, StatusCode::CREATED, "{second}");
    assert_eq!(second["fdm_v1"]["code"], 102, "{second}");
    assert_eq!(second["fdm_v1"]["total_counter"], 2, "{second}");
    assert_eq!(emu.events(), 2);
    verify(&pos);
}

/// An FDM v1 box written from the reference notes (§1.2–§1.7), with switches to misbehave.
mod emulator {
    use std::collections::HashMap;
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    pub use std::sync::atomic::Ordering::SeqCst;
    use std::sync::atomic::{AtomicBool, AtomicU32};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    const STX: u8 = 0x02;
    const ETX: u8 = 0x03;
    const ACK: u8 = 0x06;
    const NAK: u8 = 0x15;
    const FDM_ID: &str = "EMUFDM00001";
    const VSC_ID: &str = "EMU-VSC-000001";

    fn lrc(m: &[u8]) -> u8 {
        (m.iter().fold(0u8, |a, b| a.wrapping_add(*b)) ^ 0xFF).wrapping_add(1)
    }

    #[derive(Default)]
    pub struct Shared {
        /// Answer NAK to this many frames.
        pub nak_next: AtomicU32,
        /// Sign this many H requests without sending the response.
        pub drop_next_response: AtomicU32,
        /// Close every connection at its next frame, unacknowledged.
        pub down: AtomicBool,
        /// Answer 202 to H until the PIN 12345 is given.
        pub need_pin: AtomicBool,
        state: Mutex<State>,
        stop: AtomicBool,
    }

    #[derive(Default)]
    struct State {
        /// Every H request handled (ACKed), as received.
        requests: Vec<String>,
        /// Every I and H request handled, in order.
        identify_and_sign: Vec<String>,
        /// (sequence, data) → the signed fields, to answer a resend with 102.
        signed: HashMap<(String, String), String>,
        per_label: HashMap<String, u64>,
        total: u64,
    }

    pub struct Emulator {
        pub addr: SocketAddr,
        pub shared: Arc<Shared>,
    }

    impl Emulator {
        pub fn start() -> Emulator {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            listener.set_nonblocking(true).unwrap();
            let addr = listener.local_addr().unwrap();
            let shared = Arc::new(Shared::default());
            let s = shared.clone();
            std::thread::spawn(move || {
                while !s.stop.load(SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let s = s.clone();
                            std::thread::spawn(move || serve(stream, &s));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            });
            Emulator { addr, shared }
        }

        /// The box on the master side of a pseudo-terminal (a serial line), in a thread.
        pub fn on_serial(master: std::fs::File) -> Emulator {
            let shared = Arc::new(Shared::default());
            let s = shared.clone();
            std::thread::spawn(move || serve_io(master, &s));
            Emulator {
                addr: ([127, 0, 0, 1], 9).into(),
                shared,
            }
        }

        pub fn requests(&self) -> Vec<String> {
            self.shared.state.lock().unwrap().requests.clone()
        }

        /// FDM events signed.
        pub fn i_and_h_requests(&self) -> Vec<String> {
            self.shared.state.lock().unwrap().identify_and_sign.clone()
        }

        pub fn events(&self) -> u64 {
            self.shared.state.lock().unwrap().total
        }
    }

    impl Drop for Emulator {
        fn drop(&mut self) {
            self.shared.stop.store(true, SeqCst);
        }
    }

    fn frame(m: &[u8]) -> Vec<u8> {
        let mut f = vec![STX];
        f.extend_from_slice(m);
        f.extend([ETX, lrc(m)]);
        f
    }

    fn serve(stream: TcpStream, s: &Shared) {
        stream
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        stream.set_nonblocking(false).unwrap();
        serve_io(stream, s);
    }

    /// The box on a byte stream of any kind (a TCP connection, a pseudo-terminal's master).
    pub fn serve_io(mut stream: impl Read + Write, s: &Shared) {
        let mut message: Option<Vec<u8>> = None;
        let mut awaiting_lrc = false;
        let mut last: Option<Vec<u8>> = None;
        let mut buf = [0u8; 256];
        while !s.stop.load(SeqCst) {
            let n = match stream.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => n,
                Err(_) => continue,
            };
            for &b in &buf[..n] {
                if awaiting_lrc {
                    awaiting_lrc = false;
                    let m = message.take().unwrap_or_default();
                    if lrc(&m) != b {
                        let _ = stream.write_all(&[NAK]);
                        continue;
                    }
                    if s.down.load(SeqCst) {
                        return; // the box is off: the connection drops, nothing acknowledged
                    }
                    if s.nak_next.load(SeqCst) > 0 {
                        s.nak_next.fetch_sub(1, SeqCst);
                        let _ = stream.write_all(&[NAK]);
                        continue;
                    }
                    let _ = stream.write_all(&[ACK]);
                    let response = respond(&m, s);
                    if m.first() == Some(&b'H') && s.drop_next_response.load(SeqCst) > 0 {
                        s.drop_next_response.fetch_sub(1, SeqCst);
                        continue; // signed, but the answer is lost
                    }
                    let f = frame(response.as_bytes());
                    let _ = stream.write_all(&f);
                    last = Some(f);
                    continue;
                }
                match (&mut message, b) {
                    (None, STX) => message = Some(Vec::new()),
                    (None, NAK) => {
                        if let Some(f) = &last {
                            let _ = stream.write_all(f);
                        }
                    }
                    (None, _) => {} // ACK of our response, or noise
                    (Some(_), ETX) => awaiting_lrc = true,
                    (Some(m), b) => m.push(b),
                }
            }
        }
    }

    fn respond(m: &[u8], s: &Shared) -> String {
        let text = String::from_utf8_lossy(m).into_owned();
        let header = text.get(..4).unwrap_or("?000").to_owned();
        let common = |code: &str| format!("{header}{code}{FDM_ID}");
        match m.first() {
            Some(b'S') => common("000000"),
            Some(b'P') => {
                let ok = text.get(4..) == Some("12345");
                if ok {
                    s.need_pin.store(false, SeqCst);
                }
                format!("{}{VSC_ID}", common(if ok { "001000" } else { "204000" }))
            }
            Some(b'I') if text.len() == 4 => {
                s.state.lock().unwrap().identify_and_sign.push(text.clone());
                // Firmware (20), protocol version (1), VSC id (14), VSC version (3).
                format!("{}{:<20}1{VSC_ID}001", common("000000"), "EMU-FDM 1.0")
            }
            Some(b'H') if text.len() == 162 => {
                if s.need_pin.load(SeqCst) {
                    return format!("{:<109}", common("202000"));
                }
                let mut st = s.state.lock().unwrap();
                st.requests.push(text.clone());
                st.identify_and_sign.push(text.clone());
                let key = (text[1..3].to_owned(), text[4..].to_owned());
                if &text[3..4] != "0"
                    && let Some(fields) = st.signed.get(&key)
                {
                    return format!("{}{fields}", common("102000"));
                }
                let label = text[49..51].to_owned();
                st.total += 1;
                let total = st.total;
                let counter = {
                    let c = st.per_label.entry(label.clone()).or_default();
                    *c += 1;
                    *c
                };
                let fields = format!(
                    "{VSC_ID}20261207120000{label}{counter:>9}{total:>9}{:040X}",
                    total * 7919
                );
                st.signed.insert(key, fields.clone());
                format!("{}{fields}", common("000000"))
            }
            Some(b'H') => format!("{:<109}", common("207000")),
            _ => common("206000"),
        }
    }
}
