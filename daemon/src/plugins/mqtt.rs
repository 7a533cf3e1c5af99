//! MQTT for plugins: topics as a transport, and the `publish` host service.
//!
//! Every plugin instance has a namespace, `PREFIX/registers/{register}/plugins/{name}`, with the
//! register the configuration binds it to in the topic. With `mqtt = true` the host hands the
//! plugin every message published under `…/in` or `…/in/…` (an `FDMD_INPUT_MQTT` input with the
//! full topic), and publishes what the plugin writes in answer on `…/out/SUB`: the input's own
//! sub-topic, or `mqtt_reply`. The gate and the shipped Mosquitto ACL let only that register
//! publish under `…/in` and read `…/out` (`mqtt/acl.rs`); only fdmd publishes under `…/out`.
//!
//! The traffic goes over a client of fdmd's own ([`crate::mqtt::bus`]), separate from the one
//! that takes orders, so a slow plugin never holds up receipts. Inputs are acknowledged once the
//! plugin has handled them and its answer is queued, in arrival order. Payloads over
//! `plugins.mqtt_max_payload_bytes` are never handed to a plugin nor published for one.
//!
//! [`Publisher`] is the `publish` service: a topic under `…/out` (full, or relative to it), QoS 0
//! or 1, a bounded queue per instance that never blocks the plugin (full: an error at once).

use super::native::{InputMsg, Output};
use super::{Instance, Reporter};
use crate::mqtt::bus::{Bus, BusHandle, BusOptions, Incoming};
use crate::mqtt::topics::{Topics, is_plain_subtopic};
use fdmd_plugin_api::{FDMD_RC_BAD_ARGUMENT, FDMD_RC_UNAVAILABLE, FdmdRc};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Suffix of the plugins' client id (`fdmd-plugins` with the default client id).
pub const CLIENT_SUFFIX: &str = "plugins";
/// Messages one instance may have waiting to be published before `publish` fails.
pub const PUBLISH_QUEUE: usize = 64;
/// MQTT inputs one instance may have waiting before further ones are dropped.
pub const INPUT_QUEUE: usize = 16;
/// Messages from the broker not yet routed to an instance.
const INBOUND_QUEUE: usize = 64;
/// Longest an answer waits for room in its instance's publish queue.
const REPLY_WAIT: Duration = Duration::from_secs(2);
/// How long start-up waits for the plugins' subscriptions (then goes on; the client retries).
const SUBSCRIBE_WITHIN: Duration = Duration::from_secs(10);

/// Why the host did not publish for a plugin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// The request is not allowed (topic outside the namespace, QoS, size): `FDMD_RC_BAD_ARGUMENT`.
    #[error("{0}")]
    Refused(String),
    /// MQTT is not running or the queue is full: `FDMD_RC_UNAVAILABLE`.
    #[error("{0}")]
    Unavailable(String),
}

impl PublishError {
    /// The ABI code.
    pub fn rc(&self) -> FdmdRc {
        match self {
            PublishError::Refused(_) => FDMD_RC_BAD_ARGUMENT,
            PublishError::Unavailable(_) => FDMD_RC_UNAVAILABLE,
        }
    }

    /// Rebuilds an error from its code and message (isolation protocol).
    pub fn from_rc(rc: FdmdRc, message: String) -> PublishError {
        if rc == FDMD_RC_BAD_ARGUMENT {
            PublishError::Refused(message)
        } else {
            PublishError::Unavailable(message)
        }
    }
}

/// One message to publish.
#[derive(Debug)]
pub struct Outgoing {
    topic: String,
    payload: Vec<u8>,
    qos: u8,
}

/// A plugin instance's namespace and outgoing queue (the `publish` service).
pub struct Publisher {
    prefix: String,
    out: String,
    max_payload: usize,
    queue: mpsc::Sender<Outgoing>,
}

impl Publisher {
    /// The publisher of instance `instance` bound to `register`, and the receiving end of its
    /// queue (drop it when MQTT is off: `publish` then says MQTT is not available).
    pub fn new(
        topics: &Topics,
        register: &str,
        instance: &str,
        max_payload: usize,
    ) -> (Publisher, mpsc::Receiver<Outgoing>) {
        let (queue, rx) = mpsc::channel(PUBLISH_QUEUE);
        (
            Publisher {
                prefix: topics.prefix().to_owned(),
                out: format!("{}/out", topics.plugin_base(register, instance)),
                max_payload,
                queue,
            },
            rx,
        )
    }

    /// The instance's output topic (`…/out`); its sub-topics are `…/out/SUB`.
    pub fn out_topic(&self) -> &str {
        &self.out
    }

