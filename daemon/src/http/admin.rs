//! Admin routes (admin bearer token): enrolment of registers and stations, journal export.

use super::response::{Body, error, json_response};
use super::routes::read_body;
use crate::access::{AccessError, ClientKind};
use crate::app::{App, EnrolError};
use crate::journal::export::write_export;
use crate::journal::query;
use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use std::sync::Arc;

/// `/v1/admin/…`
pub async fn route(app: Arc<App>, req: Request<Incoming>, rest: &[&str]) -> Response<Body> {
    if rest.first() == Some(&"signer") {
        return super::signer_admin::route(app, req, rest).await;
    }
    let kind = match rest.first() {
        Some(&"registers") => ClientKind::Register,
        Some(&"stations") => ClientKind::Station,
        _ => return error(StatusCode::NOT_FOUND, "no such admin route"),
    };
    match (req.method().clone(), rest) {
        (Method::GET, [_]) => {
            let list: Vec<Value> = app
                .access
                .list()
                .into_iter()
                .filter(|e| e.kind == kind)
                .map(|e| json!({"id": e.id, "mqtt_username": e.mqtt_username, "active": e.active, "enrolled_at": e.enrolled_at, "revoked_at": e.revoked_at}))
                .collect();
            json_response(StatusCode::OK, &json!(list))
        }
        (Method::POST, [_]) => {
            let body = match read_body(req, 4096).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            let id = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v.get("id").and_then(Value::as_str).map(str::to_owned));
            let Some(id) = id else {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "body must be {\"id\": \"…\"}",
                );
            };
            enrol(&app, kind, &id).await
        }
        (Method::DELETE, [_, id]) => revoke(&app, kind, id).await,
        _ => error(StatusCode::NOT_FOUND, "no such admin route"),
    }
}

async fn enrol(app: &App, kind: ClientKind, id: &str) -> Response<Body> {
    match app.enrol(kind, id).await {
        Ok(creds) => json_response(StatusCode::CREATED, &json!(creds)),
        Err(e) => enrol_error(e),
    }
}

async fn revoke(app: &App, kind: ClientKind, id: &str) -> Response<Body> {
    match app.revoke(kind, id).await {
        Ok(()) => json_response(StatusCode::OK, &json!({"id": id, "active": false})),
        Err(e) => enrol_error(e),
    }
}

