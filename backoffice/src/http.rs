//! The HTTP API (hyper 1, HTTP/1.1). JSON only here, at the edge.
//!
//! | route | who | what |
//! |---|---|---|
//! | `POST /v1/establishments/{id}/segments` | the establishment's credential | ingest a segment |
//! | `GET /v1/establishments` | admin | establishments: head, flags, silence |
//! | `GET /v1/establishments/{id}/turnover?from=&to=` | admin | turnover by day and VAT rate |
//! | `GET /v1/turnover?from=&to=` | admin | the same, chain-wide |
//! | `GET /v1/establishments/{id}/z-reports?from=&to=` | admin | Z reports as issued |
//! | `GET /v1/establishments/{id}/export?from=&to=` | admin | export (`fdmctl verify` accepts it) |
//! | `GET /metrics` | anyone | Prometheus metrics |
//!
//! Limits: bodies over [`ServerConfig::max_body_bytes`] get 413; headers must arrive within 10
//! seconds; a request is answered within [`REQUEST_TIMEOUT`]; at most
//! [`ServerConfig::max_connections`] connections at once.

use crate::ingest::{self, Outcome};
use crate::metrics::{Gauges, Metrics};
use crate::reports::{self, Period, TurnoverLine};
use crate::{Error, credential, enrol, export};
use bytes::Bytes;
use deadpool_postgres::Pool;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Every route, as `docs/openapi-backoffice.json` names it (a test keeps the two in step).
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/v1/establishments/{id}/segments"),
    ("GET", "/v1/establishments"),
    ("GET", "/v1/establishments/{id}/turnover"),
    ("GET", "/v1/turnover"),
    ("GET", "/v1/establishments/{id}/z-reports"),
    ("GET", "/v1/establishments/{id}/export"),
    ("GET", "/metrics"),
];

/// Time a request may take from its headers to its answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Settings of the server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest request body (a segment).
    pub max_body_bytes: usize,
    /// Connections served at once.
    pub max_connections: usize,
    /// An establishment with no new record for longer is reported silent.
    pub silent_after: Duration,
    /// SHA-256 of the admin token (read API).
    pub admin_token_sha256: [u8; 32],
}

impl ServerConfig {
    /// Defaults with this admin token.
    pub fn new(admin_token: &str) -> ServerConfig {
        ServerConfig {
            max_body_bytes: 64 * 1024 * 1024,
            max_connections: 256,
            silent_after: Duration::from_secs(24 * 3600),
            admin_token_sha256: credential::hash(admin_token),
        }
    }
}

/// What every request needs.
pub struct State {
    /// The database.
    pub pool: Pool,
    /// Counters.
    pub metrics: Metrics,
    /// Settings.
    pub config: ServerConfig,
}

type Answer = Response<Full<Bytes>>;

/// Serves on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    state: Arc<State>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), Error> {
    let slots = Arc::new(Semaphore::new(state.config.max_connections.max(1)));
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => return Ok(()),
            a = listener.accept() => a,
        };
        let (stream, _peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move {
                    let answer = tokio::time::timeout(REQUEST_TIMEOUT, handle(&state, req))
                        .await
                        .unwrap_or_else(|_| {
                            problem(
                                StatusCode::SERVICE_UNAVAILABLE,
                                "timeout",
                                "request timed out",
                            )
                        });
                    Ok::<_, std::convert::Infallible>(answer)
                }
            });
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10));
            if let Err(e) = builder
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!("connection: {e}");
            }
            drop(permit);
        });
    }
}

/// Binds `addr`; returns the listener and its address.
pub async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), Error> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

