//! The HTTP API (hyper): orders, receipts, status, signer, journal export, metrics, and the admin
//! routes `fdmctl` uses, and the installer's and owner's web page under `/ui/` ([`web`]). The routes are specified in `docs/openapi.yaml`.
//!
//! Limits: request bodies over `http.max_body_bytes` get 413, every request is bounded by
//! `http.request_timeout_ms`, headers must arrive within 5 seconds. A connection is
//! unauthenticated until one of its requests bears a valid token: such connections are kept in a
//! bounded pool of their own ([`crate::admission`]) and live at most 30 seconds; authenticated
//! ones take one of the `http.max_connections` slots (a valid request finding none free gets 503).

mod admin;
mod reports_api;
mod response;
mod restaurant;
mod routes;
mod signer_admin;
pub mod web;

pub use routes::ROUTES;
pub(crate) use routes::declared_length;

use crate::admission::{Admission, PreAuthLimits, PreAuthPool};
use crate::app::App;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::{Request, Response, StatusCode, header};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Time a client has to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a connection that has not authenticated stays open (public routes such as
/// `/v1/status` and `/metrics` are served on such connections; see [`crate::admission`]).
const UNAUTHENTICATED_LIFETIME: Duration = Duration::from_secs(30);

/// The running HTTP server.
pub struct HttpService {
    local_addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl HttpService {
    /// Binds `app.config.http.listen` and serves until `app.shutdown` is cancelled.
    pub async fn start(app: Arc<App>) -> anyhow::Result<HttpService> {
        let listener = TcpListener::bind(app.config.http.listen)
            .await
            .map_err(|e| {
                anyhow::anyhow!("HTTP: cannot listen on {}: {e}", app.config.http.listen)
            })?;
        let local_addr = listener.local_addr()?;
        let web = web::Web::open(&app.config.fdm.data_dir)
            .map_err(|e| anyhow::anyhow!("web page: {e}"))?;
        let task = tokio::spawn(accept_loop(app, web, listener));
        Ok(HttpService { local_addr, task })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Waits for the server to stop (after `app.shutdown` is cancelled) and its connections to
    /// finish, at most `grace`.
    pub async fn shutdown(self, grace: Duration) {
        if tokio::time::timeout(grace, self.task).await.is_err() {
            tracing::warn!("HTTP connections still open after {grace:?}; abandoning them");
        }
    }
}

async fn accept_loop(app: Arc<App>, web: Arc<web::Web>, listener: TcpListener) {
    let authenticated = Arc::new(Semaphore::new(app.config.http.max_connections));
    let pre_auth = PreAuthPool::new("http", PreAuthLimits::DEFAULT);
    let mut connections = JoinSet::new();
    app.status.set_http_up(true);
    let hb = app.status.heartbeat("http");
    loop {
        app.status.beat(&hb);
        let accepted = tokio::select! {
            _ = app.shutdown.cancelled() => break,
            _ = tokio::time::sleep(Duration::from_secs(5)) => continue,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!("HTTP accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let connection = Admission::new(pre_auth.admit(peer.ip()), authenticated.clone());
        connections.spawn(serve(app.clone(), web.clone(), stream, peer, connection));
        while connections.try_join_next().is_some() {}
    }
    app.status.set_http_up(false);
    drop(listener);
    while connections.join_next().await.is_some() {}
}

/// Serves one connection until the client closes it, or, while it is unauthenticated, until
/// the pool closes it or [`UNAUTHENTICATED_LIFETIME`] has passed.
async fn serve(
    app: Arc<App>,
    web: Arc<web::Web>,
    stream: TcpStream,
    peer: SocketAddr,
    connection: Arc<Admission>,
) {
    let requests = connection.clone();
    let service = hyper::service::service_fn(move |req| {
        let app = app.clone();
        let web = web.clone();
        let connection = requests.clone();
        async move {
            if !admit_request(&connection, &app, &web, &req) {
                return Ok::<_, std::convert::Infallible>(too_many_connections(
                    app.config.http.max_connections,
                ));
            }
            routes::handle(app, web, req, peer).await
        }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    let unauthenticated_end = connection.unauthenticated_end(UNAUTHENTICATED_LIFETIME);
    tokio::select! {
        r = conn => if let Err(e) = r {
            tracing::debug!("HTTP connection from {peer}: {e}");
        },
        () = unauthenticated_end => {
            tracing::debug!("HTTP connection from {peer} closed before it authenticated");
        }
    }
}

fn too_many_connections(max: usize) -> Response<response::Body> {
    let mut r = response::error(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("too many authenticated HTTP connections (http.max_connections = {max})"),
    );
    r.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    r
}

/// Whether `req` may be served on a connection admitted as `admission`: always while the
/// connection is unauthenticated and the request bears no valid token or session; a valid one
/// moves the connection to an authenticated slot (`http.max_connections`), and `false` means
/// none is free.
fn admit_request(
    admission: &Admission,
    app: &App,
    web: &web::Web,
    req: &Request<Incoming>,
) -> bool {
    if admission.is_authenticated() {
        return true;
    }
    let valid = match routes::bearer(req) {
        Some(token) => app.access.check_any_token(token),
        None => web.session_of(req.headers()).is_some(),
    };
    !valid || admission.authenticate()
}
