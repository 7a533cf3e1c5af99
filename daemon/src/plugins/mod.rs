//! Plugins: POS vendors' protocol adapters, loaded at run time through the version-1 C ABI of
//! the `fdmd-plugin-api` crate (`docs/plugins.md`).
//!
//! For every `[[plugins.instance]]`: the file is checked ([`checks`]: root-owned, not writable by
//! group or others, signed by a trusted vendor key), loaded ([`native`]; never unloaded) either
//! in-process on its own thread ([`inprocess`]) or in a helper process ([`isolate`]), and given
//! the bytes of the transports the host owns ([`transport`]: TCP listener, serial device;
//! [`mqtt`]: MQTT topics). The plugin's requests are answered by [`gateway`], its messages
//! published by [`mqtt::Publisher`]; plugins never touch the journal. A refused plugin is
//! logged, the daemon starts without it, and `GET /v1/status` says why.

pub mod checks;
pub mod conformance;
pub mod gateway;
pub mod inprocess;
pub mod isolate;
pub mod mqtt;
pub mod native;
pub mod transport;

use crate::app::App;
use crate::config::PluginInstanceConfig;
use crate::mqtt::bus::BusOptions;
use crate::mqtt::topics::Topics;
use native::{CallError, InputMsg, Output, PluginInfo};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// A running plugin instance, in-process or isolated. Calls block (never call from a runtime
/// worker) and are serialised per instance.
pub trait Instance: Send + Sync {
    /// What the plugin says about itself.
    fn info(&self) -> PluginInfo;
    /// Handles one input; returns its outputs.
    fn call(&self, input: InputMsg) -> Result<Vec<Output>, CallError>;
    /// Asks whether the plugin is healthy.
    fn health(&self) -> Result<(), CallError>;
    /// How often the helper process was restarted (0 in-process).
    fn restarts(&self) -> u32 {
        0
    }
}

/// Reports one instance's state into the daemon's status.
#[derive(Clone)]
pub struct Reporter {
    app: Arc<App>,
    name: String,
    seen_restarts: Arc<std::sync::atomic::AtomicU32>,
}

impl Reporter {
    /// Puts `base` in the status (status entries are never removed, so every later change
    /// finds it there).
    fn new(app: &Arc<App>, name: &str, base: Value) -> Reporter {
        app.status.set_plugin(name, base);
        Reporter {
            app: app.clone(),
            name: name.to_owned(),
            seen_restarts: Arc::new(std::sync::atomic::AtomicU32::new(0)),
        }
    }

    fn update(&self, change: impl FnOnce(&mut Value)) {
        self.app.status.update_plugin(&self.name, change);
    }

    /// Keeps the helper's restart count in the status current (after every call).
    pub fn note_restarts(&self, instance: &dyn Instance) {
        let now = instance.restarts();
        if self
            .seen_restarts
            .swap(now, std::sync::atomic::Ordering::Relaxed)
            != now
        {
            self.update(|v| v["restarts"] = json!(now));
        }
    }

    /// Records a failed call (and the helper's restarts).
    pub fn call_failed(&self, instance: &dyn Instance, error: &CallError) {
        tracing::warn!("plugin {}: {error}", self.name);
        self.note_restarts(instance);
        self.update(|v| {
            v["last_error"] = json!(error.to_string());
            if matches!(error, CallError::Crashed(_) | CallError::Timeout(_)) {
                v["last_crash"] = json!(error.to_string());
            }
            v["errors"] = json!(v["errors"].as_u64().unwrap_or(0) + 1);
        });
    }

    /// Records an MQTT input or answer that was dropped.
    pub fn mqtt_dropped(&self, what: &str) {
        tracing::warn!("plugin {}: {what}", self.name);
        self.update(|v| {
            v["last_error"] = json!(what);
            v["mqtt_dropped"] = json!(v["mqtt_dropped"].as_u64().unwrap_or(0) + 1);
        });
    }

    /// Records a transport problem.
    pub fn transport_failed(&self, what: &str) {
        tracing::error!("plugin {}: {what}", self.name);
        self.update(|v| v["transport_error"] = json!(what));
    }

    /// Records that a transport works again (listening, device open): its problem goes.
    pub fn transport_ok(&self, what: &str) {
        tracing::info!("plugin {}: {what}", self.name);
        self.update(|v| {
            if let Some(map) = v.as_object_mut() {
                map.remove("transport_error");
            }
        });
    }
}

/// The loaded plugins and their transports.
pub struct PluginService {
    transports: Vec<transport::Running>,
    mqtt: Option<mqtt::Running>,
}

fn refuse(app: &Arc<App>, inst: &PluginInstanceConfig, reason: &str) {
    tracing::error!(
        "plugin {} ({}) REFUSED, fdmd runs without it: {reason}",
        inst.name,
        inst.file
    );
    app.status.set_plugin(
        &inst.name,
        json!({"file": inst.file, "state": "refused", "reason": reason}),
    );
}

