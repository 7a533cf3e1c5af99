//! The GKS 2.0 FDM emulator's HTTP side (`[gks2_fdm]`, off by default; ADR 0005): one listener
//! serving `POST /{device_id}/graphql` with the FDM digest, bounded bodies and GraphQL, answering
//! from [`super::fdm::Fdm`]. **Not certified, for development and tests.**

use super::auth;
use super::fdm::{FDM_SW_VERSION, Fdm, FdmSettings, NOT_CERTIFIED};
use super::graphql::{self, OperationKind};
use super::model::{EventLabel, Message, Mutation};
use crate::admission::{Admission, PreAuthLimits, PreAuthPool};
use crate::config::Gks2FdmSection;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{Map, Value, json};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Time a client has to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest life of one connection.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(120);
/// Time to read a body and sign.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a connection none of whose requests has passed the digest stays open.
const UNAUTHENTICATED_LIFETIME: Duration = Duration::from_secs(30);

struct Shared {
    fdm: Mutex<Fdm>,
    section: Gks2FdmSection,
    secret: String,
    /// HTTPS (and mTLS) when configured.
    tls: Option<tokio_rustls::TlsAcceptor>,
}

/// Longest TLS handshake (inside the connection's unauthenticated lifetime).
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The running emulator.
pub struct Emulator {
    local_addr: SocketAddr,
    public_key: Vec<u8>,
}

impl Emulator {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Its Ed25519 public key.
    pub fn public_key(&self) -> &[u8] {
        &self.public_key
    }
}

/// Reads the shared secret (file, trimmed; never logged).
pub fn read_secret(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("gks2_fdm.secret_file {}: {e}", path.display()))?;
    let secret = text.trim().to_owned();
    if secret.is_empty() || secret.len() > 1024 {
        anyhow::bail!(
            "gks2_fdm.secret_file {}: the secret must be 1–1024 bytes",
            path.display()
        );
    }
    Ok(secret)
}

/// Opens the emulator's store and key in `data_dir`, binds the listener and serves until
/// `shutdown` is cancelled.
pub async fn start(
    section: &Gks2FdmSection,
    data_dir: &Path,
    shutdown: CancellationToken,
) -> anyhow::Result<Emulator> {
    let secret = read_secret(&section.secret_file)?;
    let settings = FdmSettings {
        fdm_id: section.fdm_id.clone(),
        device_id: section.device_id.clone(),
        buffer_capacity: section.buffer_capacity,
        clock_tolerance_s: section.clock_tolerance_s,
    };
    let tls = match (&section.tls_cert_file, &section.tls_key_file) {
        (Some(cert), Some(key)) => Some(tokio_rustls::TlsAcceptor::from(
            crate::tls::server_config(cert, key, section.client_ca_file.as_deref())
                .map_err(|e| anyhow::anyhow!("gks2_fdm: {e}"))?,
        )),
        _ => None,
    };
    let fdm = Fdm::open(data_dir, settings)?;
    let public_key = fdm.public_key();
    let listener = TcpListener::bind(section.listen)
        .await
        .map_err(|e| anyhow::anyhow!("gks2_fdm: cannot listen on {}: {e}", section.listen))?;
    let local_addr = listener.local_addr()?;
    tracing::warn!(
        "{NOT_CERTIFIED}: serving POST /{}/graphql on {local_addr} over {} (FDM id {}, public key {})",
        section.device_id,
        match (&tls, &section.client_ca_file) {
            (None, _) => "plain HTTP",
            (Some(_), None) => "HTTPS",
            (Some(_), Some(_)) => "HTTPS, client certificates required",
        },
        section.fdm_id,
        hex::encode(&public_key)
    );
    let shared = Arc::new(Shared {
        fdm: Mutex::new(fdm),
        section: section.clone(),
        secret,
        tls,
    });
    tokio::spawn(accept_loop(shared, listener, shutdown));
    Ok(Emulator {
        local_addr,
        public_key,
    })
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, shutdown: CancellationToken) {
    // A connection is unauthenticated until one of its requests passes the digest: until then it
    // is in a pool of its own and lives at most UNAUTHENTICATED_LIFETIME, so idle sockets from
    // the LAN never take the slots of the POS systems (`max_connections`).
    let slots = Arc::new(Semaphore::new(shared.section.max_connections));
    let pre_auth = PreAuthPool::new("gks2_fdm", PreAuthLimits::DEFAULT);
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!("gks2_fdm accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let admission = Admission::new(pre_auth.admit(peer.ip()), slots.clone());
        let shared = shared.clone();
        tokio::spawn(async move {
            match shared.tls.clone() {
                None => serve(shared, admission, peer, stream).await,
                Some(acceptor) => {
                    // The handshake runs under the connection's pre-authentication admission, so
                    // stalled handshakes take no slot either.
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                    {
                        Ok(Ok(tls)) => serve(shared, admission, peer, tls).await,
                        Ok(Err(e)) => {
                            tracing::info!("gks2_fdm TLS handshake from {peer} failed: {e}");
                        }
                        Err(_) => tracing::debug!("gks2_fdm TLS handshake from {peer}: too slow"),
                    }
                }
            }
        });
    }
}

