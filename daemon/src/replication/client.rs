//! The HTTP(S) request that sends one segment: hyper 1 over a TCP connection of its own, with
//! rustls (ring provider) for `https://`. One connection per segment: segments are large and
//! rare, and a fresh connection never inherits a half-dead one after days offline.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Uri;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Largest answer body read (the back office answers a few hundred bytes).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Why a segment could not be sent, or the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL is not usable.
    #[error("{0}")]
    Url(String),
    /// The CA file or the system roots could not be read.
    #[error("TLS roots: {0}")]
    Roots(String),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// Connecting, the TLS handshake or the exchange failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// HTTP failed.
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    /// The request could not be built.
    #[error("HTTP request: {0}")]
    Request(#[from] hyper::http::Error),
    /// The answer was too large or broken.
    #[error("answer: {0}")]
    Answer(String),
    /// The request took longer than `timeout_ms`.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// Where segments go.
#[derive(Debug, Clone)]
pub struct Target {
    tls: bool,
    host: String,
    port: u16,
    /// `/…/v1/establishments/{id}/segments`
    path: String,
}

impl Target {
    /// Parses the base URL; plain `http://` is accepted to a loopback address only.
    pub fn parse(url: &str, establishment: &str) -> Result<Target, ClientError> {
        let uri: Uri = url
            .parse()
            .map_err(|e| ClientError::Url(format!("{url:?} is not a URL: {e}")))?;
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => {
                return Err(ClientError::Url(format!(
                    "{url:?} must start with https:// (or http:// to a loopback address)"
                )));
            }
        };
        let host = uri
            .host()
            .ok_or_else(|| ClientError::Url(format!("{url:?} names no host")))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        if !tls {
            let loopback =
                host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
            if !loopback {
                return Err(ClientError::Url(format!(
                    "{url:?}: plain http:// is allowed to a loopback address only; use https://"
                )));
            }
        }
        if uri.query().is_some() {
            return Err(ClientError::Url(format!("{url:?} must not have a query")));
        }
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let base = uri.path().trim_end_matches('/');
        Ok(Target {
            tls,
            host,
            port,
            path: format!("{base}/v1/establishments/{establishment}/segments"),
        })
    }

    /// `https`/`http`, host and port, for the status (never the credential).
    pub fn describe(&self) -> String {
        format!(
            "{}://{}:{}{}",
            if self.tls { "https" } else { "http" },
            self.host,
            self.port,
            self.path
        )
    }

    /// Whether the target needs TLS.
    pub fn tls(&self) -> bool {
        self.tls
    }
}

/// The TLS client configuration: the CA file's certificates only, or the system's roots.
pub fn tls_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, ClientError> {
    let roots = match ca_file {
        Some(file) => crate::tls::Roots::File(file),
        None => crate::tls::Roots::System,
    };
    crate::tls::client_config(roots, None).map_err(|e| ClientError::Roots(e.to_string()))
}

/// The back office's answer: HTTP status and body (JSON, bounded).
#[derive(Debug)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// The body, parsed (`Null` when it is not JSON).
    pub body: serde_json::Value,
}

/// Sends one segment; the whole exchange is bounded by `timeout`.
pub async fn post_segment(
    target: &Target,
    tls: Option<&Arc<ClientConfig>>,
    credential: &str,
    segment: Vec<u8>,
    timeout: Duration,
) -> Result<Answer, ClientError> {
    tokio::time::timeout(timeout, exchange(target, tls, credential, segment))
        .await
        .map_err(|_| ClientError::Timeout(timeout))?
}

async fn exchange(
    target: &Target,
    tls: Option<&Arc<ClientConfig>>,
    credential: &str,
    segment: Vec<u8>,
) -> Result<Answer, ClientError> {
    let tcp = tokio::net::TcpStream::connect((target.host.as_str(), target.port)).await?;
    let _ = tcp.set_nodelay(true);
    let request = hyper::Request::post(target.path.as_str())
        .header(hyper::header::HOST, host_header(target))
        .header(hyper::header::AUTHORIZATION, format!("Bearer {credential}"))
        .header(hyper::header::CONTENT_TYPE, "application/x-ndjson")
        .body(Full::new(Bytes::from(segment)))?;
    if target.tls {
        let config = tls
            .ok_or_else(|| ClientError::Roots("no TLS configuration".into()))?
            .clone();
        let name = ServerName::try_from(target.host.clone())
            .map_err(|e| ClientError::Url(format!("{}: {e}", target.host)))?;
        let stream = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await?;
        send(TokioIo::new(stream), request).await
    } else {
        send(TokioIo::new(tcp), request).await
    }
}

