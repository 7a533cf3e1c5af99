//! A real headless Chromium driven through WebDriver (`chromedriver`, the `fantoccini` client)
//! for the web page's tests, plus a raw HTTP/1.1 helper that shows response headers and sends
//! cookies. Every wait is bounded; chromedriver (and with it Chromium) is killed when dropped.
//!
//! Without `/usr/bin/chromium` or `chromedriver` the tests are skipped, unless
//! FDMD_REQUIRE_MOSQUITTO or CI is set (tests/run sets the first and installs both).
#![allow(dead_code, clippy::unwrap_used)]

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long any one wait lasts at most.
pub const SOON: Duration = Duration::from_secs(20);

/// An executable on PATH (or in /usr/bin, /usr/lib/chromium).
fn find(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/usr/lib/chromium"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// (chromium, chromedriver), or `None` (skip) when one is missing and neither
/// FDMD_REQUIRE_MOSQUITTO nor CI is set.
pub fn browser_binaries() -> Option<(PathBuf, PathBuf)> {
    match (find("chromium"), find("chromedriver")) {
        (Some(c), Some(d)) => Some((c, d)),
        _ if std::env::var_os("FDMD_REQUIRE_MOSQUITTO").is_some()
            || std::env::var_os("CI").is_some() =>
        {
            panic!(
                "FDMD_REQUIRE_MOSQUITTO or CI is set but chromium/chromedriver are missing (apt-get install chromium chromium-driver)"
            )
        }
        _ => {
            eprintln!(
                "*** SKIPPED: chromium or chromedriver is not installed (apt-get install chromium chromium-driver) ***"
            );
            None
        }
    }
}

/// The axe-core accessibility checker: the file `FDMD_AXE_JS` names (tests/run installs
/// axe-core with npm and sets it). `None` only when `FDMD_SKIP_AXE=1` says so explicitly;
/// otherwise a missing or unreadable file fails the test: never a silent pass.
pub fn axe_script() -> Option<String> {
    if std::env::var("FDMD_SKIP_AXE").is_ok_and(|v| v == "1") {
        eprintln!("*** FDMD_SKIP_AXE=1: the accessibility check (axe-core) is SKIPPED ***");
        return None;
    }
    let Some(path) = std::env::var_os("FDMD_AXE_JS") else {
        panic!(
            "FDMD_AXE_JS is not set: run the tests through tests/run, which installs axe-core \
             (npm) and sets it, or set FDMD_AXE_JS=/path/to/axe.min.js \
             (FDMD_SKIP_AXE=1 skips the accessibility check explicitly)"
        );
    };
    match std::fs::read_to_string(&path) {
        Ok(text) if text.contains("axe") => Some(text),
        Ok(_) => panic!("FDMD_AXE_JS={} is not axe-core", Path::new(&path).display()),
        Err(e) => panic!("FDMD_AXE_JS={}: {e}", Path::new(&path).display()),
    }
}

/// Where screenshots are kept: `$CARGO_TARGET_DIR/web-screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("web-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A headless Chromium session. chromedriver runs in a process group of its own, with the
/// Chromium it starts; the whole group is killed when the session ends or the test panics.
pub struct Browser {
    pub client: Client,
    driver: Child,
    pub profile: tempfile::TempDir,
    /// Where Chromium saves downloads.
    pub downloads: PathBuf,
    base: String,
}

impl Browser {
    /// Starts chromedriver on a free port and a fresh headless Chromium, for pages of `base`
    /// (e.g. `http://127.0.0.1:8080`).
    pub async fn start(chromium: &Path, chromedriver: &Path, base: &str) -> Browser {
        let port = super::support::free_port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + SOON;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let downloads = profile.path().join("downloads");
        std::fs::create_dir(&downloads).unwrap();
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-breakpad", "--disable-crash-reporter",
                    "--disable-dev-shm-usage", "--window-size=1100,1000",
                    format!("--user-data-dir={}", profile.path().join("profile").display()),
                ],
                "prefs": {
                    "download.default_directory": downloads,
                    "download.prompt_for_download": false,
                },
            },
        });
        let Value::Object(caps) = caps else {
            unreachable!()
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = tokio::time::timeout(
            SOON,
            ClientBuilder::new(connector)
                .capabilities(caps)
                .connect(&format!("http://127.0.0.1:{port}")),
        )
        .await
        .expect("chromedriver did not start a session in time")
        .expect("WebDriver session");
        Browser {
            client,
            driver,
            profile,
            downloads,
            base: base.to_owned(),
        }
    }

    /// Opens `path` of the page's server.
    pub async fn goto(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap();
    }

    /// Waits (bounded) until `#id` is displayed.
    pub async fn wait_shown(&self, id: &str) {
        let deadline = Instant::now() + SOON;
        loop {
            if let Ok(el) = self.client.find(Locator::Id(id)).await
                && el.is_displayed().await.unwrap_or(false)
            {
                return;
            }
            assert!(Instant::now() < deadline, "#{id} not shown within {SOON:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (bounded) until `#id`'s text satisfies `ok`; returns it.
    pub async fn wait_text(&self, id: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + SOON;
        let mut last = String::new();
        loop {
            if let Ok(el) = self.client.find(Locator::Id(id)).await
                && let Ok(text) = el.text().await
            {
                if ok(&text) {
                    return text;
                }
                last = text;
            }
            assert!(
                Instant::now() < deadline,
                "#{id} never had the expected text within {SOON:?}; last: {last:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Types `text` into `#id` (after clearing it).
    pub async fn type_into(&self, id: &str, text: &str) {
        let el = self.client.find(Locator::Id(id)).await.unwrap();
        el.clear().await.unwrap();
        el.send_keys(text).await.unwrap();
    }

    /// Clicks the element `css` selects.
    pub async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }

    /// Runs `script` in the page, which must call its last argument with the result.
    pub async fn run_async(&self, script: &str) -> Value {
        tokio::time::timeout(SOON, self.client.execute_async(script, vec![]))
            .await
            .expect("script did not finish in time")
            .unwrap()
    }

    /// Runs axe-core (`script`, the text of axe.min.js) on the page as shown and returns its
    /// violations of impact serious or critical, one line each. The script is injected through
    /// WebDriver, which the page's Content-Security-Policy does not govern (the page itself
    /// could not load it: `script-src 'self'`).
    pub async fn axe(&self, script: &str) -> Vec<String> {
        let loaded = self
            .client
            .execute(&format!("{script}\n;return typeof window.axe;"), vec![])
            .await
            .unwrap();
        assert!(
            loaded == "object" || loaded == "function",
            "axe-core did not load in the page: {loaded}"
        );
        let found = self
            .run_async(
                "const done = arguments[arguments.length - 1];
                 window.axe.run(document, {resultTypes: ['violations']}).then(
                   (r) => done(r.violations.map((v) => ({id: v.id, impact: v.impact, help: v.help,
                     nodes: v.nodes.map((n) => n.target.join(' ') + ': ' + n.failureSummary)}))),
                   (e) => done('axe failed: ' + e));",
            )
            .await;
        let Value::Array(violations) = found else {
            panic!("{found}");
        };
        violations
            .iter()
            .filter(|v| matches!(v["impact"].as_str(), Some("serious" | "critical")))
            .map(|v| {
                format!(
                    "{} ({}): {} at {}",
                    v["id"], v["impact"], v["help"], v["nodes"]
                )
            })
            .collect()
    }

    /// Saves a screenshot as `$CARGO_TARGET_DIR/web-screenshots/NAME.png`.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.unwrap();
        let path = screenshot_dir().join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }

    /// Ends the WebDriver session (chromedriver closes Chromium); dropping `self` then kills
    /// whatever is left of the group.
    pub async fn close(self) {
        let _ = tokio::time::timeout(SOON, self.client.clone().close()).await;
    }

    /// Kills chromedriver's process group, then every process still running with this
    /// session's own `--user-data-dir` (Chromium may have a process group of its own): only
    /// processes this test started.
    fn kill_group(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let marker = format!(
            "--user-data-dir={}",
            self.profile.path().join("profile").display()
        );
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return;
        };
        let pids: Vec<String> = entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .filter(|name| name.bytes().all(|b| b.is_ascii_digit()))
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| c.split(|b| *b == 0).any(|arg| arg == marker.as_bytes()))
            })
            .collect();
        if !pids.is_empty() {
            let _ = Command::new("kill")
                .arg("-KILL")
                .args(&pids)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.kill_group();
    }
}

/// One raw HTTP/1.1 exchange: returns (status, lower-case headers, body).
pub fn raw_http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(SOON)).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

/// The value of header `name` (lower case) in `headers`.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}
