//! A private PC/SC lab for one test: its own pcscd (in a private mount namespace, so its socket
//! is ours and a system pcscd is left alone), a vpcd virtual reader on a free port, and the
//! virtual VAT Signing Card of `tests/vsc/vsc_card.py` with a key generated for this run.
//!
//! Needs root (for `unshare --mount`), `pcscd`, `vsmartcard-vpcd` and `python3-cryptography`.
//! When something is missing the test fails, unless `FDMD_ALLOW_NO_PCSC=1` lets it skip.
#![allow(dead_code, clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The VSC id of the virtual card.
pub const CARD_ID: &str = "0000000196-860";
/// Its PIN.
pub const PIN: &str = "12345";
const VPCD_DRIVER: &str = "/usr/lib/pcsc/drivers/serial/libifdvpcd.so";

pub struct Lab {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub seed: [u8; 32],
    pcscd: Option<Child>,
    card: Option<Child>,
}

fn missing() -> Option<String> {
    let has = |cmd: &str, args: &[&str]| {
        Command::new(cmd)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !Path::new("/usr/sbin/pcscd").exists() && !has("pcscd", &["--version"]) {
        return Some("pcscd (Debian package pcscd)".into());
    }
    if !Path::new(VPCD_DRIVER).exists() {
        return Some(format!("{VPCD_DRIVER} (Debian package vsmartcard-vpcd)"));
    }
    if !has(
        "/usr/bin/python3",
        &[
            "-c",
            "import cryptography.hazmat.primitives.asymmetric.ed25519",
        ],
    ) {
        return Some("python3-cryptography".into());
    }
    if !has("unshare", &["--mount", "--propagation", "private", "true"]) {
        return Some("`unshare --mount` (needs root)".into());
    }
    None
}

/// A free TCP port whose successor is free too (vpcd opens one port per virtual reader). Chosen
/// at random in 20000..60000 rather than by the kernel's ephemeral allocation, which hands the
/// same port to two tests that ask one right after the other (nextest runs them in parallel, and
/// vpcd binds the port only later).
fn free_port_pair() -> u16 {
    for _ in 0..200 {
        let mut r = [0u8; 2];
        getrandom::fill(&mut r).unwrap();
        let port = 20000 + (u16::from_le_bytes(r) % 20000) * 2;
        let free = |p: u16| std::net::TcpListener::bind(("0.0.0.0", p)).is_ok();
        if free(port) && free(port + 1) {
            return port;
        }
    }
    panic!("no free pair of TCP ports");
}

fn stop_child(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
}

impl Lab {
    /// Starts pcscd and the card (the card then waits for its PIN). `None` when the tools are
    /// missing and `FDMD_ALLOW_NO_PCSC=1` allows skipping.
    pub fn start(card_delay_ms: u64) -> Option<Lab> {
        if let Some(what) = missing() {
            if std::env::var("FDMD_ALLOW_NO_PCSC").as_deref() == Ok("1") {
                eprintln!("SKIPPED: {what} is missing (FDMD_ALLOW_NO_PCSC=1)");
                return None;
            }
            panic!(
                "the virtual card tests need {what}; tests/run installs it (or set FDMD_ALLOW_NO_PCSC=1 to skip)"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).unwrap();
        let state = serde_json::json!({
            "seed": hex::encode(seed), "id": CARD_ID, "pin": PIN, "tries": 3, "max_tries": 3,
        });
        std::fs::write(dir.path().join("card.json"), state.to_string()).unwrap();
        let mut lab = Lab {
            dir,
            port: free_port_pair(),
            seed,
            pcscd: None,
            card: None,
        };
        lab.start_pcscd();
        lab.insert_card(card_delay_ms);
        Some(lab)
    }

    /// The socket clients reach this lab's pcscd on (`PCSCLITE_CSOCK_NAME`).
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("run/pcscd.comm")
    }

    /// The name of the reader the card is in.
    pub fn reader(&self) -> String {
        format!("fdmd test VSC {} 00 00", self.port)
    }

    /// The card's public key.
    pub fn public_key(&self) -> Vec<u8> {
        ed25519_dalek::SigningKey::from_bytes(&self.seed)
            .verifying_key()
            .to_bytes()
            .to_vec()
    }

    /// Extra configuration for fdmd.
    pub fn config(&self) -> String {
        format!(
            "[signer]\nbackend = \"pcsc\"\n[signer.pcsc]\nreader = \"{}\"\n",
            self.reader()
        )
    }

    /// Environment for fdmd.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![(
            "PCSCLITE_CSOCK_NAME",
            self.socket().to_string_lossy().into_owned(),
        )]
    }

    pub fn start_pcscd(&mut self) {
        let run = self.dir.path().join("run");
        let conf = self.dir.path().join("reader.conf.d");
        std::fs::create_dir_all(&run).unwrap();
        std::fs::create_dir_all(&conf).unwrap();
        let _ = std::fs::remove_file(self.socket());
        std::fs::write(
            conf.join("vpcd"),
            format!(
                "FRIENDLYNAME \"fdmd test VSC {port}\"\nDEVICENAME /dev/null:0x{port:04X}\nLIBPATH {VPCD_DRIVER}\nCHANNELID 0x{port:04X}\n",
                port = self.port
            ),
        )
        .unwrap();
        let script = format!(
            "mkdir -p /run/pcscd && mount --bind '{}' /run/pcscd && exec pcscd -f -c '{}'",
            run.display(),
            conf.display()
        );
        let log = std::fs::File::create(self.dir.path().join("pcscd.log")).unwrap();
        let child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.pcscd = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        while !self.socket().exists() {
            assert!(
                Instant::now() < deadline,
                "pcscd did not start: {}",
                std::fs::read_to_string(self.dir.path().join("pcscd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops pcscd: the reader is gone (and the card with it).
    pub fn stop_pcscd(&mut self) {
        stop_child(&mut self.pcscd);
        self.wait_card_exit();
    }

    /// Puts the card in the reader (its state file keeps its key, PIN and tries).
    pub fn insert_card(&mut self, delay_ms: u64) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/vsc/vsc_card.py");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("card.log"))
            .unwrap();
        let child = Command::new("/usr/bin/python3")
            .arg(script)
            .args(["--port", &self.port.to_string(), "--state"])
            .arg(self.dir.path().join("card.json"))
            .args(["--delay-ms", &delay_ms.to_string()])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.card = Some(child);
    }

    /// Pulls the card out.
    pub fn pull_card(&mut self) {
        stop_child(&mut self.card);
    }

    fn wait_card_exit(&mut self) {
        if let Some(c) = self.card.as_mut() {
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    self.card = None;
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        stop_child(&mut self.card);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        stop_child(&mut self.card);
        stop_child(&mut self.pcscd);
        if std::thread::panicking() {
            for log in ["card.log", "pcscd.log"] {
                let text = std::fs::read_to_string(self.dir.path().join(log)).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(60).collect();
                eprintln!("--- {log} (last lines) ---");
                for line in tail.iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
    }
}
