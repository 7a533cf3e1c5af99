//! The retained status topic: the status document at start, every [`INTERVAL`], and a final
//! `"offline"` one at stop; the will (`{"status":"offline"}`, retained) covers a crash. A change
//! of the signer's state (card pulled, PIN given, card blocked) is published within
//! [`SIGNER_CHECK`].

use super::bus::BusHandle;
use crate::app::App;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How often the status is republished.
pub const INTERVAL: Duration = Duration::from_secs(5);

/// How often the signer's state is looked at (cheap: it never waits for the card).
pub const SIGNER_CHECK: Duration = Duration::from_millis(250);

/// The will: what the broker publishes when fdmd's connection drops without a goodbye.
pub fn will_payload() -> Vec<u8> {
    br#"{"status":"offline"}"#.to_vec()
}

/// The last status fdmd publishes when it stops.
pub fn final_payload(app: &App) -> Vec<u8> {
    let mut doc = app.status.snapshot();
    if let Value::Object(map) = &mut doc {
        map.insert("status".into(), json!("offline"));
        map.insert("reason".into(), json!("fdmd stopped"));
    }
    serde_json::to_vec(&doc).unwrap_or_else(|_| will_payload())
}

/// Publishes the status document now (queued before this returns), then every `interval` until
/// `stop`.
pub async fn spawn(
    app: Arc<App>,
    topic: String,
    bus: BusHandle,
    interval: Duration,
    stop: CancellationToken,
) -> JoinHandle<()> {
    publish(&app, &topic, &bus).await;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut check = tokio::time::interval(SIGNER_CHECK);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut signer_state = app.signer.state();
        loop {
            tokio::select! {
                biased;
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
                _ = check.tick() => {
                    let now = app.signer.state();
                    if now == signer_state {
                        continue;
                    }
                    signer_state = now;
                }
            }
            if !publish(&app, &topic, &bus).await {
                return;
            }
        }
    })
}

/// Queues the status document; false once the client has stopped.
async fn publish(app: &App, topic: &str, bus: &BusHandle) -> bool {
    match serde_json::to_vec(&app.status_document()) {
        Ok(doc) => bus.publish(topic.to_owned(), doc, true).await.is_ok(),
        Err(e) => {
            tracing::error!(error = %e, "status could not be encoded");
            true
        }
    }
}
