//! A throwaway PostgreSQL cluster for one test: `initdb` in a temporary directory, `postgres`
//! on a free loopback port with its Unix socket in that directory, stopped on drop. Run as root
//! (as in CI), the cluster runs as the `postgres` user the Debian package creates.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running cluster.
pub struct Pg {
    dir: tempfile::TempDir,
    bin: PathBuf,
    child: Option<Child>,
    port: u16,
    user: Option<(u32, u32)>,
}

/// The directory of the newest PostgreSQL server binaries (Debian: /usr/lib/postgresql/N/bin).
fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("FDMD_TEST_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "no PostgreSQL server under /usr/lib/postgresql/*/bin: install the Debian package \
             `postgresql` (tests/run does) or set FDMD_TEST_PG_BIN"
        ),
    }
}

/// uid and gid of the `postgres` user when running as root (initdb refuses root).
fn run_as() -> Option<(u32, u32)> {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find(|l| l.starts_with("Uid:"))?
        .split_whitespace()
        .nth(1)?
        .parse::<u32>()
        .ok()?;
    if uid != 0 {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let line = passwd.lines().find(|l| l.starts_with("postgres:"))?;
    let mut fields = line.split(':').skip(2);
    let uid = fields.next()?.parse().ok()?;
    let gid = fields.next()?.parse().ok()?;
    Some((uid, gid))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Pg {
    /// Creates and starts a cluster; waits (bounded) until it accepts connections. Not
    /// durable (fsync off): a throwaway cluster for the tests.
    pub fn start() -> Pg {
        Self::start_with(false)
    }

    /// A cluster with PostgreSQL's durable defaults (fsync, full page writes, synchronous
    /// commit on), as a production back office runs: for the benchmark.
    pub fn start_durable() -> Pg {
        Self::start_with(true)
    }

    fn start_with(durable: bool) -> Pg {
        let durability: &[&str] = if durable {
            &[]
        } else {
            &[
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ]
        };
        let bin = bin_dir();
        let mut dir = tempfile::Builder::new()
            .prefix("fdmd-backoffice-pg")
            .tempdir()
            .expect("temp dir");
        let user = run_as();
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown temp dir");
        }
        let data = dir.path().join("data");
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--locale=C",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let out = as_user(&mut initdb, user).output().expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut last = String::new();
        // A port found free may be taken before postgres binds it: a few attempts.
        for _ in 0..5 {
            let port = free_port();
            let mut postgres = Command::new(bin.join("postgres"));
            postgres
                .arg("-D")
                .arg(&data)
                .args(["-p", &port.to_string(), "-k"])
                .arg(dir.path())
                .args(["-c", "listen_addresses=127.0.0.1"])
                .args(durability)
                .args(["-c", "max_connections=50"])
                .stdout(Stdio::null())
                .stderr(Stdio::from(
                    std::fs::File::create(dir.path().join("postgres.log")).expect("log file"),
                ));
            let child = as_user(&mut postgres, user)
                .spawn()
                .expect("start postgres");
            let mut pg = Pg {
                dir,
                bin: bin.clone(),
                child: Some(child),
                port,
                user,
            };
            if pg.wait_ready(Duration::from_secs(30)) {
                return pg;
            }
            last = std::fs::read_to_string(pg.dir.path().join("postgres.log")).unwrap_or_default();
            pg.stop();
            dir = std::mem::replace(&mut pg.dir, tempfile::tempdir().expect("temp dir"));
        }
        panic!("postgres did not start: {last}");
    }

    fn wait_ready(&mut self, limit: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(_)) = child.try_wait()
            {
                return false;
            }
            let ok = Command::new(self.bin.join("pg_isready"))
                .arg("-h")
                .arg(self.dir.path())
                .args(["-p", &self.port.to_string(), "-U", "postgres", "-q"])
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    /// libpq-style connection string for database `db` (over the Unix socket).
    pub fn conninfo(&self, db: &str) -> String {
        format!(
            "host={} port={} user=postgres dbname={db}",
            self.dir.path().display(),
            self.port
        )
    }

    /// The postmaster's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The directory of the cluster.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Runs SQL with psql against `db` (bounded in time).
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                &self.conninfo(db),
                "-c",
                sql,
            ])
            .output()
            .expect("psql");
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SIGINT: fast shutdown. Then wait, bounded; SIGKILL as the last resort.
        let _ = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

fn as_user(cmd: &mut Command, user: Option<(u32, u32)>) -> &mut Command {
    if let Some((uid, gid)) = user {
        cmd.gid(gid).uid(uid);
    }
    cmd
}

impl Drop for Pg {
    fn drop(&mut self) {
        self.stop();
    }
}
