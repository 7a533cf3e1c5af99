//! Plugin files for end-to-end tests: the real built `.so` files from `target/`, the C test
//! plugin compiled here with the system `cc` against the committed header, a plugin directory
//! with the right owner and modes, and signatures made with a test-fixture vendor key.
#![allow(dead_code, clippy::unwrap_used)]

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The test vendor's signing seed. A test fixture only: never trusted outside tests.
pub const TEST_VENDOR_SEED: [u8; 32] = [0x42; 32];
/// Another vendor, not trusted by the test configurations.
pub const OTHER_VENDOR_SEED: [u8; 32] = [0x17; 32];

/// `target/debug` (or wherever cargo put the fdmd binary under test).
pub fn target_dir() -> PathBuf {
    Path::new(super::support::FDMD)
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A built Rust plugin, e.g. `libfdmd_plugin_fdm_v1.so`.
pub fn built_plugin(file: &str) -> PathBuf {
    let p = target_dir().join(file);
    assert!(
        p.exists(),
        "{} is missing: build the plugins first (`cargo build --workspace`, as tests/run does)",
        p.display()
    );
    p
}

/// Compiles the C test plugin with `cc` and extra flags into `out`.
pub fn build_c_plugin(out: &Path, flags: &[&str]) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let status = std::process::Command::new("cc")
        .args([
            "-std=c11",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-pedantic",
            "-shared",
            "-fPIC",
        ])
        .arg("-I")
        .arg(root.join("plugin-api/include"))
        .args(flags)
        .arg(root.join("plugins/c-test/test_plugin.c"))
        .arg("-o")
        .arg(out)
        .status()
        .expect("the system C compiler `cc` is needed for the C plugin tests");
    assert!(status.success(), "cc failed for the C test plugin");
}

/// A plugin directory (mode 0755) inside `dir`.
pub struct PluginDir {
    pub path: PathBuf,
}

impl PluginDir {
    pub fn new(dir: &Path) -> PluginDir {
        let path = dir.join("plugins");
        std::fs::create_dir_all(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        PluginDir { path }
    }

    /// Copies a file in as `name` with mode 0755.
    pub fn add(&self, from: &Path, name: &str) -> PathBuf {
        let to = self.path.join(name);
        std::fs::copy(from, &to).unwrap();
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755)).unwrap();
        to
    }

    /// Signs `name` with a vendor seed (writes `name.sig`).
    pub fn sign(&self, name: &str, seed: &[u8; 32]) {
        let file = self.path.join(name);
        let sig = fdmd::plugins::checks::sign_file(&file, seed).unwrap();
        std::fs::write(fdmd::plugins::checks::signature_path(&file), sig).unwrap();
    }

    /// Adds and signs with the test vendor key.
    pub fn add_signed(&self, from: &Path, name: &str) -> PathBuf {
        let p = self.add(from, name);
        self.sign(name, &TEST_VENDOR_SEED);
        p
    }

    /// The `[plugins]` section trusting the test vendor.
    pub fn section(&self, extra: &str) -> String {
        self.section_with_timeout(5000, extra)
    }

    /// The `[plugins]` section with another call timeout.
    pub fn section_with_timeout(&self, call_timeout_ms: u64, extra: &str) -> String {
        format!(
            "[plugins]\ndir = \"{}\"\ntrusted_keys = [\"{}\"]\ncall_timeout_ms = {call_timeout_ms}\n{extra}\n",
            self.path.display(),
            fdmd::plugins::checks::public_key_hex(&TEST_VENDOR_SEED)
        )
    }
}

/// One `[[plugins.instance]]`.
pub fn instance(name: &str, file: &str, isolate: bool, tcp: u16, config: &str) -> String {
    format!(
        "[[plugins.instance]]\nname = \"{name}\"\nfile = \"{file}\"\nregister = \"{name}-till\"\nisolate = {isolate}\ntcp_listen = \"127.0.0.1:{tcp}\"\nconfig = {config}\n"
    )
}

/// One `[[plugins.instance]]` with the MQTT transport (and no TCP listener), bound to
/// `register`; `extra` adds keys (e.g. `mqtt_reply`).
pub fn mqtt_instance(name: &str, file: &str, isolate: bool, register: &str, extra: &str) -> String {
    format!(
        "[[plugins.instance]]\nname = \"{name}\"\nfile = \"{file}\"\nregister = \"{register}\"\nisolate = {isolate}\nmqtt = true\n{extra}\n"
    )
}

