//! The installer's and owner's web page, served by fdmd itself under `/ui/` (docs/web.md).
//!
//! - [`owner`]: the owner's password (Argon2id) and the one-time set-up code.
//! - [`session`]: session cookies, CSRF tokens, the bound on sign-in attempts.
//! - [`assets`]: the page's HTML, CSS and JavaScript, embedded in the binary, with the
//!   Content-Security-Policy and the other security headers.
//! - [`api`]: the few JSON routes of the page itself (sign-in, sign-out, password, QR code,
//!   and the read-only figures below).
//! - [`today`]: today's turnover per hour and per VAT rate (the chart).
//! - [`storage`]: the journal's size and how long the storage lasts at this pace.
//! - [`export_check`]: an export made and verified by fdmd, for the verdict shown in the page.
//!
//! Everything else the page shows or changes goes through the documented `/v1/...` API: a
//! valid session cookie counts there as the admin token ([`authenticate`]), and every change
//! made with it must carry the session's CSRF token.

mod api;
mod assets;
pub mod export_check;
pub mod owner;
pub mod session;
pub mod storage;
pub mod today;

use super::response::{Body, error};
use crate::app::App;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use owner::{Owner, OwnerError};
use session::{SessionInfo, Sessions};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

/// The web page's state: the owner's credentials and the live sessions.
pub struct Web {
    /// The owner's password or set-up code.
    pub owner: Owner,
    /// Live sessions and sign-in attempts.
    pub sessions: Sessions,
}

/// Marks a request authenticated by a web session (a request extension set by
/// [`authenticate`]); the routes treat it as the admin token.
#[derive(Clone, Debug)]
pub struct SessionAdmin;

impl Web {
    /// Loads the owner's credentials from `data_dir`; prints a new set-up code in the log when
    /// no password is set yet.
    pub fn open(data_dir: &Path) -> Result<Arc<Web>, OwnerError> {
        let (owner, code) = Owner::open(data_dir)?;
        if let Some(code) = code {
            tracing::warn!(
                "web page: no owner password yet; one-time set-up code {code} (sign in at /ui/ with it, then set a password)"
            );
        }
        Ok(Arc::new(Web {
            owner,
            sessions: Sessions::default(),
        }))
    }

    /// The live session a request's cookie names, with its id.
    pub fn session_of<'a>(&self, headers: &'a hyper::HeaderMap) -> Option<(&'a str, SessionInfo)> {
        let id = session::cookie_value(headers)?;
        self.sessions.get(id).map(|s| (id, s))
    }
}

/// Whether `path` is served by the web page.
pub fn is_web_path(path: &str) -> bool {
    path == "/" || path == "/ui" || path.starts_with("/ui/")
}

/// Checks a `/v1/...` request that bears a session cookie and no bearer token: with a live
/// session, GET and HEAD pass; any other method needs the session's CSRF token in
/// `X-CSRF-Token` and must not come from another site. On success the request is marked
/// [`SessionAdmin`]. `Some` is the refusal to send instead of routing the request.
pub fn authenticate(web: &Web, req: &mut Request<Incoming>) -> Option<Response<Body>> {
    if req.headers().contains_key(hyper::header::AUTHORIZATION) {
        return None;
    }
    // No live session: nothing to refuse here; the route answers 401 if it needs a token.
    let (_, session) = web.session_of(req.headers())?;
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        if !same_site(req) || !session::csrf_ok(req.headers(), &session) {
            return Some(error(
                StatusCode::FORBIDDEN,
                "CSRF token missing or wrong: changes made with a web session need the X-CSRF-Token header of that session",
            ));
        }
        if session.must_set_password {
            return Some(error(StatusCode::FORBIDDEN, "set the owner password first"));
        }
    }
    req.extensions_mut().insert(SessionAdmin);
    None
}

/// Refuses requests the browser says come from another site (`Sec-Fetch-Site`), and requests
/// whose `Origin` is not this host.
fn same_site(req: &Request<Incoming>) -> bool {
    let headers = req.headers();
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        if site != "same-origin" {
            return false;
        }
    }
    if let Some(origin) = headers
        .get(hyper::header::ORIGIN)
        .and_then(|v| v.to_str().ok())
    {
        let host = headers
            .get(hyper::header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let bare = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .unwrap_or("");
        if bare != host {
            return false;
        }
    }
    true
}

/// Serves `/`, `/ui/` and below.
pub async fn route(
    app: Arc<App>,
    web: Arc<Web>,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let response = match path.strip_prefix("/ui/api/") {
        Some(rest) => {
            let rest = rest.to_owned();
            let mut r = api::route(&app, &web, req, &rest, peer).await;
            // Session answers (CSRF tokens, QR codes of credentials) are never cached.
            r.headers_mut().insert(
                hyper::header::CACHE_CONTROL,
                hyper::header::HeaderValue::from_static("no-store"),
            );
            r
        }
        None if *req.method() == Method::GET || *req.method() == Method::HEAD => {
            assets::serve(&path)
        }
        None => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "the page's files are read only",
        ),
    };
    assets::secure(response)
}
