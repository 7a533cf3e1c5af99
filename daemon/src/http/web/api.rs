//! The page's own JSON routes under `/ui/api/`:
//!
//! - `POST /ui/api/login` `{"secret": …}`: the admin token, the owner's password or the one-time
//!   set-up code; sets the session cookie and answers the CSRF token.
//! - `GET /ui/api/session`: the CSRF token of the live session (401 without one).
//! - `POST /ui/api/logout`, `POST /ui/api/password` `{"password": …}` and `POST /ui/api/qr`
//!   `{"text": …}` (an SVG QR code): session and CSRF token needed.
//! - `GET /ui/api/today` ([`super::today`]), `GET /ui/api/storage` ([`super::storage`]) and
//!   `GET /ui/api/export/check?…` ([`super::export_check`]): session needed; they change
//!   nothing.

use super::Web;
use super::owner::OwnerError;
use super::session::{self, SessionInfo};
use crate::app::App;
use crate::http::response::{Body, error, json_response, with_body};
use crate::http::routes::read_body;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode, header};
use serde::Deserialize;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;

/// The largest body a page route reads.
const MAX_BODY: usize = 2048;

pub(super) async fn route(
    app: &App,
    web: &Arc<Web>,
    req: Request<Incoming>,
    rest: &str,
    peer: SocketAddr,
) -> Response<Body> {
    match (req.method().clone(), rest) {
        (Method::POST, "login") => login(app, web, req, peer).await,
        (Method::GET, "session") => match web.session_of(req.headers()) {
            Some((_, s)) => session_json(&s),
            None => error(StatusCode::UNAUTHORIZED, "not signed in"),
        },
        (Method::GET, "today" | "storage" | "export/check") => {
            if web.session_of(req.headers()).is_none() {
                return error(StatusCode::UNAUTHORIZED, "not signed in");
            }
            let query = req.uri().query().map(str::to_owned);
            match rest {
                "today" => today(app).await,
                "storage" => storage(app).await,
                _ => export_check(app, query.as_deref()).await,
            }
        }
        (Method::POST, "logout" | "password" | "qr") => {
            let Some((id, s)) = web.session_of(req.headers()) else {
                return error(StatusCode::UNAUTHORIZED, "not signed in");
            };
            let id = id.to_owned();
            if !super::same_site(&req) || !session::csrf_ok(req.headers(), &s) {
                return error(StatusCode::FORBIDDEN, "CSRF token missing or wrong");
            }
            match rest {
                "logout" => logout(web, &id),
                "password" => password(web, req, &id).await,
                _ => qr(req).await,
            }
        }
        _ => error(StatusCode::NOT_FOUND, "no such page route"),
    }
}

fn session_json(s: &SessionInfo) -> Response<Body> {
    json_response(
        StatusCode::OK,
        &json!({"csrf": s.csrf, "must_set_password": s.must_set_password}),
    )
}

#[derive(Deserialize)]
struct Login {
    secret: String,
}

