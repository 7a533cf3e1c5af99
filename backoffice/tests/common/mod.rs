//! Shared by the back office's tests: a real PostgreSQL ([`pg`]), boxes writing real journals
//! ([`fdmbox`]), the back office served in-process on a loopback port, and a small HTTP client.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod fdmbox;
pub mod pg;

use fdmd_backoffice::{db, enrol, http, migrate};
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The admin token of the test servers.
pub const ADMIN: &str = "admin-token-for-tests-0123456789";

/// A back office on a throwaway cluster.
pub struct Office {
    pub pg: pg::Pg,
    pub addr: SocketAddr,
    pub pool: deadpool_postgres::Pool,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Office {
    /// Starts PostgreSQL, creates the database, migrates it and serves the API.
    pub async fn start() -> Office {
        Self::start_on(tokio::task::spawn_blocking(pg::Pg::start).await.unwrap()).await
    }

    /// The same on a cluster with PostgreSQL's durable defaults (the benchmark).
    pub async fn start_durable() -> Office {
        Self::start_on(
            tokio::task::spawn_blocking(pg::Pg::start_durable)
                .await
                .unwrap(),
        )
        .await
    }

    async fn start_on(pg: pg::Pg) -> Office {
        pg.psql("postgres", "CREATE DATABASE backoffice");
        let pool = db::pool(&pg.conninfo("backoffice"), 4).unwrap();
        {
            let mut client = pool.get().await.unwrap();
            migrate::run(&mut client).await.unwrap();
        }
        let (listener, addr) = http::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let mut config = http::ServerConfig::new(ADMIN);
        config.max_body_bytes = 8 * 1024 * 1024;
        config.silent_after = Duration::from_secs(3600);
        let state = Arc::new(http::State {
            pool: pool.clone(),
            metrics: Default::default(),
            config,
        });
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            http::serve(listener, state, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        Office {
            pg,
            addr,
            pool,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Enrols an establishment with these keys; returns its credential.
    pub async fn enrol(&self, id: &str, keys: Vec<Vec<u8>>) -> String {
        let mut client = self.pool.get().await.unwrap();
        enrol::enrol(
            &mut client,
            &enrol::Enrolment {
                id: id.into(),
                name: format!("Restaurant {id}"),
                vat_number: "BE0123456749".into(),
                keys,
            },
        )
        .await
        .unwrap()
    }

    /// Sends a segment.
    pub async fn push(&self, id: &str, credential: &str, segment: &[u8]) -> (u16, Value) {
        let (status, body) = request(
            self.addr,
            "POST",
            &format!("/v1/establishments/{id}/segments"),
            Some(credential),
            segment,
        )
        .await;
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    /// A GET of the admin API.
    pub async fn get(&self, path: &str) -> (u16, Vec<u8>) {
        request(self.addr, "GET", path, Some(ADMIN), b"").await
    }

    /// A GET of the admin API, as JSON.
    pub async fn get_json(&self, path: &str) -> Value {
        let (status, body) = self.get(path).await;
        assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).unwrap()
    }

    /// One number from SQL.
    pub async fn count(&self, sql: &str) -> i64 {
        let client = self.pool.get().await.unwrap();
        client.query_one(sql, &[]).await.unwrap().get(0)
    }

    /// Stops the server (the cluster stops when the office is dropped).
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    }
}

/// One HTTP/1.1 request on its own connection (bounded in time); status and body.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: &[u8],
) -> (u16, Vec<u8>) {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let auth = bearer
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: test\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        // A server may answer (413, 401) and close before the whole body is sent: the write then
        // fails, and the answer is still there to read.
        let body_sent = stream.write_all(body).await;
        let mut answer = Vec::new();
        let read = stream.read_to_end(&mut answer).await;
        if answer.is_empty() {
            panic!("no answer: body write {body_sent:?}, read {read:?}");
        }
        answer
    };
    let answer = tokio::time::timeout(Duration::from_secs(60), exchange)
        .await
        .expect("answer within 60 s");
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("HTTP head");
    let head = String::from_utf8_lossy(&answer[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    (status, answer[split + 4..].to_vec())
}

/// Splits an export into segments of at most `size` records, each a valid export of its own
/// (re-exported from the box, as the box would send them).
pub fn segments(b: &fdmbox::FdmBox, from: u64, to: u64, size: u64) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut start = from;
    while start <= to {
        let end = (start + size - 1).min(to);
        out.push(b.export(start, end));
        start = end + 1;
    }
    out
}