    /// The full topic for `topic`: `…/out` or `…/out/SUB` as given, or a sub-topic relative to
    /// `…/out`. Anything else is refused.
    pub fn resolve(&self, topic: &str) -> Result<String, PublishError> {
        let outside = || {
            PublishError::Refused(format!(
                "topic {topic:?} is outside this plugin's namespace {}[/…]",
                self.out
            ))
        };
        if topic == self.out {
            return Ok(topic.to_owned());
        }
        if let Some(sub) = topic
            .strip_prefix(self.out.as_str())
            .and_then(|r| r.strip_prefix('/'))
        {
            return if is_plain_subtopic(sub) {
                Ok(topic.to_owned())
            } else {
                Err(outside())
            };
        }
        let absolute = topic == self.prefix
            || topic
                .strip_prefix(self.prefix.as_str())
                .is_some_and(|r| r.starts_with('/'));
        if absolute || topic.starts_with('/') || !is_plain_subtopic(topic) {
            return Err(outside());
        }
        Ok(format!("{}/{topic}", self.out))
    }

    /// The `publish` service: checks and queues without waiting.
    pub fn publish(&self, topic: &str, payload: &[u8], qos: u8) -> Result<(), PublishError> {
        if qos > 1 {
            return Err(PublishError::Refused(format!(
                "QoS {qos} is not offered to plugins (0 or 1)"
            )));
        }
        self.check_size(payload.len())?;
        let topic = self.resolve(topic)?;
        self.queue
            .try_send(Outgoing {
                topic,
                payload: payload.to_vec(),
                qos,
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => PublishError::Unavailable(format!(
                    "the publish queue is full ({PUBLISH_QUEUE} messages waiting: MQTT is down or the plugin publishes faster than the broker takes)"
                )),
                mpsc::error::TrySendError::Closed(_) => {
                    PublishError::Unavailable("MQTT is not available to plugins".into())
                }
            })
    }

    fn check_size(&self, len: usize) -> Result<(), PublishError> {
        if len > self.max_payload {
            return Err(PublishError::Refused(format!(
                "a payload of {len} bytes is over plugins.mqtt_max_payload_bytes ({})",
                self.max_payload
            )));
        }
        Ok(())
    }

    /// Queues an answer to an MQTT input (QoS 1), waiting a little for room.
    async fn reply(&self, topic: String, payload: Vec<u8>) -> Result<(), PublishError> {
        self.check_size(payload.len())?;
        let message = Outgoing {
            topic,
            payload,
            qos: 1,
        };
        match tokio::time::timeout(REPLY_WAIT, self.queue.send(message)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(PublishError::Unavailable(
                "MQTT is not available to plugins".into(),
            )),
            Err(_) => Err(PublishError::Unavailable(format!(
                "the publish queue stayed full for {REPLY_WAIT:?}"
            ))),
        }
    }
}

/// A loaded instance as the MQTT side sees it.
pub struct Member {
    /// Instance name.
    pub name: String,
    /// The register it is bound to.
    pub register: String,
    /// Whether it takes MQTT inputs.
    pub mqtt: bool,
    /// `mqtt_reply`.
    pub reply: Option<String>,
    /// The plugin.
    pub instance: Arc<dyn Instance>,
    /// Its status.
    pub reporter: Reporter,
    /// Its `publish` service.
    pub publisher: Arc<Publisher>,
    /// Its publish queue.
    pub outgoing: mpsc::Receiver<Outgoing>,
}

/// The running MQTT side of the plugins.
pub struct Running {
    bus: Bus,
    tasks: Vec<JoinHandle<()>>,
    stop: CancellationToken,
}

impl Running {
    /// Stops routing and disconnects, within about 3 s in all: a worker still in a plugin
    /// call after 2 s is abandoned (its input stays unacknowledged, so a broker that keeps
    /// sessions delivers it again).
    pub async fn stop(self) {
        self.stop.cancel();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        for task in self.tasks {
            let abort = task.abort_handle();
            if tokio::time::timeout_at(deadline, task).await.is_err() {
                abort.abort();
            }
        }
        self.bus.disconnect(Duration::from_secs(1)).await;
    }
}

