//! A typed GKS 2.0 client over hyper 1 (docs/gks2.md): one request per connection, the FDM
//! digest, a deadline per request (30 s like the reference client), bounded answers, and errors
//! that say what the restaurant has to do. Plain HTTP in this stage (the emulator); HTTPS/mTLS
//! towards a certified FDM is the next stage.

use super::auth;
use super::model::{Message, Mutation, SIGN_RESULT_SELECTION, SignResult};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use serde::Serialize;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Largest answer read.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;
/// The reference client's wait.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the FDM is and how to authenticate.
#[derive(Clone)]
pub struct ClientConfig {
    /// Address of the FDM.
    pub addr: SocketAddr,
    /// Device id (the path).
    pub device_id: String,
    /// Shared secret (never logged: `Debug` hides it).
    pub secret: String,
    /// Deadline of one request.
    pub timeout: Duration,
    /// HTTPS (and mTLS when the configuration holds a client certificate); plain HTTP when
    /// `None`.
    pub tls: Option<Tls>,
}

/// How to reach the FDM over TLS.
#[derive(Clone)]
pub struct Tls {
    /// Trusted roots and, for mTLS, the client certificate.
    pub config: Arc<rustls::ClientConfig>,
    /// The name the FDM's certificate must carry.
    pub server_name: ServerName<'static>,
}

impl Tls {
    /// From `[signer.gks2]`-style settings: the CA file, an optional client certificate and key,
    /// and the certificate's name (default: the address's IP).
    pub fn new(
        ca_file: &std::path::Path,
        client: Option<(&std::path::Path, &std::path::Path)>,
        server_name: Option<&str>,
        addr: SocketAddr,
    ) -> Result<Self, Gks2Error> {
        let config = crate::tls::client_config(crate::tls::Roots::File(ca_file), client)
            .map_err(|e| Gks2Error::Tls(e.to_string()))?;
        let server_name = match server_name {
            Some(name) => ServerName::try_from(name.to_owned())
                .map_err(|e| Gks2Error::Tls(format!("server_name {name:?}: {e}")))?,
            None => ServerName::IpAddress(addr.ip().into()),
        };
        Ok(Tls {
            config,
            server_name,
        })
    }
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("addr", &self.addr)
            .field("device_id", &self.device_id)
            .field("secret", &"<hidden>")
            .field("timeout", &self.timeout)
            .field(
                "tls",
                &self.tls.as_ref().map(|t| format!("{:?}", t.server_name)),
            )
            .finish()
    }
}

/// Why a request got no `SignResult`.
#[derive(Debug, thiserror::Error)]
pub enum Gks2Error {
    /// Nothing answers at the address: the FDM is off, unplugged or elsewhere.
    #[error("the FDM at {addr} is down: {source}")]
    FdmDown {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// No answer within the deadline: resend the same request (same five keys).
    #[error("the FDM at {addr} did not answer within {timeout:?}")]
    Timeout {
        /// Address.
        addr: SocketAddr,
        /// The deadline.
        timeout: Duration,
    },
    /// The FDM refused the digest: wrong shared secret or device id.
    #[error("the FDM refused the request's authentication: {0}")]
    AuthenticationRefused(String),
    /// The FDM refused the `Date`: this box's clock and the FDM's differ.
    #[error("the FDM refused the request's date (clock difference): {0}")]
    ClockDifference(String),
    /// The FDM's buffer is full: it must send its events before it signs again.
    #[error("the FDM's buffer is full")]
    BufferFull,
    /// The request is larger than the FDM accepts.
    #[error("the request is too large for the FDM")]
    TooLarge,
    /// GraphQL errors (validation and others), with their codes.
    #[error("the FDM refused the event: {}", summary(.0))]
    GraphQl(Vec<Message>),
    /// Another HTTP status.
    #[error("the FDM answered HTTP {status}: {body}")]
    Http {
        /// Status.
        status: StatusCode,
        /// Start of the body.
        body: String,
    },
    /// The exchange broke off, or the answer is not what GKS 2.0 answers.
    #[error("malformed exchange with the FDM: {0}")]
    Malformed(String),
    /// TLS failed: the FDM's certificate is not trusted (CA, name) or the FDM refused fdmd's
    /// client certificate (mTLS), or the TLS settings cannot be used.
    #[error("TLS with the FDM failed: {0}")]
    Tls(String),
}

/// A TLS failure somewhere in an error's chain (rustls reports it through `std::io::Error`).
fn tls_failure(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(t) = c.downcast_ref::<rustls::Error>() {
            return Some(t.to_string());
        }
        if let Some(t) = c
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(t.to_string());
        }
        cause = c.source();
    }
    None
}

