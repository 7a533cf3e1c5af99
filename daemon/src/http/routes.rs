//! Request routing and the public routes.

use super::admin;
use super::response::{Body, error, json_response, with_body};
use super::web::{SessionAdmin, Web};
use crate::access::ClientKind;
use crate::app::App;
use crate::fiscal::FdmCode;
use crate::service::Receipt;
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode, header};
use serde_json::json;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Every route the server answers, as (method, path template); `docs/openapi.json` documents
/// exactly these (checked by the tests).
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/v1/registers/{register}/orders"),
    ("GET", "/v1/receipts/{register}/{request_id}"),
    ("GET", "/v1/status"),
    ("GET", "/v1/signer"),
    ("GET", "/v1/journal/export"),
    ("GET", "/metrics"),
    ("GET", "/v1/tables"),
    ("GET", "/v1/registers/{register}/tables"),
    ("GET", "/v1/staff/presence"),
    ("GET", "/v1/catering/{event}"),
    ("GET", "/v1/deposits"),
    ("GET", "/v1/admin/registers"),
    ("POST", "/v1/admin/registers"),
    ("DELETE", "/v1/admin/registers/{id}"),
    ("GET", "/v1/admin/stations"),
    ("POST", "/v1/admin/stations"),
    ("DELETE", "/v1/admin/stations/{id}"),
    ("POST", "/v1/admin/signer/pin"),
    ("POST", "/v1/registers/{register}/reports"),
    ("POST", "/v1/admin/reports"),
    ("GET", "/v1/admin/reports/threshold"),
    ("GET", "/v1/admin/devices"),
    ("GET", "/v1/admin/devices/{kind}/{id}/history"),
    ("POST", "/v1/admin/devices/registers/{id}/link"),
    ("POST", "/v1/admin/devices/registers/{id}/deactivate"),
    ("POST", "/v1/admin/devices/card/replace"),
    ("POST", "/ui/api/login"),
    ("GET", "/ui/api/session"),
    ("POST", "/ui/api/logout"),
    ("POST", "/ui/api/password"),
    ("POST", "/ui/api/qr"),
    ("GET", "/ui/api/today"),
    ("GET", "/ui/api/storage"),
    ("GET", "/ui/api/export/check"),
];

/// Handles one request within the configured time limit.
pub async fn handle(
    app: Arc<App>,
    web: Arc<Web>,
    mut req: Request<Incoming>,
    peer: SocketAddr,
) -> Result<Response<Body>, Infallible> {
    let limit = Duration::from_millis(app.config.http.request_timeout_ms);
    if super::web::is_web_path(req.uri().path()) {
        return Ok(
            match tokio::time::timeout(limit, super::web::route(app, web, req, peer)).await {
                Ok(r) => r,
                Err(_) => error(StatusCode::SERVICE_UNAVAILABLE, "request took too long"),
            },
        );
    }
    if let Some(refused) = super::web::authenticate(&web, &mut req) {
        return Ok(refused);
    }
    Ok(match tokio::time::timeout(limit, route(app, req)).await {
        Ok(r) => r,
        Err(_) => error(StatusCode::SERVICE_UNAVAILABLE, "request took too long"),
    })
}

async fn route(app: Arc<App>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (req.method(), segments.as_slice()) {
        (&Method::POST, ["v1", "registers", register, "orders"]) => {
            let register = (*register).to_owned();
            post_order(app, req, &register).await
        }
        (&Method::GET, ["v1", "status"]) => status(&app, &req),
        (&Method::GET, ["v1", "registers", register, "tables"]) => {
            let ok = bearer(&req).is_some_and(|t| {
                app.access.check_http(ClientKind::Register, register, t)
                    || app.access.check_admin(t)
            }) || is_admin(&app, &req);
            if !ok {
                return unauthorized();
            }
            if !app.restaurant.is_ready() {
                return super::restaurant::loading();
            }
            json_response(StatusCode::OK, &app.restaurant.open_tables().to_json())
        }
        (&Method::GET, ["v1", "tables" | "staff" | "catering" | "deposits", ..]) => {
            if !is_admin(&app, &req) {
                return unauthorized();
            }
            super::restaurant::route(&app, &segments[1..], req.uri().query()).await
        }
        (&Method::GET, ["v1", "signer"]) => signer(&app),
        (&Method::GET, ["v1", "receipts", register, request_id]) => {
            get_receipt(&app, &req, register, request_id).await
        }
        (&Method::GET, ["v1", "journal", "export"]) => {
            if !is_admin(&app, &req) {
                return unauthorized();
            }
            admin::export(app.clone(), req.uri().query()).await
        }
        (&Method::GET, ["metrics"]) => with_body(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            Bytes::from(app.status.metrics()),
        ),
        (&Method::POST, ["v1", "registers", register, "reports"]) => {
            let register = (*register).to_owned();
            let allowed = bearer(&req).is_some_and(|t| {
                app.access.check_http(ClientKind::Register, &register, t)
                    || app.access.check_admin(t)
            }) || is_admin(&app, &req);
            if !allowed {
                return unauthorized();
            }
            super::reports_api::post_report(app.clone(), req, Some(&register)).await
        }
        (_, ["v1", "admin", "reports" | "devices", ..]) => {
            if !is_admin(&app, &req) {
                return unauthorized();
            }
            super::reports_api::admin_route(app.clone(), req, &segments[2..]).await
        }
        (_, ["v1", "admin", ..]) => {
            if !is_admin(&app, &req) {
                return unauthorized();
            }
            admin::route(app.clone(), req, &segments[2..]).await
        }
        (
            _,
            ["v1", "registers", _, "orders"] | ["v1", "status"] | ["v1", "signer"] | ["metrics"],
        ) => error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{} is not allowed on {path}", req.method()),
        ),
        _ => error(StatusCode::NOT_FOUND, format!("no route {path}")),
    }
}

