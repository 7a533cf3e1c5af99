//! A small HTTP/1.1 client for fdmd's own API (used by `fdmctl` and the tests), on hyper's
//! client connection API. One request per connection; bodies are bounded.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::time::Duration;

/// Largest response body read (exports are streamed elsewhere).
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// Why a request failed before an HTTP answer came.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Could not connect.
    #[error("cannot connect to fdmd at {addr}: {source}")]
    Connect {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// The exchange failed.
    #[error("HTTP exchange with {addr} failed: {message}")]
    Http {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        message: String,
    },
    /// No answer in time.
    #[error("fdmd at {0} did not answer in time")]
    Timeout(SocketAddr),
}

/// Sends one request and returns the status and body.
pub async fn request(
    addr: SocketAddr,
    method: Method,
    path: &str,
    bearer: Option<&str>,
    body: Option<Vec<u8>>,
    timeout: Duration,
) -> Result<(StatusCode, Bytes), ClientError> {
    tokio::time::timeout(timeout, exchange(addr, method, path, bearer, body))
        .await
        .map_err(|_| ClientError::Timeout(addr))?
}

async fn exchange(
    addr: SocketAddr,
    method: Method,
    path: &str,
    bearer: Option<&str>,
    body: Option<Vec<u8>>,
) -> Result<(StatusCode, Bytes), ClientError> {
    let http = |e: &dyn std::fmt::Display| ClientError::Http {
        addr,
        message: e.to_string(),
    };
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|source| ClientError::Connect { addr, source })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| http(&e))?;
    let driver = tokio::spawn(conn);
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, addr.to_string());
    if let Some(token) = bearer {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    if body.is_some() {
        builder = builder.header(header::CONTENT_TYPE, "application/json");
    }
    let req = builder
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|e| http(&e))?;
    let response = sender.send_request(req).await.map_err(|e| http(&e))?;
    let status = response.status();
    let bytes = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
        .collect()
        .await
        .map_err(|e| http(&e))?
        .to_bytes();
    driver.abort();
    Ok((status, bytes))
}