fn summary(messages: &[Message]) -> String {
    messages
        .iter()
        .map(|m| format!("{} ({})", m.message, m.extensions.code))
        .collect::<Vec<_>>()
        .join("; ")
}

impl Gks2Error {
    /// The codes of GraphQL errors (empty for other errors).
    pub fn codes(&self) -> Vec<&str> {
        match self {
            Gks2Error::GraphQl(m) => m.iter().map(|m| m.extensions.code.as_str()).collect(),
            _ => Vec::new(),
        }
    }
}

impl SignResult {
    /// A warning with this code is in the answer.
    pub fn has_warning(&self, code: &str) -> bool {
        self.warnings.iter().any(|w| w.extensions.code == code)
    }

    /// The FDM's buffer is nearly full (the event is signed).
    pub fn buffer_nearly_full(&self) -> bool {
        self.has_warning("BUFFER_NEARLY_FULL")
    }

    /// The POS's time and the FDM's differ (the event is signed).
    pub fn clock_difference(&self) -> bool {
        self.has_warning("CLOCK_DIFFERENCE")
    }
}

/// The GKS 2.0 client.
#[derive(Debug, Clone)]
pub struct Client {
    config: ClientConfig,
}

impl Client {
    /// A client for one FDM.
    pub fn new(config: ClientConfig) -> Self {
        Client { config }
    }

    /// The exact body of a signing request: keep it to resend after a timeout.
    pub fn request_body<T: Serialize>(
        mutation: Mutation,
        data: &T,
        training: bool,
    ) -> Result<Vec<u8>, Gks2Error> {
        let name = mutation.field();
        let query = format!(
            "mutation {name}($data: {input}!, $isTraining: Boolean!) {{ {name}(data: $data, isTraining: $isTraining) {{ {SIGN_RESULT_SELECTION} }} }}",
            input = mutation.input_type()
        );
        let data = serde_json::to_value(data).map_err(|e| Gks2Error::Malformed(e.to_string()))?;
        serde_json::to_vec(&json!({
            "query": query,
            "operationName": name,
            "variables": {"data": data, "isTraining": training},
        }))
        .map_err(|e| Gks2Error::Malformed(e.to_string()))
    }

    /// Signs one event.
    pub async fn sign<T: Serialize>(
        &self,
        mutation: Mutation,
        data: &T,
        training: bool,
    ) -> Result<SignResult, Gks2Error> {
        let body = Self::request_body(mutation, data, training)?;
        self.send(mutation, &body).await
    }

    /// Sends a body made by [`Client::request_body`] (again, for a resend) and reads the answer.
    pub async fn send(&self, mutation: Mutation, body: &[u8]) -> Result<SignResult, Gks2Error> {
        let date = auth::http_date(chrono::Utc::now());
        let authorization = auth::authorization("POST", &date, &self.config.secret, body);
        let (status, bytes) = self.post(body, &date, Some(&authorization)).await?;
        let data = answer(status, &bytes)?;
        let value = data.get(mutation.field()).cloned().ok_or_else(|| {
            Gks2Error::Malformed(format!("no {} in the answer", mutation.field()))
        })?;
        serde_json::from_value(value).map_err(|e| Gks2Error::Malformed(e.to_string()))
    }

    /// The emulator's device description (`{ device { id fdmId publicKey } }`); `publicKey` is
    /// an emulator extension.
    pub async fn device(&self) -> Result<Value, Gks2Error> {
        let body = br#"{"query":"{ device { id fdmId fdmSwVersion publicKey certified } }"}"#;
        let date = auth::http_date(chrono::Utc::now());
        let authorization = auth::authorization("POST", &date, &self.config.secret, body);
        let (status, bytes) = self.post(body, &date, Some(&authorization)).await?;
        let data = answer(status, &bytes)?;
        Ok(data.get("device").cloned().unwrap_or(Value::Null))
    }

