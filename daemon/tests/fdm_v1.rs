//! An FDM v1 cash register talking to fdmd through the fdm-v1 plugin, over TCP and over a
//! pseudo-terminal pair (the serial transport). The client below is written from the reference
//! notes (gks-fdm.md §1), not from the plugin: STX/ETX/LRC frames, ACK/NAK, the 4-character
//! header, S, I, P and H requests, and the fixed-width responses.
#![allow(clippy::unwrap_used)]

mod plugin_support;
mod support;

use plugin_support::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::sync::mpsc;
use std::time::Duration;
use support::{Daemon, free_port};

const STX: u8 = 0x02;
const ETX: u8 = 0x03;
const ACK: u8 = 0x06;
const NAK: u8 = 0x15;

fn lrc(message: &[u8]) -> u8 {
    let sum = message.iter().fold(0u8, |a, b| a.wrapping_add(*b));
    (sum ^ 0xFF).wrapping_add(1)
}

fn frame(message: &[u8]) -> Vec<u8> {
    let mut f = vec![STX];
    f.extend_from_slice(message);
    f.push(ETX);
    f.push(lrc(message));
    f
}

/// A byte link to the module: writes, and bytes read by a thread (bounded waits).
struct Link {
    tx: Box<dyn Write + Send>,
    rx: mpsc::Receiver<u8>,
}

impl Link {
    fn new(reader: impl Read + Send + 'static, writer: impl Write + Send + 'static) -> Link {
        let (t, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = reader;
            let mut buf = [0u8; 512];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 || buf[..n].iter().any(|b| t.send(*b).is_err()) {
                    break;
                }
            }
        });
        Link {
            tx: Box::new(writer),
            rx,
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.tx.write_all(bytes).unwrap();
        self.tx.flush().unwrap();
    }

    fn byte(&self) -> u8 {
        self.rx
            .recv_timeout(Duration::from_secs(10))
            .expect("no byte from the module within 10 s")
    }

    fn nothing_more(&self) -> bool {
        self.rx.recv_timeout(Duration::from_millis(300)).is_err()
    }

    /// Reads one response frame, checks STX, ETX and LRC; returns the message.
    fn response(&self) -> String {
        assert_eq!(self.byte(), STX, "a response starts with STX");
        let mut message = Vec::new();
        loop {
            match self.byte() {
                ETX => break,
                b => message.push(b),
            }
            assert!(message.len() <= 200, "response too long");
        }
        assert_eq!(self.byte(), lrc(&message), "response LRC");
        String::from_utf8(message).unwrap()
    }

    /// Sends a request, expects ACK, reads the response and acknowledges it.
    fn request(&mut self, message: &str) -> String {
        self.send(&frame(message.as_bytes()));
        assert_eq!(self.byte(), ACK, "request {message:?} acknowledged");
        let r = self.response();
        self.send(&[ACK]);
        r
    }
}

/// An H request built field by field as the reference lays it out (162 characters).
fn h_request(seq: u8, retry: u8, ticket: u32, operator: &str, total_cents: u64) -> String {
    let amount = |cents: u64| format!("{:>11}", format!("{cents:03}"));
    let mut m = format!("H{seq:02}{retry}");
    m += "20261122"; // ticket date
    m += "201500"; // ticket time
    m += operator; // INSZ
    m += "BODO0010000001"; // ECR production number
    m += &format!("{ticket:>6}");
    m += "NS";
    m += &amount(total_cents);
    for (rate, cents) in [("2100", total_cents), ("1200", 0), (" 600", 0), (" 000", 0)] {
        m += rate;
        m += &amount(cents);
    }
    m += &format!("c2b9{}797bc46f", "0".repeat(28)); // PLU hash, 40 hex characters
    assert_eq!(m.len(), 162);
    m
}

struct Signed {
    event_counter: u64,
    total_counter: u64,
    signature: String,
}

fn check_h(r: &str, header: &str, code: &str) -> Signed {
    assert_eq!(r.len(), 109, "H response width: {r:?}");
    assert_eq!(&r[..4], header);
    assert_eq!(&r[4..10], code, "{r:?}");
    assert_eq!(&r[10..21], "DEVFDMD0001");
    assert!(r[21..35].starts_with("DEVSW-"), "VSC id {r:?}");
    assert!(r[35..43].bytes().all(|b| b.is_ascii_digit()), "FDM date");
    assert!(r[43..49].bytes().all(|b| b.is_ascii_digit()), "FDM time");
    assert_eq!(&r[49..51], "NS");
    let signature = r[69..109].to_owned();
    assert!(
        signature
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)),
        "signature {signature:?}"
    );
    Signed {
        event_counter: r[51..60].trim().parse().unwrap(),
        total_counter: r[60..69].trim().parse().unwrap(),
        signature,
    }
}

