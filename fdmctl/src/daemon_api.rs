//! Reaching the running daemon's admin API: its address and data directory from the configuration, and one request with the admin token.

use crate::cli::DaemonArgs;
use anyhow::{Context, bail};
use fdmd::client::{ClientError, request};
use hyper::{Method, StatusCode};
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;

pub(crate) struct Target {
    pub(crate) addr: SocketAddr,
    pub(crate) data_dir: std::path::PathBuf,
}

pub(crate) fn target(args: &DaemonArgs) -> anyhow::Result<Target> {
    let sources = fdmd::config::Sources::system(args.config.as_deref());
    let config = fdmd::config::load(&sources, &[]).context("reading the daemon's configuration")?;
    let mut addr = args.http.unwrap_or(config.http.listen);
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let data_dir = args.data_dir.clone().unwrap_or(config.fdm.data_dir);
    Ok(Target { addr, data_dir })
}

pub(crate) fn call(
    t: &Target,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Result<(StatusCode, Value), ClientError>> {
    let token = fdmd::access::read_admin_token(&t.data_dir).with_context(|| {
        format!(
            "reading {}/admin.token (run as root or the fdmd user, or give --data-dir)",
            t.data_dir.display()
        )
    })?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let body = body.map(|b| serde_json::to_vec(&b)).transpose()?;
    let answer = rt.block_on(request(
        t.addr,
        method,
        path,
        Some(&token),
        body,
        Duration::from_secs(10),
    ));
    Ok(answer.map(|(status, bytes)| {
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }))
}

pub(crate) fn expect_ok(answer: Result<(StatusCode, Value), ClientError>) -> anyhow::Result<Value> {
    let (status, body) = answer?;
    if !status.is_success() {
        bail!(
            "fdmd answered {status}: {}",
            body.get("message").and_then(Value::as_str).unwrap_or("")
        );
    }
    Ok(body)
}
