//! Reports and the device registry over HTTP.
//!
//! - `POST /v1/admin/reports` (admin), `POST /v1/registers/{register}/reports` (the register's
//!   own token): an X or Z report; `?format=text` answers the printable text.
//! - `GET /v1/admin/reports/threshold?year=YYYY`: the yearly threshold report.
//! - `GET /v1/admin/devices`, `GET /v1/admin/devices/{kind}/{id}/history`,
//!   `POST /v1/admin/devices/registers/{id}/link`, `…/deactivate`,
//!   `POST /v1/admin/devices/card/replace`.

use super::response::{Body, error, json_response, with_body};
use super::routes::read_body;
use crate::app::App;
use crate::fiscal::FdmCode;
use crate::registry::actions::{self, RegistryError};
use crate::reports::{ReportError, ReportRequest, text, threshold};
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use std::sync::Arc;

fn wants_text(query: Option<&str>) -> bool {
    query.unwrap_or("").split('&').any(|p| p == "format=text")
}

/// The HTTP status of a report error.
pub fn report_status(e: &ReportError) -> StatusCode {
    match e {
        ReportError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        ReportError::OpenTables(_) | ReportError::ClockedIn(_) => StatusCode::CONFLICT,
        ReportError::Journal(j) if j.code() == FdmCode::StorageFull => {
            StatusCode::INSUFFICIENT_STORAGE
        }
        ReportError::Journal(j) if j.code() == FdmCode::InvalidData => StatusCode::CONFLICT,
        ReportError::Fdm { code, .. } if *code == FdmCode::InvalidData => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        ReportError::Read(_) | ReportError::Journal(_) | ReportError::Fdm { .. } => {
            StatusCode::SERVICE_UNAVAILABLE
        }
    }
}

/// Makes a report for `from_register` (a register's own route) or the admin.
pub async fn post_report(
    app: Arc<App>,
    req: Request<Incoming>,
    from_register: Option<&str>,
) -> Response<Body> {
    let text_wanted = wants_text(req.uri().query());
    let body = match read_body(req, 4096).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let result = match ReportRequest::from_json(&body, from_register) {
        Ok(request) => app.reports.make(&request).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(report) if text_wanted => with_body(
            StatusCode::CREATED,
            "text/plain; charset=utf-8",
            Bytes::from(text::render(&report)),
        ),
        Ok(report) => {
            let status = if report.get("code").and_then(Value::as_u64) == Some(102) {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            json_response(status, &report)
        }
        Err(e) => json_response(report_status(&e), &e.to_json()),
    }
}

fn query_value<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query
        .unwrap_or("")
        .split('&')
        .find_map(|p| p.strip_prefix(name).and_then(|r| r.strip_prefix('=')))
}

async fn threshold_report(app: &App, query: Option<&str>) -> Response<Body> {
    let Some(year) = query_value(query, "year").and_then(|y| y.parse::<i32>().ok()) else {
        return error(StatusCode::BAD_REQUEST, "year=YYYY is required");
    };
    if !(2000..=9999).contains(&year) {
        return error(StatusCode::BAD_REQUEST, "year must be 2000-9999");
    }
    let path = app.registrar.journal().path().to_path_buf();
    let result = tokio::task::spawn_blocking(move || {
        let conn = crate::journal::query::open_read_only(&path)
            .map_err(|e| ReportError::Read(e.to_string()))?;
        threshold::year_sums(&conn, year).map(|s| s.report(year))
    })
    .await;
    match result {
        Ok(Ok(report)) => json_response(StatusCode::OK, &report),
        Ok(Err(e)) => json_response(report_status(&e), &e.to_json()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

fn registry_error(e: RegistryError) -> Response<Body> {
    let status = match &e {
        RegistryError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        RegistryError::Unknown(_) => StatusCode::NOT_FOUND,
        RegistryError::Conflict(_) => StatusCode::CONFLICT,
        RegistryError::Journal(j) if j.code() == FdmCode::StorageFull => {
            StatusCode::INSUFFICIENT_STORAGE
        }
        RegistryError::Journal(_) | RegistryError::Io(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    let mut v = json!({"status": "error", "code": status.as_u16(), "message": e.to_string()});
    if let RegistryError::Invalid { field, .. } = &e {
        v["field"] = json!(field);
    }
    json_response(status, &v)
}

async fn json_body(req: Request<Incoming>) -> Result<Value, Response<Body>> {
    let bytes = read_body(req, 4096).await?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "body must be a JSON object",
        )),
    }
}

fn field<'a>(v: &'a Value, name: &str) -> Option<&'a str> {
    v.get(name).and_then(Value::as_str)
}

/// `/v1/admin/reports/…` and `/v1/admin/devices/…` (admin token already checked).
pub async fn admin_route(app: Arc<App>, req: Request<Incoming>, rest: &[&str]) -> Response<Body> {
    let query = req.uri().query().map(str::to_owned);
    match (req.method().clone(), rest) {
        (Method::POST, ["reports"]) => post_report(app, req, None).await,
        (Method::GET, ["reports", "threshold"]) => threshold_report(&app, query.as_deref()).await,
        (Method::GET, ["devices"]) => match actions::load(&app).await {
            Ok(r) => json_response(StatusCode::OK, &r.summary()),
            Err(e) => registry_error(e),
        },
        (Method::GET, ["devices", kind, id, "history"]) => match actions::load(&app).await {
            Ok(r) => match r.history(kind, id) {
                Some(h) => json_response(StatusCode::OK, &json!(h)),
                None => error(
                    StatusCode::NOT_FOUND,
                    format!("no records about {kind} {id}"),
                ),
            },
            Err(e) => registry_error(e),
        },
        (Method::POST, ["devices", "registers", id, action]) => {
            let id = (*id).to_owned();
            let action = (*action).to_owned();
            let body = match json_body(req).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            let result = match action.as_str() {
                "link" => {
                    actions::link(&app, &id, field(&body, "production_number").unwrap_or("")).await
                }
                "deactivate" => {
                    actions::deactivate(
                        &app,
                        &id,
                        field(&body, "reason").unwrap_or(""),
                        field(&body, "note"),
                    )
                    .await
                }
                _ => return error(StatusCode::NOT_FOUND, "no such device action"),
            };
            match result {
                Ok(v) => json_response(StatusCode::CREATED, &v),
                Err(e) => registry_error(e),
            }
        }
        (Method::POST, ["devices", "card", "replace"]) => {
            let body = match json_body(req).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            match actions::replace_card(
                &app,
                field(&body, "new_vsc_id").unwrap_or(""),
                field(&body, "reason").unwrap_or(""),
            )
            .await
            {
                Ok(v) => json_response(StatusCode::CREATED, &v),
                Err(e) => registry_error(e),
            }
        }
        _ => error(StatusCode::NOT_FOUND, "no such admin route"),
    }
}