/// Serves one connection (plain or TLS) until it ends, its lifetime is over or it stays
/// unauthenticated too long.
async fn serve<S>(shared: Arc<Shared>, admission: Arc<Admission>, peer: SocketAddr, stream: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let requests = admission.clone();
    let service = hyper::service::service_fn(move |req| {
        let shared = shared.clone();
        let admission = requests.clone();
        async move { Ok::<_, std::convert::Infallible>(handle(shared, &admission, req).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        r = tokio::time::timeout(CONNECTION_LIFETIME, conn) => match r {
            Ok(Err(e)) => tracing::debug!("gks2_fdm connection from {peer}: {e}"),
            Err(_) => tracing::debug!("gks2_fdm connection from {peer}: lifetime over"),
            Ok(Ok(())) => {}
        },
        () = admission.unauthenticated_end(UNAUTHENTICATED_LIFETIME) => {
            tracing::debug!("gks2_fdm connection from {peer} closed before it authenticated");
        }
    }
}

fn respond(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

fn errors(status: StatusCode, messages: &[Message]) -> Response<Full<Bytes>> {
    respond(status, &json!({"data": null, "errors": messages}))
}

fn error(status: StatusCode, category: &str, code: &str, text: &str) -> Response<Full<Bytes>> {
    errors(status, &[Message::new(category, code, text, true)])
}

async fn handle(
    shared: Arc<Shared>,
    admission: &Admission,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    match tokio::time::timeout(REQUEST_TIMEOUT, handle_inner(shared, admission, req)).await {
        Ok(r) => r,
        Err(_) => error(
            StatusCode::REQUEST_TIMEOUT,
            "REQUEST",
            "REQUEST_TIMEOUT",
            "the request took too long",
        ),
    }
}

async fn handle_inner(
    shared: Arc<Shared>,
    admission: &Admission,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let path = format!("/{}/graphql", shared.section.device_id);
    if req.uri().path() != path {
        return error(
            StatusCode::NOT_FOUND,
            "REQUEST",
            "NOT_FOUND",
            "no such device on this FDM",
        );
    }
    if req.method() != Method::POST {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "REQUEST",
            "METHOD_NOT_ALLOWED",
            "only POST",
        );
    }
    let max = shared.section.max_body_bytes;
    if crate::http::declared_length(&req).is_some_and(|n| n > max as u64) {
        return too_large(max);
    }
    let header_text = |name: header::HeaderName| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let date = header_text(header::DATE);
    let authorization = header_text(header::AUTHORIZATION);
    let body = match Limited::new(req.into_body(), max).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            return too_large(max);
        }
        Err(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "REQUEST",
                "BAD_REQUEST",
                "the body could not be read",
            );
        }
    };
    if let Err(e) = auth::check(
        "POST",
        date.as_deref(),
        authorization.as_deref(),
        &shared.secret,
        &body,
        chrono::Utc::now(),
        shared.section.max_date_skew_s,
    ) {
        let code = match e {
            auth::AuthError::Stale(_) | auth::AuthError::BadDate => "DATE_OUT_OF_RANGE",
            _ => "AUTHENTICATION_FAILED",
        };
        return error(
            StatusCode::UNAUTHORIZED,
            "AUTHENTICATION",
            code,
            &e.to_string(),
        );
    }
    if !admission.authenticate() {
        let mut r = error(
            StatusCode::SERVICE_UNAVAILABLE,
            "REQUEST",
            "TOO_MANY_CONNECTIONS",
            &format!(
                "every connection slot is taken (gks2_fdm.max_connections = {})",
                shared.section.max_connections
            ),
        );
        r.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
        return r;
    }
    graphql_request(shared, &body).await
}