/// `GET /v1/status`: the whole document for the admin token or any enrolled register's token
/// (open tables, who is clocked in, the signer, the journal, plugins…); for anyone else on the
/// LAN only whether fdmd is ready, its version and each problem's code and short message (no
/// path, reader name, register or reason behind it). `docs/openapi.json`, `docs/status.md`.
fn status(app: &App, req: &Request<Incoming>) -> Response<Body> {
    if is_admin(app, req) {
        return json_response(StatusCode::OK, &app.admin_status_document());
    }
    let trusted = bearer(req).is_some_and(|t| app.access.check_any_http(ClientKind::Register, t));
    if trusted {
        return json_response(StatusCode::OK, &app.status_document());
    }
    let problems = app.status.problems();
    json_response(
        StatusCode::OK,
        &json!({
            "status": crate::status::overall(&problems),
            "version": app.status.version(),
            "problems": problems.iter().map(crate::status::Problem::public_json).collect::<Vec<_>>(),
        }),
    )
}

/// The bearer token of a request, if any.
pub fn bearer(req: &Request<Incoming>) -> Option<&str> {
    req.headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// The admin token, or a web session ([`SessionAdmin`], CSRF already checked for changes).
fn is_admin(app: &App, req: &Request<Incoming>) -> bool {
    req.extensions().get::<SessionAdmin>().is_some()
        || bearer(req).is_some_and(|t| app.access.check_admin(t))
}

fn unauthorized() -> Response<Body> {
    let mut r = error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    r
}

/// The body length a request declares (`Content-Length`), when it declares a readable one.
pub(crate) fn declared_length(req: &Request<Incoming>) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Reads a body of at most `max` bytes: 413 past that.
pub async fn read_body(req: Request<Incoming>, max: usize) -> Result<Bytes, Response<Body>> {
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body is larger than {max} bytes"),
        )
    };
    // A declared length over the limit is refused before a byte of the body is read.
    if declared_length(&req).is_some_and(|length| length > max as u64) {
        return Err(too_large());
    }
    match Limited::new(req.into_body(), max).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(too_large())
        }
        Err(e) => Err(error(
            StatusCode::BAD_REQUEST,
            format!("cannot read the body: {e}"),
        )),
    }
}

async fn post_order(app: Arc<App>, req: Request<Incoming>, register: &str) -> Response<Body> {
    // Only the register's own token signs its orders: every order is then attributable to the
    // register that sent it, and a leaked admin token cannot sign in anybody's name.
    match bearer(&req) {
        Some(token) if app.access.check_http(ClientKind::Register, register, token) => {}
        Some(token) if app.access.check_admin(token) => {
            return error(
                StatusCode::FORBIDDEN,
                "orders are posted with the register's own token; the admin token does not sign orders",
            );
        }
        _ => return unauthorized(),
    }
    let body = match read_body(req, app.config.http.max_body_bytes).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let receipt = app.handle_order(register, &body).await;
    json_response(status_for(&receipt), &receipt.to_json())
}

/// The HTTP status that fits a receipt.
pub fn status_for(receipt: &Receipt) -> StatusCode {
    match receipt.code() {
        FdmCode::Ok | FdmCode::StorageNearlyFull => StatusCode::CREATED,
        FdmCode::AlreadyHandled => StatusCode::OK,
        FdmCode::InvalidData => match receipt {
            // A request id used before for other content (the journal's conflict, which lists
            // no validation problems); a missing or malformed one is invalid data like any other.
            Receipt::Error {
                field: Some(f),
                problems,
                ..
            } if f == "request_id" && problems.is_empty() => StatusCode::CONFLICT,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        },
        FdmCode::StorageFull => StatusCode::INSUFFICIENT_STORAGE,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    }
}

fn signer(app: &App) -> Response<Body> {
    match app.signer.identity() {
        Ok(id) => json_response(
            StatusCode::OK,
            &json!({
                "vsc_id": id.id,
                "algorithm": id.algorithm,
                "public_key": hex::encode(&id.public_key),
                "certified": id.certified,
                "state": app.signer.state(),
                "signs": "SHA-256 digest of the canonical record (signed_digest in receipts); see docs/journal-format.md",
            }),
        ),
        Err(e) => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "error", "code": e.code().number(), "message": e.to_string(), "state": app.signer.state()}),
        ),
    }
}

async fn get_receipt(
    app: &App,
    req: &Request<Incoming>,
    register: &str,
    request_id: &str,
) -> Response<Body> {
    let allowed = bearer(req).is_some_and(|t| {
        app.access.check_http(ClientKind::Register, register, t) || app.access.check_admin(t)
    }) || is_admin(app, req);
    if !allowed {
        return unauthorized();
    }
    let journal = app.registrar.journal().clone();
    let (reg, id) = (register.to_owned(), request_id.to_owned());
    let found = tokio::task::spawn_blocking(move || journal.find_request(&reg, &id)).await;
    match found {
        Ok(Ok(Some(appended))) => {
            let mut receipt = app.registrar.receipt_json(&appended);
            receipt["code"] = json!(0);
            receipt["text"] = json!(app.ticket_text(&receipt));
            if let Some(m) = receipt.as_object_mut() {
                m.remove("message");
            }
            json_response(StatusCode::OK, &receipt)
        }
        Ok(Ok(None)) => error(
            StatusCode::NOT_FOUND,
            format!("no receipt for request {request_id} of register {register}"),
        ),
        Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
