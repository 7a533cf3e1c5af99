//! Starting the real `fdmd` binary for end-to-end tests: free loopback ports, a temporary data
//! directory, bounded waits, and a clean stop when dropped.
#![allow(dead_code, clippy::unwrap_used)]

use hyper::{Method, StatusCode};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const FDMD: &str = env!("CARGO_BIN_EXE_fdmd");

/// The `fdmctl` binary (package `fdmctl`) of the same build as [`FDMD`]: `cargo build
/// --workspace`, `cargo test --workspace` and `cargo nextest run --workspace` build it.
pub fn fdmctl_bin() -> PathBuf {
    let path = Path::new(FDMD).with_file_name(format!("fdmctl{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "fdmctl not found at {}: run `cargo build -p fdmctl` or test with --workspace",
        path.display()
    );
    path
}

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Daemon {
    pub child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub http: SocketAddr,
    pub mqtt: SocketAddr,
    pub config_file: Option<PathBuf>,
}

impl Daemon {
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `fdmd --dev` on free ports.
    pub fn start_dev() -> Daemon {
        Self::start_dev_on(|_| {})
    }

    /// `fdmd --dev` on free ports, on a data directory (mode 0700) that `prepare` fills first
    /// (e.g. with a journal written by an older build).
    pub fn start_dev_on(prepare: impl FnOnce(&Path)) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        std::fs::set_permissions(&data, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        prepare(&data);
        let (http, mqtt) = (free_port(), free_port());
        let child = Command::new(FDMD)
            .args(["--dev", "--data-dir"])
            .arg(&data)
            .args([
                "--http-listen",
                &format!("127.0.0.1:{http}"),
                "--mqtt-listen",
                &format!("127.0.0.1:{mqtt}"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Self::wait_ready(Daemon {
            child: Some(child),
            dir,
            http: ([127, 0, 0, 1], http).into(),
            mqtt: ([127, 0, 0, 1], mqtt).into(),
            config_file: None,
        })
    }

    /// `fdmd --config FILE` (production mode) with `extra` TOML appended to a generated file.
    pub fn start_with_config(extra: &str, envs: &[(&str, String)]) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let (http, mqtt) = (free_port(), free_port());
        let config_file = write_config(dir.path(), http, mqtt, extra);
        let log = std::fs::File::create(dir.path().join("fdmd.log")).unwrap();
        let mut cmd = Command::new(FDMD);
        cmd.arg("--config")
            .arg(&config_file)
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        Self::wait_ready(Daemon {
            child: Some(child),
            dir,
            http: ([127, 0, 0, 1], http).into(),
            mqtt: ([127, 0, 0, 1], mqtt).into(),
            config_file: Some(config_file),
        })
    }

    /// `fdmd --dev --config FILE` with `extra` TOML in a drop-in; the daemon's log (stderr) goes
    /// to `DIR/fdmd.log` (see [`Daemon::log`]).
    pub fn start_dev_with_config(extra: &str) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let (http, mqtt) = (free_port(), free_port());
        let config_file = write_config(dir.path(), http, mqtt, extra);
        let log = std::fs::File::create(dir.path().join("fdmd.log")).unwrap();
        let child = Command::new(FDMD)
            .arg("--dev")
            .arg("--config")
            .arg(&config_file)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Self::wait_ready(Daemon {
            child: Some(child),
            dir,
            http: ([127, 0, 0, 1], http).into(),
            mqtt: ([127, 0, 0, 1], mqtt).into(),
            config_file: Some(config_file),
        })
    }

    /// What the daemon logged so far (only for [`Daemon::start_with_config`] and
    /// [`Daemon::start_dev_with_config`]).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("fdmd.log")).unwrap_or_default()
    }

    fn wait_ready(mut d: Daemon) -> Daemon {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = d.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("fdmd exited during start-up: {status}\n{}", d.log());
            }
            if let Ok((StatusCode::OK, _)) = d.try_request(Method::GET, "/v1/status", None, None) {
                return d;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("fdmd did not answer on {} within 30 s", d.http);
    }

    pub fn try_request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Value), String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (status, bytes) = rt
            .block_on(fdmd::client::request(
                self.http,
                method,
                path,
                token,
                body,
                Duration::from_secs(10),
            ))
            .map_err(|e| e.to_string())?;
        Ok((
            status,
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned())),
        ))
    }

    pub fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> (StatusCode, Value) {
        self.try_request(method, path, token, body).unwrap()
    }

    /// Stops (SIGTERM) and starts the daemon again on the same configuration, data and ports.
    pub fn restart(&mut self) {
        assert!(self.stop().success());
        let config = self
            .config_file
            .clone()
            .expect("restart needs start_with_config");
        let child = Command::new(FDMD)
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok((StatusCode::OK, _)) = self.try_request(Method::GET, "/v1/status", None, None)
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("fdmd did not come back within 30 s");
    }

    /// The development register's HTTP token (`dev-credentials.json`, written by `--dev`).
    pub fn dev_register_token(&self) -> String {
        let text = std::fs::read_to_string(self.data_dir().join("dev-credentials.json")).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        v["http_token"].as_str().unwrap().to_owned()
    }

    pub fn admin_token(&self) -> String {
        fdmd::access::read_admin_token(&self.data_dir()).unwrap()
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("fdmd did not stop within 20 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn write_config(dir: &Path, http: u16, mqtt: u16, extra: &str) -> PathBuf {
    let file = dir.join("fdmd.toml");
    std::fs::write(
        &file,
        format!(
            "[fdm]\nid = \"DEVFDMD0001\"\ndata_dir = \"{}\"\n[establishment]\nname = \"Test Brasserie\"\naddress = \"Grote Markt 1, 1000 Brussel\"\nvat_number = \"BE0123456749\"\n[http]\nlisten = \"127.0.0.1:{http}\"\n[mqtt]\nlisten = \"127.0.0.1:{mqtt}\"\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    // Extra settings go in a drop-in, as an installer would add them.
    std::fs::create_dir_all(dir.join("conf.d")).unwrap();
    std::fs::write(dir.join("conf.d/50-test.toml"), extra).unwrap();
    file
}

pub fn order(request_id: &str, lines: &[(&str, i64, &str, &str)]) -> Vec<u8> {
    let lines: Vec<Value> = lines
        .iter()
        .map(|(d, q, p, v)| serde_json::json!({"description": d, "quantity": q, "unit_price": p, "vat": v}))
        .collect();
    serde_json::to_vec(&serde_json::json!({"request_id": request_id, "operator": "85073003328", "event_type": "normal", "lines": lines})).unwrap()
}

/// Runs fdmctl with arguments; returns (exit code, stdout).
pub fn fdmctl(args: &[&str]) -> (i32, String) {
    let out = Command::new(fdmctl_bin()).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}