/// The development register's MQTT user name and password.
pub fn dev_mqtt_credentials(d: &super::support::Daemon) -> (String, String) {
    let creds: Value =
        serde_json::from_slice(&std::fs::read(d.data_dir().join("dev-credentials.json")).unwrap())
            .unwrap();
    (
        creds["mqtt_username"].as_str().unwrap().to_owned(),
        creds["mqtt_password"].as_str().unwrap().to_owned(),
    )
}

/// Every record of the daemon's journal, through `fdmctl export` (docs/journal-format.md §9).
pub fn journal_records(d: &super::support::Daemon) -> Vec<Value> {
    let (code, out) =
        super::support::fdmctl(&["export", "--data-dir", d.data_dir().to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    out.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["type"] == "record")
        .map(|l| serde_json::from_str(l["record"].as_str().unwrap()).unwrap())
        .collect()
}

/// A line-protocol client.
pub struct LineClient {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl LineClient {
    pub fn connect(addr: SocketAddr) -> LineClient {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match TcpStream::connect(addr) {
                Ok(stream) => {
                    stream
                        .set_read_timeout(Some(Duration::from_secs(10)))
                        .unwrap();
                    return LineClient {
                        stream,
                        buf: Vec::new(),
                    };
                }
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("cannot connect to {addr}: {e}"),
            }
        }
    }

    /// Sends a line and reads one answer line; `None` when the host closed the connection.
    pub fn ask(&mut self, line: &str) -> Option<String> {
        self.stream.write_all(format!("{line}\n").as_bytes()).ok()?;
        self.read_line()
    }

    /// Sends raw bytes.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Reads until `n` bytes arrived (or the connection closed).
    pub fn read_exact_or_eof(&mut self, n: usize) -> Vec<u8> {
        let mut chunk = [0u8; 1024];
        while self.buf.len() < n {
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(k) => self.buf.extend_from_slice(&chunk[..k]),
            }
        }
        let k = n.min(self.buf.len());
        self.buf.drain(..k).collect()
    }

    pub fn read_line(&mut self) -> Option<String> {
        let mut chunk = [0u8; 1024];
        loop {
            if let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=end).collect();
                return Some(String::from_utf8_lossy(&line).trim_end().to_owned());
            }
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(k) => self.buf.extend_from_slice(&chunk[..k]),
            }
        }
    }
}

/// Asks on fresh connections until the answer is `expected` (the helper may be restarting).
pub fn eventually(addr: SocketAddr, line: &str, expected: &str) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut attempts = 0;
    loop {
        attempts += 1;
        let mut c = LineClient::connect(addr);
        if c.ask(line).as_deref() == Some(expected) {
            return attempts;
        }
        assert!(
            Instant::now() < deadline,
            "{line} never answered {expected} within 20 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn order_json(request_id: &str) -> String {
    format!(
        r#"{{"request_id":"{request_id}","operator":"85073003328","event_type":"normal","lines":[{{"description":"Cola","quantity":1,"unit_price":"2.20","vat":"A"}}]}}"#
    )
}

/// Publishes an order as the development register over MQTT and waits for its receipt.
pub fn mqtt_order(d: &super::support::Daemon, request_id: &str) -> Value {
    let creds: Value =
        serde_json::from_slice(&std::fs::read(d.data_dir().join("dev-credentials.json")).unwrap())
            .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut o = MqttOptions::new(
            format!("plugin-test-{request_id}"),
            d.mqtt.ip().to_string(),
            d.mqtt.port(),
        );
        o.set_credentials(
            creds["mqtt_username"].as_str().unwrap(),
            creds["mqtt_password"].as_str().unwrap(),
        );
        let (client, mut events) = AsyncClient::new(o, 16);
        let base = "fdm/v1/registers/dev-register";
        client
            .subscribe(format!("{base}/receipts"), QoS::AtLeastOnce)
            .await
            .unwrap();
        let work = async {
            let mut published = false;
            loop {
                match events.poll().await.unwrap() {
                    Event::Incoming(Packet::SubAck(_)) if !published => {
                        published = true;
                        client
                            .publish(
                                format!("{base}/orders"),
                                QoS::AtLeastOnce,
                                false,
                                order_json(request_id),
                            )
                            .await
                            .unwrap();
                    }
                    Event::Incoming(Packet::Publish(p)) => {
                        let v: Value = serde_json::from_slice(&p.payload).unwrap();
                        if v["request_id"] == request_id {
                            return v;
                        }
                    }
                    _ => {}
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(15), work)
            .await
            .expect("no MQTT receipt within 15 s")
    })
}
