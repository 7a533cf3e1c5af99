//! The daemon's answers to plugin requests (`submit`, schema version 1): status, orders,
//! pre-computed events and PIN; and the `publish` service ([`super::mqtt::Publisher`]). A plugin
//! is bound to one enrolled register by the configuration and cannot register for another.

use super::mqtt::{PublishError, Publisher};
use super::native::Services;
use crate::app::App;
use crate::fiscal::{FdmCode, Label, PrecomputedEvent};
use crate::service::Receipt;
use crate::signer::SignerState;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Answers one plugin instance's requests against the running daemon.
pub struct Gateway {
    app: Arc<App>,
    instance: String,
    register: String,
    runtime: tokio::runtime::Handle,
    publisher: Arc<Publisher>,
    refused: AtomicU64,
    last_refusal_log: Mutex<Option<Instant>>,
}

/// Shortest pause between two log lines about refused publishes of one instance.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

fn invalid(request_id: Option<String>, field: &str, message: String) -> Receipt {
    Receipt::Error {
        request_id,
        code: FdmCode::InvalidData,
        message,
        field: Some(field.to_owned()),
        problems: Vec::new(),
    }
}

fn decimal(v: &Value, field: &str, request_id: &Option<String>) -> Result<Decimal, Receipt> {
    v.as_str()
        .and_then(|s| s.parse::<Decimal>().ok())
        .ok_or_else(|| {
            invalid(
                request_id.clone(),
                field,
                format!("{field} must be a decimal string"),
            )
        })
}