async fn login(
    app: &App,
    web: &Arc<Web>,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Body> {
    if !web.sessions.may_try(peer.ip()) {
        let mut r = error(
            StatusCode::TOO_MANY_REQUESTS,
            "too many failed sign-ins; wait a minute",
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("60"));
        return r;
    }
    let body = match read_body(req, MAX_BODY).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Ok(Login { secret }) = serde_json::from_slice::<Login>(&body) else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "body must be {\"secret\": \"…\"}",
        );
    };
    drop(body);
    let secret = secret.trim().to_owned();
    let must_set_password = if app.access.check_admin(&secret) {
        Some(false)
    } else if web.owner.take_setup_code(&secret) {
        Some(true)
    } else {
        // Argon2 takes tens of milliseconds: off the async threads.
        let web2 = web.clone();
        let ok = tokio::task::spawn_blocking(move || web2.owner.check_password(&secret))
            .await
            .unwrap_or(false);
        ok.then_some(false)
    };
    let Some(must_set_password) = must_set_password else {
        web.sessions.failed(peer.ip());
        tracing::info!("web: failed sign-in from {}", peer.ip());
        return error(
            StatusCode::UNAUTHORIZED,
            "wrong token, password or set-up code",
        );
    };
    match web.sessions.create(must_set_password) {
        Ok((id, csrf)) => {
            tracing::info!("web: sign-in from {}", peer.ip());
            let mut r = session_json(&SessionInfo {
                csrf,
                must_set_password,
            });
            if let Ok(v) = header::HeaderValue::from_str(&session::set_cookie(&id)) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

fn logout(web: &Web, id: &str) -> Response<Body> {
    web.sessions.remove(id);
    let mut r = json_response(StatusCode::OK, &json!({"status": "ok"}));
    if let Ok(v) = header::HeaderValue::from_str(&session::clear_cookie()) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

#[derive(Deserialize)]
struct NewPassword {
    password: String,
}

async fn password(web: &Arc<Web>, req: Request<Incoming>, id: &str) -> Response<Body> {
    let body = match read_body(req, MAX_BODY).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Ok(NewPassword { password }) = serde_json::from_slice::<NewPassword>(&body) else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "body must be {\"password\": \"…\"}",
        );
    };
    drop(body);
    let web2 = web.clone();
    let set = tokio::task::spawn_blocking(move || web2.owner.set_password(&password)).await;
    match set {
        Ok(Ok(())) => {
            web.sessions.password_set(id);
            tracing::info!("web: the owner password was set");
            json_response(StatusCode::OK, &json!({"status": "ok"}))
        }
        Ok(Err(e @ OwnerError::BadPassword)) => {
            error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
        }
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[derive(Deserialize)]
struct QrText {
    text: String,
}

async fn qr(req: Request<Incoming>) -> Response<Body> {
    let body = match read_body(req, MAX_BODY).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Ok(QrText { text }) = serde_json::from_slice::<QrText>(&body) else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "body must be {\"text\": \"…\"}",
        );
    };
    match qrcode::QrCode::new(text.as_bytes()) {
        Ok(code) => {
            let svg = code
                .render::<qrcode::render::svg::Color<'_>>()
                .min_dimensions(240, 240)
                .quiet_zone(true)
                .build();
            let mut r = with_body(StatusCode::OK, "image/svg+xml", Bytes::from(svg));
            r.headers_mut().insert(
                header::CACHE_CONTROL,
                header::HeaderValue::from_static("no-store"),
            );
            r
        }
        Err(e) => error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
    }
}

/// Runs `f` off the async threads; a panic there is a 500.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r)
}

async fn today(app: &App) -> Response<Body> {
    let path = app.registrar.journal().path().to_path_buf();
    let now = app.now();
    let date = now.get(..10).unwrap_or_default().to_owned();
    let read = blocking(move || {
        let conn = crate::journal::query::open_read_only(&path).map_err(|e| e.to_string())?;
        super::today::read(&conn, &date).map_err(|e| e.to_string())
    })
    .await;
    match read {
        Ok(t) => json_response(StatusCode::OK, &t.to_json()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn storage(app: &App) -> Response<Body> {
    let journal = app.registrar.journal();
    let path = journal.path().to_path_buf();
    let free = journal.stats().free_bytes();
    let max = (app.config.journal.max_size_mib > 0)
        .then(|| app.config.journal.max_size_mib.saturating_mul(1024 * 1024));
    let now = app.now();
    let read = blocking(move || {
        let conn = crate::journal::query::open_read_only(&path).map_err(|e| e.to_string())?;
        let bytes = super::storage::journal_bytes(&path);
        super::storage::forecast(&conn, bytes, &now, free, max).map_err(|e| e.to_string())
    })
    .await;
    match read {
        Ok(f) => json_response(StatusCode::OK, &f.to_json()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn export_check(app: &App, query: Option<&str>) -> Response<Body> {
    use super::export_check::{CheckError, check};
    let range = match crate::http::admin::ExportRange::parse(query) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let path = app.registrar.journal().path().to_path_buf();
    let now = app.now();
    let verdict = tokio::task::spawn_blocking(move || check(&path, range, &now)).await;
    match verdict {
        Ok(Ok(v)) => json_response(StatusCode::OK, &v.to_json()),
        Ok(Err(e @ CheckError::Empty)) => error(StatusCode::NOT_FOUND, e.to_string()),
        Ok(Err(e @ CheckError::TooMany(_))) => {
            error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
        }
        Ok(Err(e @ CheckError::Busy)) => error(StatusCode::TOO_MANY_REQUESTS, e.to_string()),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