    /// One raw POST with the given `Date` and `Authorization` (tests and diagnostics).
    pub async fn post(
        &self,
        body: &[u8],
        date: &str,
        authorization: Option<&str>,
    ) -> Result<(StatusCode, Bytes), Gks2Error> {
        let addr = self.config.addr;
        let timeout = self.config.timeout;
        tokio::time::timeout(timeout, self.exchange(body, date, authorization))
            .await
            .map_err(|_| Gks2Error::Timeout { addr, timeout })?
    }

    async fn exchange(
        &self,
        body: &[u8],
        date: &str,
        authorization: Option<&str>,
    ) -> Result<(StatusCode, Bytes), Gks2Error> {
        let addr = self.config.addr;
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|source| Gks2Error::FdmDown { addr, source })?;
        let _ = stream.set_nodelay(true);
        let mut builder = Request::builder()
            .method(Method::POST)
            .uri(format!("/{}/graphql", self.config.device_id))
            .header(header::HOST, addr.to_string())
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::DATE, date);
        if let Some(a) = authorization {
            builder = builder.header(header::AUTHORIZATION, a);
        }
        let req = builder
            .body(Full::new(Bytes::copy_from_slice(body)))
            .map_err(|e| Gks2Error::Malformed(e.to_string()))?;
        match &self.config.tls {
            None => round_trip(TokioIo::new(stream), req).await,
            Some(tls) => {
                let stream = tokio_rustls::TlsConnector::from(tls.config.clone())
                    .connect(tls.server_name.clone(), stream)
                    .await
                    .map_err(|e| {
                        Gks2Error::Tls(tls_failure(&e).unwrap_or_else(|| e.to_string()))
                    })?;
                round_trip(TokioIo::new(stream), req).await
            }
        }
    }
}

/// One request and its answer (bounded) on a connection.
async fn round_trip<T>(io: T, req: Request<Full<Bytes>>) -> Result<(StatusCode, Bytes), Gks2Error>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    // A TLS alert (e.g. the FDM refusing fdmd's client certificate, which TLS 1.3 reports after
    // the handshake) is a TLS failure, not a malformed exchange.
    let broken = |e: &(dyn std::error::Error + 'static)| match tls_failure(e) {
        Some(t) => Gks2Error::Tls(t),
        None => Gks2Error::Malformed(e.to_string()),
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| broken(&e))?;
    let driver = tokio::spawn(conn);
    let response = sender.send_request(req).await.map_err(|e| broken(&e))?;
    let status = response.status();
    let bytes = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
        .collect()
        .await
        .map_err(|e| broken(e.as_ref()))?
        .to_bytes();
    driver.abort();
    Ok((status, bytes))
}

/// The `data` of an answer, or the specific error.
fn answer(status: StatusCode, bytes: &[u8]) -> Result<Value, Gks2Error> {
    let parsed: Option<Value> = serde_json::from_slice(bytes).ok();
    let messages: Vec<Message> = parsed
        .as_ref()
        .and_then(|v| v.get("errors"))
        .and_then(|e| serde_json::from_value(e.clone()).ok())
        .unwrap_or_default();
    let first = || {
        messages
            .first()
            .map(|m| m.message.clone())
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into())
    };
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            if messages
                .iter()
                .any(|m| m.extensions.code == "DATE_OUT_OF_RANGE")
            {
                return Err(Gks2Error::ClockDifference(first()));
            }
            return Err(Gks2Error::AuthenticationRefused(first()));
        }
        StatusCode::PAYLOAD_TOO_LARGE => return Err(Gks2Error::TooLarge),
        s if !s.is_success() => {
            return Err(Gks2Error::Http {
                status: s,
                body: first(),
            });
        }
        _ => {}
    }
    if messages.iter().any(|m| m.extensions.code == "BUFFER_FULL") {
        return Err(Gks2Error::BufferFull);
    }
    if !messages.is_empty() {
        return Err(Gks2Error::GraphQl(messages));
    }
    match parsed.and_then(|v| v.get("data").cloned()) {
        Some(d @ Value::Object(_)) => Ok(d),
        _ => Err(Gks2Error::Malformed("the answer has no data".into())),
    }
}
