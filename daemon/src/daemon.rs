//! The daemon's lifecycle: open everything, serve, stop cleanly.
//!
//! Start: data directory (0700) → its lock (`datadir_lock.rs`; a second fdmd stops here,
//! having written nothing) → signer → journal → access store → `daemon_start` record →
//! HTTP and MQTT listeners → `READY=1` (whatever the signer's state: that is in `STATUS=`).
//! Stop (SIGTERM/SIGINT): `STOPPING=1` → stop accepting → in-flight orders finish within
//! `daemon.shutdown_grace_ms` → `daemon_stop` record → restaurant snapshot → journal closed
//! (writer joined, WAL checkpointed into `journal.sqlite`). A receipt is never sent for a record
//! that is not durable.

use crate::access::{ClientKind, Credentials};
use crate::app::App;
use crate::assembly::AppBuilder;
use crate::config::Config;
use crate::http::HttpService;
use crate::journal::record::RecordKind;
use crate::mqtt::MqttService;
use anyhow::Context;
use serde_json::{Value, json};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Id of the register `--dev` enrols.
pub const DEV_REGISTER: &str = "dev-register";

/// A started daemon, for `main` and for tests that run it in-process.
pub struct Running {
    /// Shared context.
    pub app: Arc<App>,
    /// HTTP server.
    pub http: HttpService,
    /// MQTT side.
    pub mqtt: MqttService,
    /// Loaded plugins and their transports.
    pub plugins: crate::plugins::PluginService,
    /// Credentials of the development register (`--dev` only).
    pub dev_credentials: Option<Credentials>,
    /// SIGTERM and SIGINT, caught from before the first listener answers.
    signals: Signals,
    /// The data directory's lock, held until the daemon has stopped (dropped last).
    _lock: crate::datadir_lock::DataDirLock,
}

/// The signals that stop the daemon, installed before anything can be reached from outside (so
/// an early SIGTERM is a clean stop, never the default kill).
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

/// Creates the data directory with mode 0700 (or checks an existing one is not open to others).
pub fn prepare_data_dir(dir: &Path) -> anyhow::Result<()> {
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating data directory {}", dir.display()))?;
    }
    let mode = std::fs::metadata(dir)
        .with_context(|| format!("data directory {}", dir.display()))?
        .permissions()
        .mode();
    if mode & 0o007 != 0 {
        anyhow::bail!(
            "data directory {} is open to others (mode {:o}); it must be 0700",
            dir.display(),
            mode & 0o777
        );
    }
    Ok(())
}

/// How long start-up waits for the restaurant state before it opens the listeners anyway.
const RESTAURANT_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Opens everything and starts the listeners.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    let signals = Signals::install().context("installing signal handlers")?;
    let config = Arc::new(config);
    let data_dir = config.fdm.data_dir.clone();
    prepare_data_dir(&data_dir)?;
    // Before anything is written: a second fdmd on this directory stops here.
    let lock = crate::datadir_lock::lock(&data_dir)?;
    crate::systemd::status("opening the journal");
    // A start with a restaurant snapshot reads its state in milliseconds; a long fold (the first
    // start after an upgrade, a lost index) goes on while the daemon serves, orders waiting.
    let app = AppBuilder::new(config.clone())
        .restaurant_wait(RESTAURANT_WAIT)
        .build()?;
    let start_body = json!({"version": env!("CARGO_PKG_VERSION"), "dev": config.daemon.dev, "pid": std::process::id()});
    if let Err(e) = app.journal_event(RecordKind::DaemonStart, start_body).await {
        tracing::warn!("daemon start not journaled yet: {e}");
    }
    let dev_credentials = if config.daemon.dev {
        Some(dev_register(&app).await?)
    } else {
        None
    };
    spawn_snapshots(&app);
    // The back office copy ([backoffice], off by default): a task of its own, reading the
    // journal read-only; orders never wait for it.
    if let Some(copy) = crate::replication::spawn(&app) {
        app.status
            .add_admin_section("backoffice", move || copy.to_json());
    }
    crate::systemd::status("starting listeners");
    // MQTT first: once HTTP answers, a status it gives has both transports serving.
    let mqtt = MqttService::start(app.clone()).await?;
    // The GKS 2.0 FDM emulator, only when `[gks2_fdm]` is configured (not certified); before
    // HTTP, so that a daemon that answers its status serves the emulator too.
    if let Some(section) = &config.gks2_fdm {
        crate::gks2::emulator::start(section, &data_dir, app.shutdown.clone()).await?;
    }
    let http = HttpService::start(app.clone()).await?;
    let plugins = crate::plugins::PluginService::start(
        app.clone(),
        Some(mqtt.extra_client_options(crate::plugins::mqtt::CLIENT_SUFFIX, Vec::new())),
    )
    .await;
    Ok(Running {
        app,
        http,
        mqtt,
        plugins,
        dev_credentials,
        signals,
        _lock: lock,
    })
}

