//! The HTTP API (hyper): orders, receipts, status, signer, journal export, metrics, and the admin
//! routes `fdmctl` uses. The routes are specified in `docs/openapi.yaml`.
//!
//! Limits: request bodies over `http.max_body_bytes` get 413, every request is bounded by
//! `http.request_timeout_ms`, at most `http.max_connections` connections are served at once,
//! and headers must arrive within 10 seconds.

mod admin;
mod reports_api;
mod response;
mod restaurant;
mod routes;
mod signer_admin;

pub use routes::ROUTES;

use crate::app::App;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

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
        let task = tokio::spawn(accept_loop(app, listener));
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

async fn accept_loop(app: Arc<App>, listener: TcpListener) {
    let limit = Arc::new(Semaphore::new(app.config.http.max_connections));
    let mut connections = JoinSet::new();
    app.status.set_http_up(true);
    let hb = app.status.heartbeat("http");
    loop {
        app.status.beat(&hb);
        let permit = tokio::select! {
            _ = app.shutdown.cancelled() => break,
            p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
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
        let app = app.clone();
        connections.spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |req| routes::handle(app.clone(), req));
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!("HTTP connection from {peer}: {e}");
            }
        });
        while connections.try_join_next().is_some() {}
    }
    app.status.set_http_up(false);
    drop(listener);
    while connections.join_next().await.is_some() {}
}