/// Builds a pre-computed event from its schema-1 JSON.
pub fn precomputed_from_json(register: &str, e: &Value) -> Result<PrecomputedEvent, Receipt> {
    let request_id = e["request_id"]
        .as_str()
        .filter(|id| crate::fiscal::order::is_valid_id(id, 64))
        .map(str::to_owned);
    let Some(id) = request_id.clone() else {
        return Err(invalid(
            None,
            "request_id",
            "request_id must be 1-64 of A-Z a-z 0-9 . _ - :".into(),
        ));
    };
    let text = |k: &str| e[k].as_str().unwrap_or("").to_owned();
    let label_text = e["label"].as_str().unwrap_or("");
    let label = Label::parse(label_text).ok_or_else(|| {
        invalid(
            request_id.clone(),
            "label",
            format!("{label_text:?} is not an event label"),
        )
    })?;
    let mut rate_amounts = Vec::new();
    for (i, pair) in e["rate_amounts"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .take(8)
        .enumerate()
    {
        let field = format!("rate_amounts[{i}]");
        rate_amounts.push((
            decimal(&pair[0], &field, &request_id)?,
            decimal(&pair[1], &field, &request_id)?,
        ));
    }
    Ok(PrecomputedEvent {
        request_id: id,
        register: register.to_owned(),
        pos_date: text("pos_date"),
        pos_time: text("pos_time"),
        operator: text("operator"),
        ecr_id: text("ecr_id"),
        ticket_number: text("ticket_number"),
        label,
        total: decimal(&e["total"], "total", &request_id)?,
        rate_amounts,
        plu_hash: text("plu_hash"),
    })
}

impl Gateway {
    /// A gateway for the instance `instance`, registering as `register`.
    pub fn new(
        app: Arc<App>,
        instance: &str,
        register: &str,
        runtime: tokio::runtime::Handle,
        publisher: Arc<Publisher>,
    ) -> Gateway {
        Gateway {
            app,
            instance: instance.to_owned(),
            register: register.to_owned(),
            runtime,
            publisher,
            refused: AtomicU64::new(0),
            last_refusal_log: Mutex::new(None),
        }
    }

    fn status(&self) -> Value {
        let state = self.app.signer.state();
        let code = match &state {
            SignerState::Ready => FdmCode::Ok,
            SignerState::PinRequired { .. } => FdmCode::PinRequired,
            SignerState::Absent => FdmCode::NoCard,
            SignerState::Blocked => FdmCode::CardBlocked,
            SignerState::Incompatible { .. } => FdmCode::IncompatibleCard,
        };
        let problems = self.app.status.problems();
        json!({
            "v": 1,
            "fdm_id": self.app.config.fdm.id,
            "vsc_id": self.app.signer.identity().map(|i| i.id).unwrap_or_default(),
            "ready": code == FdmCode::Ok,
            "code": code.number(),
            "message": problems.iter().map(|p| p.message()).collect::<Vec<_>>().join("; "),
            "software_version": env!("CARGO_PKG_VERSION"),
            "mqtt_out": self.publisher.out_topic(),
        })
    }

    async fn answer(&self, request: &Value) -> Value {
        match request["type"].as_str() {
            Some("status") => self.status(),
            Some("order") => {
                let order = serde_json::to_vec(&request["order"]).unwrap_or_default();
                self.app
                    .handle_order(&self.register, &order)
                    .await
                    .to_json()
            }
            Some("precomputed") => match precomputed_from_json(&self.register, &request["event"]) {
                Ok(event) => self.app.handle_precomputed(&event).await.to_json(),
                Err(receipt) => receipt.to_json(),
            },
            // No signer of this fdmd takes a PIN over a plugin yet: a signer that is ready needs
            // none (000); otherwise its state's code.
            Some("pin") => {
                let pin_ok = request["pin"]
                    .as_str()
                    .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
                let code = if pin_ok {
                    self.status()["code"].clone()
                } else {
                    json!(FdmCode::InvalidData.number())
                };
                json!({"v": 1, "code": code})
            }
            other => json!({
                "v": 1, "status": "error", "code": FdmCode::UnknownIdentifier.number(),
                "message": format!("unknown request type {other:?}"),
            }),
        }
    }
}

impl Services for Gateway {
    fn log(&self, level: u32, message: &str) {
        let p = &self.instance;
        match level {
            fdmd_plugin_api::FDMD_LOG_ERROR => tracing::error!("plugin {p}: {message}"),
            fdmd_plugin_api::FDMD_LOG_WARN => tracing::warn!("plugin {p}: {message}"),
            fdmd_plugin_api::FDMD_LOG_INFO => tracing::info!("plugin {p}: {message}"),
            _ => tracing::debug!("plugin {p}: {message}"),
        }
    }

    fn submit(&self, request: &[u8]) -> Result<Vec<u8>, String> {
        let request: Value =
            serde_json::from_slice(request).map_err(|e| format!("request is not JSON: {e}"))?;
        if request["v"].as_u64() != Some(u64::from(fdmd_plugin_api::FDMD_SCHEMA_VERSION)) {
            return Err(format!(
                "schema version {} is not supported (this fdmd speaks {})",
                request["v"],
                fdmd_plugin_api::FDMD_SCHEMA_VERSION
            ));
        }
        // Called from a plugin thread or a blocking task, never from a runtime worker.
        let answer = self.runtime.block_on(self.answer(&request));
        serde_json::to_vec(&answer).map_err(|e| e.to_string())
    }

    fn publish(&self, topic: &str, payload: &[u8], qos: u8) -> Result<(), PublishError> {
        self.publisher
            .publish(topic, payload, qos)
            .inspect_err(|e| {
                // Counted in the status every time; logged at most every 10 s, so a plugin that
                // keeps trying cannot flood the log.
                let refused = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
                self.app
                    .status
                    .update_plugin(&self.instance, |v| v["publish_refused"] = json!(refused));
                let mut last = self
                    .last_refusal_log
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                if last.is_none_or(|t| t.elapsed() >= REFUSAL_LOG_EVERY) {
                    *last = Some(Instant::now());
                    tracing::warn!(
                        "plugin {}: publish to {topic:?} refused: {e} ({refused} refused so far)",
                        self.instance
                    );
                }
            })
    }
}