/// The whole conversation; returns the total counter of its signed H.
fn conversation(link: &mut Link, seq: u8, ticket: u32) -> u64 {
    let s = link.request(&format!("S{seq:02}0"));
    assert_eq!(s, format!("S{seq:02}0000000DEVFDMD0001"));

    let i = link.request(&format!("I{seq:02}0"));
    assert_eq!(i.len(), 59, "{i:?}");
    assert_eq!(&i[4..21], "000000DEVFDMD0001");
    assert_eq!(&i[41..42], "1", "protocol version");
    assert!(i[42..56].starts_with("DEVSW-"), "{i:?}");

    let p = link.request(&format!("P{:02}012345", seq + 1));
    assert_eq!(p.len(), 35);
    assert_eq!(&p[4..10], "000000");

    let seq = seq + 2;
    let h = h_request(seq, 0, ticket, "85073003328", 1410);
    let first = check_h(&link.request(&h), &h[..4], "000000");

    // The register did not see our response and sends the same request again (retry 1):
    // answered from the journal with 102 and the same signature.
    let mut resend = h.clone().into_bytes();
    resend[3] = b'1';
    let resend = String::from_utf8(resend).unwrap();
    let again = check_h(&link.request(&resend), &resend[..4], "102000");
    assert_eq!(again.signature, first.signature);
    assert_eq!(again.total_counter, first.total_counter);
    assert_eq!(again.event_counter, first.event_counter);

    // Odoo 19's driver resends after 1.4 s with the NEXT sequence number and the retry counter
    // set: the same event, answered with 102 and the first signature (not signed twice).
    let odoo = h_request(seq + 1, 1, ticket, "85073003328", 1410);
    let odoo_again = check_h(&link.request(&odoo), &odoo[..4], "102000");
    assert_eq!(odoo_again.signature, first.signature);
    assert_eq!(odoo_again.total_counter, first.total_counter);

    // A response the register could not read: NAK gets it again.
    link.send(&frame(format!("S{:02}0", seq + 1).as_bytes()));
    assert_eq!(link.byte(), ACK);
    let r1 = link.response();
    link.send(&[NAK]);
    assert_eq!(link.response(), r1);
    link.send(&[ACK]);

    // A frame with a bad LRC: NAK and nothing else.
    let mut bad = frame(format!("S{:02}0", seq + 2).as_bytes());
    *bad.last_mut().unwrap() ^= 0x55;
    link.send(&bad);
    assert_eq!(link.byte(), NAK);
    assert!(link.nothing_more());

    // Garbage in a field: 207, full width, nothing signed.
    let garbage = h_request(seq + 3, 0, ticket + 1, "85O73003328", 990);
    let r = link.request(&garbage);
    assert_eq!(r.len(), 109);
    assert_eq!(&r[4..10], "207000", "{r:?}");
    assert_eq!(r[21..].trim(), "", "no signature on an error");
    // An operator that is 11 digits but not a valid INSZ: refused by the core, also 207.
    let r = link.request(&h_request(seq + 4, 0, ticket + 2, "85073003329", 990));
    assert_eq!(&r[4..10], "207000", "{r:?}");
    // An unknown identifier: 206.
    let r = link.request(&format!("X{:02}0", seq + 5));
    assert_eq!(r, format!("X{:02}0206000DEVFDMD0001", seq + 5));
    first.total_counter
}

fn open_pty() -> (std::fs::File, std::fs::File, String) {
    use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
    use std::os::unix::fs::OpenOptionsExt;
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).unwrap();
    grantpt(&master).unwrap();
    unlockpt(&master).unwrap();
    let name = ptsname(&master, Vec::new()).unwrap().into_string().unwrap();
    // Hold the terminal side open and raw from the start, so nothing the register sends before
    // fdmd opens it is echoed back by the line discipline.
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
fn a_cash_register_speaks_fdm_v1_over_tcp_and_a_serial_line() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = PluginDir::new(dir.path());
    plugins.add_signed(&built_plugin("libfdmd_plugin_fdm_v1.so"), "fdm-v1.so");
    let (master, _slave, pty) = open_pty();
    let tcp = free_port();
    let config = plugins.section(&format!(
        "[[plugins.instance]]\nname = \"fdm-v1\"\nfile = \"fdm-v1.so\"\nregister = \"ecr-1\"\nisolate = true\ntcp_listen = \"127.0.0.1:{tcp}\"\nserial = \"{pty}\"\nserial_baud = 19200\n"
    ));
    let d = Daemon::start_dev_with_config(&config);

    drop(LineClient::connect(([127, 0, 0, 1], tcp).into())); // waits until the port is up
    let tcp_stream = std::net::TcpStream::connect(("127.0.0.1", tcp)).unwrap();
    let mut over_tcp = Link::new(tcp_stream.try_clone().unwrap(), tcp_stream);
    let h_tcp = conversation(&mut over_tcp, 10, 101);

    let mqtt = mqtt_order(&d, "between-the-registers");
    assert_eq!(mqtt["status"], "signed", "{mqtt}");
    assert_eq!(mqtt["total_counter"].as_u64().unwrap(), h_tcp + 1);

    let mut over_serial = Link::new(master.try_clone().unwrap(), master);
    // fdmd opens the device in its own thread: probe with S until it answers (bounded).
    let mut answered = false;
    for attempt in 0..20 {
        over_serial.send(&frame(format!("S{:02}0", 90 + attempt % 10).as_bytes()));
        if over_serial
            .rx
            .recv_timeout(Duration::from_millis(500))
            .is_ok_and(|b| b == ACK)
        {
            let _ = over_serial.response();
            over_serial.send(&[ACK]);
            answered = true;
            break;
        }
    }
    assert!(answered, "the serial side never answered");
    let h_serial = conversation(&mut over_serial, 50, 202);
    assert_eq!(h_serial, h_tcp + 2, "one numbering for plugins and MQTT");

    // Both H events are in the journal, in the same series as the MQTT order, once each.
    let records = journal_records(&d);
    let pre: Vec<&Value> = records
        .iter()
        .filter(|r| r["body"]["source"] == "precomputed")
        .collect();
    assert_eq!(pre.len(), 2, "exactly the two signed H requests");
    assert_eq!(pre[0]["body"]["register"], "ecr-1");
    assert_eq!(pre[0]["body"]["ecr_id"], "BODO0010000001");
    assert_eq!(pre[0]["body"]["pos_ticket_number"], "101");
    assert_eq!(pre[0]["body"]["total"], "14.10");
    assert_eq!(pre[1]["body"]["pos_ticket_number"], "202");
    let (code, out) = support::fdmctl(&["verify", "--data-dir", d.data_dir().to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
}