fn too_large(max: usize) -> Response<Full<Bytes>> {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "REQUEST",
        "PAYLOAD_TOO_LARGE",
        &format!("the body is larger than {max} bytes"),
    )
}

fn gql_error(code: &str, text: &str) -> Response<Full<Bytes>> {
    error(StatusCode::OK, "GRAPHQL", code, text)
}

async fn graphql_request(shared: Arc<Shared>, body: &[u8]) -> Response<Full<Bytes>> {
    let request: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "GRAPHQL",
                "GRAPHQL_PARSE_FAILED",
                &format!("the body is not JSON: {e}"),
            );
        }
    };
    let Some(query) = request.get("query").and_then(Value::as_str) else {
        return error(
            StatusCode::BAD_REQUEST,
            "GRAPHQL",
            "GRAPHQL_PARSE_FAILED",
            "the body has no query",
        );
    };
    let empty = Map::new();
    let variables = match request.get("variables") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(m)) => m,
        Some(_) => return gql_error("BAD_USER_INPUT", "variables must be an object"),
    };
    let op = match graphql::parse(query, variables) {
        Ok(op) => op,
        Err(e) => return gql_error(e.code(), &e.to_string()),
    };
    match (op.kind, op.field.as_str()) {
        (OperationKind::Query, "device") => {
            let public_key = {
                let fdm = shared.fdm.lock().unwrap_or_else(PoisonError::into_inner);
                auth::base64_encode(&fdm.public_key())
            };
            let device = json!({
                "id": shared.section.device_id,
                "fdmId": shared.section.fdm_id,
                "fdmSwVersion": FDM_SW_VERSION,
                "publicKey": public_key,
                "certified": false,
            });
            let value = match &op.selection {
                Some(s) => graphql::project(&device, s),
                None => return gql_error("BAD_USER_INPUT", "device needs a selection"),
            };
            respond(StatusCode::OK, &json!({"data": {op.key: value}}))
        }
        (OperationKind::Mutation, field) => {
            let Some(mutation) = Mutation::from_field(field) else {
                return gql_error(
                    "GRAPHQL_VALIDATION_FAILED",
                    &format!("Cannot query field {field:?} on type \"Mutation\""),
                );
            };
            let Some(data) = op.arguments.get("data").filter(|d| d.is_object()).cloned() else {
                return gql_error("BAD_USER_INPUT", "argument data must be an input object");
            };
            let training = match op.arguments.get("isTraining") {
                Some(Value::Bool(b)) => *b,
                None | Some(Value::Null) => false,
                Some(_) => return gql_error("BAD_USER_INPUT", "isTraining must be a Boolean"),
            };
            let Some(selection) = op.selection.clone() else {
                return gql_error("BAD_USER_INPUT", "SignResult needs a selection");
            };
            // The test knob `test_report_delay_ms`: a slow FDM signing a report.
            let delay = shared.section.test_report_delay_ms.min(60_000);
            if delay > 0 && mutation.label(false) == EventLabel::R {
                tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
            }
            // Signed on a task of its own: a client that goes away does not stop the event
            // from being stored (a resend then finds it).
            let work = tokio::task::spawn_blocking(move || {
                let mut fdm = shared.fdm.lock().unwrap_or_else(PoisonError::into_inner);
                fdm.sign(mutation, &data, training, chrono::Local::now())
            });
            match work.await {
                Ok(Ok(result)) => match serde_json::to_value(&result) {
                    Ok(v) => respond(
                        StatusCode::OK,
                        &json!({"data": {op.key: graphql::project(&v, &selection)}}),
                    ),
                    Err(e) => gql_error("INTERNAL", &e.to_string()),
                },
                Ok(Err(messages)) => errors(StatusCode::OK, &messages),
                Err(e) => gql_error("INTERNAL", &format!("signing task failed: {e}")),
            }
        }
        (_, field) => gql_error(
            "GRAPHQL_VALIDATION_FAILED",
            &format!("Cannot query field {field:?}"),
        ),
    }
}