fn json_answer(status: StatusCode, value: &impl Serialize) -> Answer {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

fn problem(status: StatusCode, code: &str, message: &str) -> Answer {
    json_answer(status, &json!({"error": code, "message": message}))
}

fn error_answer(e: &Error) -> Answer {
    match e {
        Error::Invalid { .. } => problem(StatusCode::BAD_REQUEST, "invalid", &e.to_string()),
        Error::UnknownEstablishment(_) => {
            problem(StatusCode::NOT_FOUND, "not_found", &e.to_string())
        }
        Error::Export(_) => {
            tracing::error!("{e}");
            problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "stored_record_unreadable",
                &e.to_string(),
            )
        }
        _ => {
            tracing::error!("{e}");
            problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the back office cannot answer now (database)",
            )
        }
    }
}

async fn handle(state: &State, req: Request<Incoming>) -> Answer {
    state.metrics.request();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let result = match (req.method(), segments.as_slice()) {
        (&Method::POST, ["v1", "establishments", id, "segments"]) => {
            let id = (*id).to_owned();
            return post_segment(state, &id, req).await;
        }
        (&Method::GET, ["metrics"]) => metrics(state).await,
        (&Method::GET, ["v1", "establishments"]) => {
            admin(state, &req, async {
                let client = state.pool.get().await?;
                let list = reports::establishments(&**client, state.config.silent_after).await?;
                Ok(json_answer(
                    StatusCode::OK,
                    &json!({ "establishments": list }),
                ))
            })
            .await
        }
        (&Method::GET, ["v1", "turnover"]) => {
            admin(state, &req, async {
                let period = period_of(&query)?;
                let client = state.pool.get().await?;
                let rows = reports::turnover(&**client, None, period).await?;
                let lines: Vec<TurnoverLine> = rows.iter().map(TurnoverLine::from).collect();
                Ok(json_answer(StatusCode::OK, &json!({ "turnover": lines })))
            })
            .await
        }
        (&Method::GET, ["v1", "establishments", id, "turnover"]) => {
            admin(state, &req, async {
                let period = period_of(&query)?;
                let client = state.pool.get().await?;
                known(&**client, id).await?;
                let rows = reports::turnover(&**client, Some(*id), period).await?;
                let lines: Vec<TurnoverLine> = rows.iter().map(TurnoverLine::from).collect();
                Ok(json_answer(
                    StatusCode::OK,
                    &json!({ "establishment": id, "turnover": lines }),
                ))
            })
            .await
        }
        (&Method::GET, ["v1", "establishments", id, "z-reports"]) => {
            admin(state, &req, async {
                let period = period_of(&query)?;
                let client = state.pool.get().await?;
                known(&**client, id).await?;
                let z = reports::z_reports(&**client, id, period).await?;
                Ok(json_answer(
                    StatusCode::OK,
                    &json!({ "establishment": id, "z_reports": z }),
                ))
            })
            .await
        }
        (&Method::GET, ["v1", "establishments", id, "export"]) => {
            admin(state, &req, async {
                let period = period_of(&query)?;
                let client = state.pool.get().await?;
                Ok(match export::export(&**client, id, period).await? {
                    Some(bytes) => {
                        let mut r = Response::new(Full::new(Bytes::from(bytes)));
                        r.headers_mut().insert(
                            header::CONTENT_TYPE,
                            header::HeaderValue::from_static("application/x-ndjson"),
                        );
                        r
                    }
                    None => problem(
                        StatusCode::NOT_FOUND,
                        "no_records",
                        "no record of this establishment is dated in the period",
                    ),
                })
            })
            .await
        }
        _ => Ok(problem(StatusCode::NOT_FOUND, "not_found", "no such route")),
    };
    result.unwrap_or_else(|e| error_answer(&e))
}

async fn known(client: &impl tokio_postgres::GenericClient, id: &str) -> Result<(), Error> {
    match enrol::credential_hash(client, id).await? {
        Some(_) => Ok(()),
        None => Err(Error::UnknownEstablishment(id.to_owned())),
    }
}

fn period_of(query: &str) -> Result<Period, Error> {
    let param = |name: &str| {
        query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    };
    match (param("from"), param("to")) {
        (Some(from), Some(to)) => Period::parse(from, to),
        _ => Err(Error::invalid(
            "from, to",
            "both dates are required: ?from=YYYY-MM-DD&to=YYYY-MM-DD",
        )),
    }
}