async fn send<T>(io: T, request: hyper::Request<Full<Bytes>>) -> Result<Answer, ClientError>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    let conn = tokio::spawn(conn);
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
        .collect()
        .await
        .map_err(|e| ClientError::Answer(e.to_string()))?
        .to_bytes();
    conn.abort();
    Ok(Answer {
        status,
        body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    })
}

fn host_header(target: &Target) -> String {
    let host = if target.host.contains(':') {
        format!("[{}]", target.host)
    } else {
        target.host.clone()
    };
    let default = if target.tls { 443 } else { 80 };
    if target.port == default {
        host
    } else {
        format!("{host}:{}", target.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = Target::parse("https://office.example/base/", "bxl-01").unwrap();
        assert_eq!(
            t.describe(),
            "https://office.example:443/base/v1/establishments/bxl-01/segments"
        );
        assert!(Target::parse("http://127.0.0.1:8090", "a").is_ok());
        assert!(Target::parse("http://[::1]:8090", "a").is_ok());
        let e = Target::parse("http://office.example", "a").unwrap_err();
        assert!(e.to_string().contains("https://"), "{e}");
        assert!(Target::parse("ftp://x", "a").is_err());
        assert!(Target::parse("", "a").is_err());
    }

    #[test]
    fn a_missing_or_empty_ca_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("ca.pem");
        std::fs::write(&empty, "").unwrap();
        let e = tls_config(Some(&empty)).unwrap_err();
        assert!(e.to_string().contains("holds no certificate"), "{e}");
        let e = tls_config(Some(&dir.path().join("nope.pem"))).unwrap_err();
        assert!(e.to_string().contains("nope.pem"), "{e}");
    }
}

/// HTTPS against a local server whose certificate a throwaway CA signed (made with the
/// `openssl` command, as the MQTT TLS tests do).
#[cfg(test)]
mod tls_tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::process::Command;

    fn openssl(dir: &Path, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A CA and a certificate for 127.0.0.1 it signed.
    fn material(dir: &Path) {
        let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
        let args = |s: String| s.split(' ').map(str::to_owned).collect::<Vec<_>>();
        let run = |s: String| {
            let a = args(s);
            openssl(dir, &a.iter().map(String::as_str).collect::<Vec<_>>());
        };
        run(format!(
            "req -x509 {ec} -keyout ca.key -out ca.pem -days 2 -subj /CN=test-CA"
        ));
        run(format!(
            "req {ec} -keyout server.key -out server.csr -subj /CN=127.0.0.1"
        ));
        std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
        run("x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile san.ext".into());
        // Another CA, which did not sign the server's certificate.
        run(format!(
            "req -x509 {ec} -keyout other.key -out other.pem -days 2 -subj /CN=other-CA"
        ));
    }

    /// Serves one HTTPS connection: answers 200 with what it received (auth header, body).
    async fn serve_once(dir: &Path) -> (u16, tokio::task::JoinHandle<()>) {
        let config =
            crate::tls::server_config(&dir.join("server.pem"), &dir.join("server.key"), None)
                .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    continue;
                };
                let service = hyper::service::service_fn(
                    |req: hyper::Request<hyper::body::Incoming>| async move {
                        let auth = req
                            .headers()
                            .get(hyper::header::AUTHORIZATION)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned();
                        let path = req.uri().path().to_owned();
                        let body = req.into_body().collect().await?.to_bytes();
                        let answer =
                            serde_json::json!({"auth": auth, "path": path, "bytes": body.len()});
                        Ok::<_, hyper::Error>(hyper::Response::new(Full::new(Bytes::from(
                            answer.to_string(),
                        ))))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            }
        });
        (port, task)
    }

    #[tokio::test]
    async fn segments_go_over_https_to_a_server_the_ca_file_vouches_for_only() {
        let dir = tempfile::tempdir().unwrap();
        material(dir.path());
        let (port, server) = serve_once(dir.path()).await;
        let target = Target::parse(&format!("https://127.0.0.1:{port}"), "bxl-01").unwrap();
        let good = tls_config(Some(&dir.path().join("ca.pem"))).unwrap();
        let answer = post_segment(
            &target,
            Some(&good),
            "s3cret",
            b"segment bytes".to_vec(),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!(answer.body["auth"], "Bearer s3cret");
        assert_eq!(answer.body["path"], "/v1/establishments/bxl-01/segments");
        assert_eq!(answer.body["bytes"], 13);
        // A CA that did not sign the server's certificate: refused, nothing sent.
        let other = tls_config(Some(&dir.path().join("other.pem"))).unwrap();
        let e = post_segment(
            &target,
            Some(&other),
            "s3cret",
            b"x".to_vec(),
            Duration::from_secs(10),
        )
        .await
        .unwrap_err();
        assert!(e.to_string().to_lowercase().contains("certificate"), "{e}");
        server.abort();
    }
}