/// Enrols the development register, or reuses its credentials from `dev-credentials.json`.
async fn dev_register(app: &App) -> anyhow::Result<Credentials> {
    let file = app.config.fdm.data_dir.join("dev-credentials.json");
    if let Ok(bytes) = std::fs::read(&file)
        && let Ok(v) = serde_json::from_slice::<Value>(&bytes)
        && let (Some(user), Some(pass), Some(token)) = (
            v["mqtt_username"].as_str(),
            v["mqtt_password"].as_str(),
            v["http_token"].as_str(),
        )
        && app.access.check_mqtt(user, pass).is_some()
        && app
            .access
            .check_http(ClientKind::Register, DEV_REGISTER, token)
    {
        return Ok(Credentials {
            id: DEV_REGISTER.into(),
            kind: ClientKind::Register,
            mqtt_username: user.into(),
            mqtt_password: pass.into(),
            http_token: token.into(),
        });
    }
    let now = app.now();
    if app.access.active_register(DEV_REGISTER) {
        app.access
            .revoke(ClientKind::Register, DEV_REGISTER, &now)?;
    }
    app.journal_event(
        RecordKind::DeviceChange,
        json!({"action": "enrol", "device": "register", "id": DEV_REGISTER}),
    )
    .await
    .context("journaling the development register")?;
    let creds = app.access.enrol(ClientKind::Register, DEV_REGISTER, &now)?;
    crate::access::write_private_atomically(&file, &serde_json::to_vec_pretty(&creds)?)
        .with_context(|| format!("writing {}", file.display()))?;
    Ok(creds)
}

/// The `STATUS=` line: what fdmd serves, and why the signer cannot sign yet (if so).
fn status_line(serving: &str, signer_error: Option<impl std::fmt::Display>) -> String {
    match signer_error {
        None => serving.to_owned(),
        Some(e) => format!("{serving}; signer not ready: {e}"),
    }
}

impl Running {
    /// Serves until SIGTERM or SIGINT, feeding the systemd watchdog while the loops progress.
    pub async fn serve_until_signal(mut self) -> anyhow::Result<()> {
        let watchdog = crate::systemd::watchdog_interval();
        let tick = watchdog.map_or(Duration::from_secs(5), |w| w / 2);
        // READY=1 as soon as the listeners answer: fdmd is ready when it serves. A card that
        // waits for its PIN, or a missing reader, is the signer's state, not the daemon's: it
        // shows in STATUS=, /v1/status and the status topic (orders get error receipts
        // meanwhile), and systemd neither times the start out nor restarts the daemon over it.
        let mqtt = self
            .mqtt
            .local_addr()
            .map_or_else(|| "external broker".to_owned(), |a| a.to_string());
        let serving = format!("serving: HTTP {}, MQTT {mqtt}", self.http.local_addr());
        let mut last_status = status_line(&serving, self.app.signer.identity().err());
        crate::systemd::ready(&last_status);
        tracing::info!(
            "fdmd ready: HTTP on {}, MQTT on {mqtt}",
            self.http.local_addr()
        );
        if let Err(e) = self.app.signer.identity() {
            tracing::warn!("serving while the signer waits: {e}");
        }
        loop {
            tokio::select! {
                _ = self.signals.recv() => break,
                _ = tokio::time::sleep(tick) => {
                    let now = status_line(&serving, self.app.signer.identity().err());
                    if now != last_status {
                        crate::systemd::status(&now);
                        last_status = now;
                    }
                    let stalled = self.app.status.stalled(Duration::from_secs(30));
                    if stalled.is_empty() {
                        if watchdog.is_some() {
                            crate::systemd::watchdog_ping();
                        }
                    } else {
                        tracing::error!("loops not making progress: {stalled:?}; not feeding the watchdog");
                    }
                }
            }
        }
        self.stop().await;
        Ok(())
    }

    /// Stops accepting, lets in-flight orders finish within the grace time, journals the stop.
    pub async fn stop(self) {
        crate::systemd::stopping();
        tracing::info!("stopping");
        let grace = Duration::from_millis(self.app.config.daemon.shutdown_grace_ms);
        self.app.shutdown.cancel();
        let ((), (), ()) = tokio::join!(
            self.http.shutdown(grace),
            self.mqtt.shutdown(),
            self.plugins.shutdown()
        );
        if let Err(e) = self
            .app
            .journal_event(RecordKind::DaemonStop, json!({"reason": "signal"}))
            .await
        {
            tracing::warn!("daemon stop not journaled: {e}");
        }
        self.app.restaurant.snapshot_now().await;
        // Waits for the writer: queued records written, the WAL checkpointed into
        // journal.sqlite (a copy of that file alone is then the whole journal).
        let journal = self.app.registrar.journal().clone();
        match tokio::task::spawn_blocking(move || journal.shutdown()).await {
            Ok(Ok(())) => tracing::info!("journal closed"),
            Ok(Err(e)) => tracing::warn!("journal closed, not fully checkpointed: {e}"),
            Err(e) => tracing::warn!("journal close: {e}"),
        }
    }
}

/// How often the restaurant snapshot is written while records come in (start-up then folds
/// at most this much of the journal after it).
const SNAPSHOT_EVERY: Duration = Duration::from_secs(30);

/// Writes the restaurant snapshot every [`SNAPSHOT_EVERY`] when records were applied since.
fn spawn_snapshots(app: &Arc<App>) {
    let app = app.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = app.shutdown.cancelled() => break,
                _ = tokio::time::sleep(SNAPSHOT_EVERY) => {}
            }
            if app.restaurant.unsaved() > 0 {
                app.restaurant.snapshot_now().await;
            }
        }
    });
}