fn enrol_error(e: EnrolError) -> Response<Body> {
    match e {
        EnrolError::Access(e) => access_error(e),
        EnrolError::Journal(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

fn access_error(e: AccessError) -> Response<Body> {
    let status = match e {
        AccessError::BadId(_) => StatusCode::UNPROCESSABLE_ENTITY,
        AccessError::Exists { .. } => StatusCode::CONFLICT,
        AccessError::Unknown(_) => StatusCode::NOT_FOUND,
        AccessError::Io { .. } | AccessError::Random(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, e.to_string())
}

fn query_u64(query: Option<&str>, name: &str) -> Result<Option<u64>, String> {
    for pair in query.unwrap_or("").split('&') {
        if let Some(value) = pair.strip_prefix(name).and_then(|r| r.strip_prefix('=')) {
            return value
                .parse()
                .map(Some)
                .map_err(|_| format!("{name} must be a whole number"));
        }
    }
    Ok(None)
}

fn query_date(query: Option<&str>, name: &str) -> Result<Option<chrono::NaiveDate>, String> {
    for pair in query.unwrap_or("").split('&') {
        if let Some(value) = pair.strip_prefix(name).and_then(|r| r.strip_prefix('=')) {
            return chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d")
                .map(Some)
                .map_err(|_| format!("{name} must be a date YYYY-MM-DD"));
        }
    }
    Ok(None)
}

/// The records an export covers, as its query names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportRange {
    /// `from_seq=A&to_seq=B` (defaults: 1 and the last record).
    Seq(u64, u64),
    /// `from_date=D1&to_date=D2`: every record whose FDM date (docs/journal-format.md §9) lies
    /// in `D1..=D2`; `to_date` defaults to `from_date`.
    Dates(chrono::NaiveDate, chrono::NaiveDate),
}

impl ExportRange {
    /// Reads the range from a query string; dates and sequence numbers do not mix.
    pub fn parse(query: Option<&str>) -> Result<ExportRange, String> {
        let (from_seq, to_seq) = (query_u64(query, "from_seq")?, query_u64(query, "to_seq")?);
        let (from_date, to_date) = (
            query_date(query, "from_date")?,
            query_date(query, "to_date")?,
        );
        match (from_date, to_date) {
            (None, None) => Ok(ExportRange::Seq(
                from_seq.unwrap_or(1),
                to_seq.unwrap_or(u64::MAX),
            )),
            _ if from_seq.is_some() || to_seq.is_some() => {
                Err("give from_seq/to_seq or from_date/to_date, not both".into())
            }
            (None, Some(_)) => Err("to_date needs from_date".into()),
            (Some(from), to) => {
                let to = to.unwrap_or(from);
                if to < from {
                    return Err("to_date is before from_date".into());
                }
                Ok(ExportRange::Dates(from, to))
            }
        }
    }

    /// The sequence numbers `(from, to)` to export; `None` when no record has those dates.
    /// Dates are found by bisection on the sequence numbers (records never go back in time), so
    /// the cost does not grow with the journal.
    pub fn resolve(self, conn: &rusqlite::Connection) -> rusqlite::Result<Option<(u64, u64)>> {
        match self {
            ExportRange::Seq(from, to) => Ok(Some((from, to))),
            ExportRange::Dates(from, to) => query::seq_range_of_dates_bisected(
                conn,
                &from.format("%Y-%m-%d").to_string(),
                &to.format("%Y-%m-%d").to_string(),
            ),
        }
    }
}

/// `GET /v1/journal/export?from_seq=A&to_seq=B` or `?from_date=D1&to_date=D2`: the documented
/// JSON-lines export, streamed.
pub async fn export(app: Arc<App>, query: Option<&str>) -> Response<Body> {
    let range = match ExportRange::parse(query) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let path = app.registrar.journal().path().to_path_buf();
    let now = app.now();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(16);
    let (first_tx, first_rx) = tokio::sync::oneshot::channel::<Result<(), String>>();
    tokio::task::spawn_blocking(move || {
        let mut first = Some(first_tx);
        let result = query::open_read_only(&path)
            .map_err(|e| e.to_string())
            .and_then(|conn| {
                let (from, to) = range
                    .resolve(&conn)
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| "no record has those dates".to_owned())?;
                let mut out = ChannelWriter {
                    tx: &tx,
                    buf: Vec::new(),
                    first: &mut first,
                };
                write_export(&conn, from, to, &now, &mut out)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            });
        if let Some(first) = first.take() {
            let _ = first.send(result);
        } else if let Err(e) = result {
            let _ = tx.blocking_send(Err(std::io::Error::other(e)));
        }
    });
    match first_rx.await {
        Ok(Ok(())) | Err(_) => {}
        Ok(Err(e)) => return error(StatusCode::NOT_FOUND, e),
    }
    let stream = tokio_stream_from(rx);
    let mut r = Response::new(StreamBody::new(stream).boxed());
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/x-ndjson"),
    );
    r
}

struct ChannelWriter<'a> {
    tx: &'a tokio::sync::mpsc::Sender<Result<Frame<Bytes>, std::io::Error>>,
    buf: Vec<u8>,
    first: &'a mut Option<tokio::sync::oneshot::Sender<Result<(), String>>>,
}

impl std::io::Write for ChannelWriter<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= 64 * 1024 {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if let Some(first) = self.first.take() {
            let _ = first.send(Ok(()));
        }
        if !self.buf.is_empty() {
            let chunk = Bytes::from(std::mem::take(&mut self.buf));
            self.tx
                .blocking_send(Ok(Frame::data(chunk)))
                .map_err(|_| std::io::Error::other("client went away"))?;
        }
        Ok(())
    }
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, std::io::Error>>,
) -> impl futures_core::Stream<Item = Result<Frame<Bytes>, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[cfg(test)]
mod tests {
    use super::ExportRange;
    use chrono::NaiveDate;

    fn date(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap_or_default()
    }

    #[test]
    fn export_ranges_by_record_or_by_date_and_never_both() {
        assert_eq!(ExportRange::parse(None), Ok(ExportRange::Seq(1, u64::MAX)));
        assert_eq!(
            ExportRange::parse(Some("from_seq=3&to_seq=9")),
            Ok(ExportRange::Seq(3, 9))
        );
        assert_eq!(
            ExportRange::parse(Some("from_date=2026-03-01&to_date=2026-03-31")),
            Ok(ExportRange::Dates(date("2026-03-01"), date("2026-03-31")))
        );
        assert_eq!(
            ExportRange::parse(Some("from_date=2026-03-01")),
            Ok(ExportRange::Dates(date("2026-03-01"), date("2026-03-01")))
        );
        for bad in [
            "from_date=2026-03-31&to_date=2026-03-01",
            "from_date=2026-02-30",
            "from_date=yesterday",
            "to_date=2026-03-01",
            "from_seq=1&from_date=2026-03-01",
            "from_seq=x",
        ] {
            assert!(ExportRange::parse(Some(bad)).is_err(), "{bad}");
        }
    }
}
