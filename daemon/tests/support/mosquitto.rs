//! A real Mosquitto for end-to-end tests of external mode, run with the shipped
//! `packaging/mosquitto/fdmd.conf` and `fdmd.acl` (only the listener, the files and the
//! persistence directory changed) on a free loopback port, killed when dropped.
//!
//! Include with `#[path = "support/mosquitto.rs"] mod mosquitto;`. Without mosquitto,
//! [`Mosquitto::binaries`] says so and the test is skipped, unless FDMD_REQUIRE_MOSQUITTO is set
//! (tests/run sets it and installs mosquitto).
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running mosquitto.
pub struct Mosquitto {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    dir: tempfile::TempDir,
}

/// An executable on PATH (or in /usr/sbin, /usr/bin).
pub fn find(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn shipped(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../packaging/mosquitto")
        .join(file)
}

impl Mosquitto {
    /// `(mosquitto, mosquitto_passwd)`, or `None` when they are missing and not required.
    pub fn binaries() -> Option<(PathBuf, PathBuf)> {
        match (find("mosquitto"), find("mosquitto_passwd")) {
            (Some(m), Some(p)) => Some((m, p)),
            _ if std::env::var_os("FDMD_REQUIRE_MOSQUITTO").is_some() => {
                panic!("FDMD_REQUIRE_MOSQUITTO is set but mosquitto is not installed")
            }
            _ => {
                eprintln!(
                    "*** SKIPPED: mosquitto is not installed (apt-get install mosquitto) ***"
                );
                None
            }
        }
    }

    /// Starts it with these users (name, password) in its password file.
    pub fn start(bins: &(PathBuf, PathBuf), users: &[(&str, &str)]) -> Mosquitto {
        Mosquitto::start_with(bins, users, "")
    }

    /// Like [`Mosquitto::start`], with `extra` appended to the configuration (e.g. a TLS
    /// listener).
    pub fn start_with(bins: &(PathBuf, PathBuf), users: &[(&str, &str)], extra: &str) -> Mosquitto {
        let dir = tempfile::tempdir().unwrap();
        let passwd = dir.path().join("fdmd.passwd");
        for (i, (user, pass)) in users.iter().enumerate() {
            let mut cmd = Command::new(&bins.1);
            if i == 0 {
                cmd.arg("-c");
            }
            let status = cmd.arg("-b").arg(&passwd).arg(user).arg(pass).status();
            assert!(status.unwrap().success(), "mosquitto_passwd {user}");
        }
        let acl = dir.path().join("fdmd.acl");
        std::fs::copy(shipped("fdmd.acl"), &acl).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // The shipped file, with only the listener, the file paths and the persistence directory
        // changed; each substitution must find its line.
        let mut conf = String::new();
        let mut replaced = 0;
        for line in std::fs::read_to_string(shipped("fdmd.conf"))
            .unwrap()
            .lines()
        {
            let key = line.split_whitespace().next().unwrap_or("");
            let line = match key {
                "listener" => format!("listener {port} 127.0.0.1"),
                "password_file" => format!("password_file {}", passwd.display()),
                "acl_file" => format!("acl_file {}", acl.display()),
                _ => line.to_owned(),
            };
            replaced += usize::from(matches!(key, "listener" | "password_file" | "acl_file"));
            conf += &line;
            conf.push('\n');
        }
        assert_eq!(replaced, 3, "the shipped fdmd.conf changed shape");
        conf += &format!(
            "persistence_location {}/\nlog_dest stderr\nlog_type all\n",
            dir.path().display()
        );
        if rustix::process::geteuid().is_root() {
            // Otherwise mosquitto drops to its own user, which cannot read the temporary files.
            conf += "user root\n";
        }
        conf += extra;
        let conf_path = dir.path().join("mosquitto.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let log = std::fs::File::create(dir.path().join("mosquitto.log")).unwrap();
        let mut child = Command::new(&bins.0)
            .arg("-c")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(addr).is_err() {
            let log = std::fs::read_to_string(dir.path().join("mosquitto.log")).unwrap_or_default();
            if let Some(status) = child.try_wait().unwrap() {
                panic!("mosquitto exited with {status}:\n{log}");
            }
            assert!(
                Instant::now() < deadline,
                "mosquitto did not listen within 10 s:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Mosquitto { child, addr, dir }
    }

    /// What mosquitto logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- mosquitto log ---\n{}", self.log());
        }
    }
}
