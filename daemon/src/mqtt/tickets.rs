//! Station tickets: every [`crate::app::StationTicket`] the daemon emits (only once its order is
//! durable) is published at QoS 1 on `PREFIX/stations/{station}/tickets`, unless nobody can
//! receive it (embedded mode, nobody subscribed: see [`super::direct`]).

use super::direct::Publisher;
use super::topics::{Topics, is_topic_id};
use crate::app::StationTicket;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Publishes tickets from `rx` until `stop`; then publishes those already emitted and ends.
pub fn spawn(
    mut rx: broadcast::Receiver<StationTicket>,
    topics: Topics,
    bus: Publisher,
    stop: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let ticket = tokio::select! {
                biased;
                r = rx.recv() => r,
                _ = stop.cancelled() => break,
            };
            match ticket {
                Ok(t) => publish(&topics, &bus, t).await,
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(
                        missed = n,
                        "station tickets were dropped: the MQTT client fell behind"
                    );
                }
                Err(RecvError::Closed) => return,
            }
        }
        while let Ok(t) = rx.try_recv() {
            publish(&topics, &bus, t).await;
        }
    })
}

async fn publish(topics: &Topics, bus: &Publisher, t: StationTicket) {
    if !is_topic_id(&t.station) {
        tracing::warn!(station = %t.station, "station id cannot be a topic level; ticket not sent");
        return;
    }
    let topic = topics.tickets(&t.station);
    if !bus.wanted(&topic) {
        return;
    }
    let payload = match serde_json::to_vec(&t.payload) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(station = %t.station, error = %e, "ticket could not be encoded");
            return;
        }
    };
    if bus.publish(topic, payload).await.is_err() {
        tracing::warn!(station = %t.station, "MQTT client stopped; ticket not sent");
    }
}