/// Starts the plugins' MQTT client, the routing of inputs and the publish queues; returns once
/// the broker has granted the subscriptions, or after 10 s (the client keeps trying).
pub async fn start(
    options: BusOptions,
    topics: &Topics,
    max_payload: usize,
    members: Vec<Member>,
    stop: CancellationToken,
) -> Option<Running> {
    let filters: Vec<String> = members
        .iter()
        .filter(|m| m.mqtt)
        .map(|m| format!("{}/in/#", topics.plugin_base(&m.register, &m.name)))
        .collect();
    let (inbound_tx, inbound_rx) = mpsc::channel(INBOUND_QUEUE);
    let options = BusOptions {
        subscriptions: filters.clone(),
        ..options
    };
    let bus = match Bus::start(options, inbound_tx, None) {
        Ok(bus) => bus,
        Err(e) => {
            for m in &members {
                m.reporter
                    .transport_failed(&format!("MQTT client for plugins: {e}"));
            }
            return None;
        }
    };
    let handle = bus.handle();
    let acks = Arc::new(Acks::new(handle.clone()));
    let mut tasks = Vec::new();
    let mut routes = HashMap::new();
    for m in members {
        tasks.push(tokio::spawn(forward(
            m.outgoing,
            handle.clone(),
            stop.clone(),
        )));
        if !m.mqtt {
            continue;
        }
        tracing::info!(
            "plugin {}: MQTT inputs on {}/in[/…]",
            m.name,
            topics.plugin_base(&m.register, &m.name)
        );
        let (tx, rx) = mpsc::channel(INPUT_QUEUE);
        let worker = Worker {
            topics: topics.clone(),
            instance: m.instance,
            reporter: m.reporter.clone(),
            publisher: m.publisher,
            reply: m.reply,
            acks: acks.clone(),
        };
        tasks.push(tokio::spawn(worker.run(rx)));
        routes.insert(
            m.name,
            Route {
                register: m.register,
                queue: tx,
                reporter: m.reporter,
            },
        );
    }
    tasks.push(tokio::spawn(route(
        inbound_rx,
        routes,
        topics.clone(),
        max_payload,
        acks,
        stop.clone(),
    )));
    if !bus.wait_subscribed(SUBSCRIBE_WITHIN).await {
        tracing::warn!(
            "MQTT client for plugins not subscribed within {SUBSCRIBE_WITHIN:?}; retrying in the background"
        );
    }
    Some(Running { bus, tasks, stop })
}

/// Publishes an instance's queue in order.
async fn forward(mut rx: mpsc::Receiver<Outgoing>, bus: BusHandle, stop: CancellationToken) {
    loop {
        let message = tokio::select! {
            _ = stop.cancelled() => break,
            m = rx.recv() => match m { Some(m) => m, None => break },
        };
        if bus
            .publish_qos(message.topic, message.payload, message.qos)
            .await
            .is_err()
        {
            break;
        }
    }
}

struct Route {
    register: String,
    queue: mpsc::Sender<Job>,
    reporter: Reporter,
}

struct Job {
    incoming: Incoming,
    seq: u64,
}

/// Hands each message to its instance's worker; what cannot be handed is acknowledged and
/// dropped, with a note in the instance's status.
async fn route(
    mut inbound: mpsc::Receiver<Incoming>,
    routes: HashMap<String, Route>,
    topics: Topics,
    max_payload: usize,
    acks: Arc<Acks>,
    stop: CancellationToken,
) {
    let mut seq = 0u64;
    loop {
        let incoming = tokio::select! {
            _ = stop.cancelled() => break,
            m = inbound.recv() => match m { Some(m) => m, None => break },
        };
        let this = seq;
        seq += 1;
        let route = topics
            .plugin_topic(&incoming.publish.topic)
            .filter(|p| !p.output)
            .and_then(|p| routes.get(p.instance).filter(|r| r.register == p.register));
        let Some(route) = route else {
            tracing::debug!(topic = %incoming.publish.topic, "MQTT message for no loaded plugin instance; dropped");
            acks.done(this, incoming).await;
            continue;
        };
        let len = incoming.publish.payload.len();
        if len > max_payload {
            route.reporter.mqtt_dropped(&format!(
                "MQTT input of {len} bytes on {} is over plugins.mqtt_max_payload_bytes ({max_payload}); dropped",
                incoming.publish.topic
            ));
            acks.done(this, incoming).await;
            continue;
        }
        if let Err(e) = route.queue.try_send(Job {
            incoming,
            seq: this,
        }) {
            let job = match e {
                mpsc::error::TrySendError::Full(job) | mpsc::error::TrySendError::Closed(job) => {
                    job
                }
            };
            route.reporter.mqtt_dropped(&format!(
                "MQTT input on {} dropped: {INPUT_QUEUE} inputs already wait for the plugin",
                job.incoming.publish.topic
            ));
            acks.done(job.seq, job.incoming).await;
        }
    }
}

struct Worker {
    topics: Topics,
    instance: Arc<dyn Instance>,
    reporter: Reporter,
    publisher: Arc<Publisher>,
    reply: Option<String>,
    acks: Arc<Acks>,
}