fn bearer_of(req: &Request<Incoming>) -> Option<String> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok();
    credential::bearer(value).map(str::to_owned)
}

fn unauthorized(state: &State) -> Answer {
    state.metrics.unauthorized();
    let mut r = problem(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "a valid bearer credential is required",
    );
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    r
}

async fn admin(
    state: &State,
    req: &Request<Incoming>,
    then: impl std::future::Future<Output = Result<Answer, Error>>,
) -> Result<Answer, Error> {
    match bearer_of(req) {
        Some(token) if credential::matches(&token, &state.config.admin_token_sha256) => then.await,
        _ => Ok(unauthorized(state)),
    }
}

async fn metrics(state: &State) -> Result<Answer, Error> {
    let client = state.pool.get().await?;
    let row = client
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE flagged),
                    count(*) FILTER (WHERE last_received_at IS NULL
                                        OR last_received_at < now() - make_interval(secs => $1::float8)),
                    coalesce(sum(last_seq), 0)::bigint
               FROM establishments",
            &[&state.config.silent_after.as_secs_f64()],
        )
        .await?;
    let text = state.metrics.render(Gauges {
        establishments: row.get(0),
        flagged: row.get(1),
        silent: row.get(2),
        records: row.get(3),
    });
    let mut r = Response::new(Full::new(Bytes::from(text)));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    Ok(r)
}

/// The body length the request declares (`Content-Length`), when it declares a readable one.
fn declared_length(req: &Request<Incoming>) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

async fn post_segment(state: &State, id: &str, req: Request<Incoming>) -> Answer {
    let Some(token) = bearer_of(&req) else {
        return unauthorized(state);
    };
    // The credential first (an unknown establishment gets the same 401 as a wrong credential).
    let stored = match state.pool.get().await {
        Ok(client) => enrol::credential_hash(&**client, id).await,
        Err(e) => Err(e.into()),
    };
    match stored {
        Ok(Some(hash)) if credential::matches(&token, &hash) => {}
        Ok(Some(_)) => return unauthorized(state),
        Ok(None) => {
            // The same work as for a known establishment: no telling ids apart by timing.
            let _ = credential::matches(&token, &[0u8; 32]);
            return unauthorized(state);
        }
        Err(e) => return error_answer(&e),
    }
    let limit = state.config.max_body_bytes;
    let too_large = || {
        problem(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            &format!("a segment may take at most {limit} bytes: send smaller segments"),
        )
    };
    // A declared length over the limit is refused before a byte of the body is read.
    if declared_length(&req).is_some_and(|length| length > limit as u64) {
        return too_large();
    }
    let body = match Limited::new(req.into_body(), limit).collect().await {
        // One buffer (the frames joined), handed on as it is: not copied again.
        Ok(collected) => collected.to_bytes(),
        Err(_) => return too_large(),
    };
    match ingest::ingest(&state.pool, id, body).await {
        Ok(Outcome::Accepted {
            stored,
            already_stored,
            last_seq,
        }) => {
            state.metrics.accepted(stored);
            json_answer(
                StatusCode::OK,
                &json!({"stored": stored, "already_stored": already_stored, "last_seq": last_seq}),
            )
        }
        Ok(Outcome::Refused {
            refusal,
            evidence,
            last_seq,
        }) => {
            state.metrics.refused(refusal.code);
            tracing::warn!("establishment {id}: segment refused: {refusal}");
            let status = StatusCode::from_u16(refusal.code.http_status())
                .unwrap_or(StatusCode::UNPROCESSABLE_ENTITY);
            json_answer(
                status,
                &json!({
                    "error": refusal.code.as_str(),
                    "message": refusal.problem,
                    "seq": refusal.seq,
                    "evidence": evidence,
                    "flagged": refusal.code.is_evidence(),
                    "last_seq": last_seq,
                    "next_seq": last_seq + 1,
                }),
            )
        }
        Err(e) => error_answer(&e),
    }
}