/// Checks and loads one instance (blocking).
fn load_instance(
    app: &Arc<App>,
    inst: &PluginInstanceConfig,
    runtime: tokio::runtime::Handle,
    publisher: Arc<mqtt::Publisher>,
) -> Result<(Arc<dyn Instance>, Value), String> {
    let plugins = &app.config.plugins;
    let path = plugins.dir.join(&inst.file);
    let dev = app.config.daemon.dev;
    let policy = checks::CheckPolicy::for_config(plugins, dev)?;
    // One descriptor, checked and then loaded (`/proc/self/fd/N`): no window to swap the file.
    let checked =
        checks::open_checked(&plugins.dir, &inst.file, &policy).map_err(|e| e.to_string())?;
    if let Some(warning) = &checked.dir_warning {
        tracing::warn!(
            "!!! {warning}: plugin {} is loaded from it only because of --dev; never in production !!!",
            inst.name
        );
    }
    let signed_by = match &checked.trust {
        checks::Trust::Signed { key } => json!(key),
        checks::Trust::UnsignedAllowed => {
            tracing::warn!(
                "!!! plugin {} ({}) is NOT SIGNED and loaded only because of --dev and plugins.allow_unsigned: never do this in production !!!",
                inst.name,
                path.display()
            );
            Value::Null
        }
    };
    let timeout = Duration::from_millis(plugins.call_timeout_ms);
    let config = serde_json::to_vec(&inst.config).map_err(|e| e.to_string())?;
    let gateway = Arc::new(gateway::Gateway::new(
        app.clone(),
        &inst.name,
        &inst.register,
        runtime,
        publisher.clone(),
    ));
    let instance: Arc<dyn Instance> = if inst.isolate {
        let exe = std::env::current_exe().map_err(|e| format!("own executable: {e}"))?;
        Arc::new(
            isolate::Isolated::start(&exe, checked.into_file(), &config, gateway, timeout)
                .map_err(|e| e.to_string())?,
        )
    } else {
        let proc_path = checked.proc_path();
        // The descriptor stays open for the life of the process, like the library: glibc
        // matches a later dlopen of the same `/proc/self/fd/N` name against this library, so N
        // must never name another file.
        std::mem::forget(checked.into_file());
        let loaded = native::load(&proc_path, gateway).map_err(|e| e.to_string())?;
        Arc::new(
            inprocess::InProcess::start(loaded, &config, &inst.name, timeout)
                .map_err(|e| e.to_string())?,
        )
    };
    let info = instance.info();
    let base = json!({
        "file": inst.file,
        "state": "loaded",
        "plugin": info.name,
        "version": info.version,
        "abi": format!("{}.{}", info.abi_major, info.abi_minor),
        "built_with": info.built_with,
        "isolated": inst.isolate,
        "register": inst.register,
        "signed_by": signed_by,
        "tcp_listen": inst.tcp_listen,
        "serial": inst.serial,
        "mqtt_in": inst.mqtt.then(|| format!("{}/in[/…]", publisher.out_topic().trim_end_matches("/out"))),
        "mqtt_out": publisher.out_topic(),
        "restarts": 0,
        "errors": 0,
    });
    Ok((instance, base))
}

impl PluginService {
    /// Loads every configured plugin and starts its transports; `mqtt` is how a client of
    /// fdmd's own reaches the broker (`None`: no MQTT for plugins). Never fails: a plugin that
    /// is refused is logged and shown in the status, and the daemon runs without it.
    pub async fn start(app: Arc<App>, mqtt: Option<BusOptions>) -> PluginService {
        let mut transports = Vec::new();
        let mut members = Vec::new();
        let topics = Topics::new(&app.config.mqtt.prefix);
        let max_payload = app.config.plugins.mqtt_max_payload_bytes;
        for inst in app.config.plugins.instance.clone() {
            let runtime = tokio::runtime::Handle::current();
            let (publisher, outgoing) =
                mqtt::Publisher::new(&topics, &inst.register, &inst.name, max_payload);
            let publisher = Arc::new(publisher);
            let loading = {
                let (app, inst, publisher) = (app.clone(), inst.clone(), publisher.clone());
                tokio::task::spawn_blocking(move || load_instance(&app, &inst, runtime, publisher))
                    .await
            };
            let (instance, base) = match loading {
                Ok(Ok(loaded)) => loaded,
                Ok(Err(reason)) => {
                    refuse(&app, &inst, &reason);
                    continue;
                }
                Err(e) => {
                    refuse(&app, &inst, &format!("loading failed: {e}"));
                    continue;
                }
            };
            tracing::info!(
                "plugin {} loaded: {} {} ({}){}",
                inst.name,
                base["plugin"].as_str().unwrap_or(""),
                base["version"].as_str().unwrap_or(""),
                inst.file,
                if inst.isolate { ", isolated" } else { "" }
            );
            let reporter = Reporter::new(&app, &inst.name, base);
            transports
                .extend(transport::start(&app, &inst, instance.clone(), reporter.clone()).await);
            members.push(mqtt::Member {
                name: inst.name.clone(),
                register: inst.register.clone(),
                mqtt: inst.mqtt,
                reply: inst.mqtt_reply.clone(),
                instance,
                reporter,
                publisher,
                outgoing,
            });
        }
        let mqtt = match mqtt {
            Some(options) if !members.is_empty() => {
                mqtt::start(
                    options,
                    &topics,
                    max_payload,
                    members,
                    app.shutdown.child_token(),
                )
                .await
            }
            _ => None,
        };
        PluginService { transports, mqtt }
    }

    /// Stops the transports (the libraries stay loaded until the process exits).
    pub async fn shutdown(self) {
        if let Some(mqtt) = self.mqtt {
            mqtt.stop().await;
        }
        for t in self.transports {
            t.stop().await;
        }
    }
}