impl Worker {
    async fn run(self, mut rx: mpsc::Receiver<Job>) {
        while let Some(job) = rx.recv().await {
            self.handle(&job.incoming).await;
            self.acks.done(job.seq, job.incoming).await;
        }
    }

    /// One input: the plugin's writes (any connection id) make one answer.
    async fn handle(&self, incoming: &Incoming) {
        let topic = incoming.publish.topic.clone();
        let sub = self
            .topics
            .plugin_topic(&topic)
            .map(|p| p.sub.to_owned())
            .unwrap_or_default();
        let input = InputMsg::Mqtt {
            topic: topic.clone(),
            payload: incoming.publish.payload.to_vec(),
        };
        // A failed call is reported by `call` and gets no answer.
        let Ok(outputs) = super::transport::call(&self.instance, &self.reporter, input).await
        else {
            return;
        };
        let mut answer = Vec::new();
        for output in outputs {
            if let Output::Write(_, bytes) = output {
                answer.extend_from_slice(&bytes);
            }
        }
        if answer.is_empty() {
            return;
        }
        let reply_sub = self.reply.as_deref().unwrap_or(&sub);
        let reply_topic = if reply_sub.is_empty() {
            self.publisher.out_topic().to_owned()
        } else {
            format!("{}/{reply_sub}", self.publisher.out_topic())
        };
        if let Err(e) = self.publisher.reply(reply_topic, answer).await {
            self.reporter.mqtt_dropped(&format!(
                "answer to MQTT input on {topic} not published: {e}"
            ));
        }
    }
}

/// Acknowledges messages in the order they arrived, whatever order they are handled in.
struct Acks {
    bus: BusHandle,
    state: tokio::sync::Mutex<(u64, BTreeMap<u64, Incoming>)>,
}

impl Acks {
    fn new(bus: BusHandle) -> Acks {
        Acks {
            bus,
            state: tokio::sync::Mutex::new((0, BTreeMap::new())),
        }
    }

    async fn done(&self, seq: u64, incoming: Incoming) {
        let mut state = self.state.lock().await;
        state.1.insert(seq, incoming);
        loop {
            let next = state.0;
            let Some(incoming) = state.1.remove(&next) else {
                break;
            };
            state.0 += 1;
            let _ = self.bus.ack(&incoming).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_stays_in_the_namespace_and_the_queue_is_bounded() {
        let topics = Topics::new("fdm/v1");
        let (p, rx) = Publisher::new(&topics, "till-1", "acme", 100);
        let out = "fdm/v1/registers/till-1/plugins/acme/out";
        assert_eq!(p.out_topic(), out);
        assert_eq!(p.resolve(out).unwrap(), out);
        assert_eq!(
            p.resolve(&format!("{out}/a/b")).unwrap(),
            format!("{out}/a/b")
        );
        assert_eq!(p.resolve("display/1").unwrap(), format!("{out}/display/1"));
        for bad in [
            "fdm/v1/registers/till-1/receipts",
            "fdm/v1/status",
            "fdm/v1",
            "fdm/v1/registers/till-1/plugins/acme/in",
            "fdm/v1/registers/till-1/plugins/other/out",
            "fdm/v1/registers/till-1/plugins/acme/outside",
            "fdm/v1/registers/till-1/plugins/acme/out/#",
            "fdm/v1/registers/till-1/plugins/acme/out/",
            "/abs",
            "$SYS/x",
            "a/+/b",
            "",
        ] {
            assert!(
                matches!(p.resolve(bad), Err(PublishError::Refused(_))),
                "{bad}"
            );
        }
        let e = p.publish("fdm/v1/status", b"x", 1).unwrap_err();
        assert_eq!(e.rc(), FDMD_RC_BAD_ARGUMENT);
        assert!(
            e.to_string().contains("outside this plugin's namespace"),
            "{e}"
        );
        assert!(matches!(
            p.publish("x", b"x", 2),
            Err(PublishError::Refused(_))
        ));
        assert!(matches!(
            p.publish("x", &[0; 101], 0),
            Err(PublishError::Refused(_))
        ));
        for _ in 0..PUBLISH_QUEUE {
            p.publish("x", b"x", 0).unwrap();
        }
        let full = p.publish("x", b"x", 0).unwrap_err();
        assert_eq!(full.rc(), FDMD_RC_UNAVAILABLE);
        assert!(full.to_string().contains("queue is full"), "{full}");
        drop(rx);
        assert!(
            p.publish("x", b"x", 0)
                .unwrap_err()
                .to_string()
                .contains("not available")
        );
    }
}
