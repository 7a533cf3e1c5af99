//! The page's files, embedded in the binary (nothing is loaded from outside the box), and the
//! security headers every `/ui/` answer carries.

use crate::http::response::{Body, with_body};
use bytes::Bytes;
use hyper::{Response, StatusCode, header};

/// The Content-Security-Policy of every `/ui/` answer: only the box's own scripts, styles and
/// connections, images from the box or `data:` (the QR code), no frames, no plugins.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const FILES: &[(&str, &str, &[u8])] = &[
    (
        "/ui/",
        "text/html; charset=utf-8",
        include_bytes!("assets/index.html"),
    ),
    (
        "/ui/app.css",
        "text/css; charset=utf-8",
        include_bytes!("assets/app.css"),
    ),
    (
        "/ui/app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/app.js"),
    ),
    (
        "/ui/i18n.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/i18n.js"),
    ),
];

/// Serves an embedded file; `/` and `/ui` redirect to `/ui/`.
pub fn serve(path: &str) -> Response<Body> {
    if path == "/" || path == "/ui" {
        let mut r = with_body(
            StatusCode::SEE_OTHER,
            "text/plain",
            Bytes::from_static(b"/ui/"),
        );
        r.headers_mut()
            .insert(header::LOCATION, header::HeaderValue::from_static("/ui/"));
        return r;
    }
    match FILES.iter().find(|(p, _, _)| *p == path) {
        Some((_, content_type, bytes)) => {
            with_body(StatusCode::OK, content_type, Bytes::from_static(bytes))
        }
        None => with_body(
            StatusCode::NOT_FOUND,
            "text/plain",
            Bytes::from_static(b"not found"),
        ),
    }
}

/// Adds the security headers.
pub fn secure(mut r: Response<Body>) -> Response<Body> {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::X_FRAME_OPTIONS,
        header::HeaderValue::from_static("DENY"),
    );
    h.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("no-referrer"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(header::HeaderValue::from_static("no-cache"));
    r
}

#[cfg(test)]
mod tests {
    use crate::status::ProblemCode;

    /// The strings of one language in `i18n.js` (from `  en: {` to the closing `  }`).
    fn language(js: &str, lang: &str) -> String {
        let start = js
            .find(&format!("\n  {lang}: {{\n"))
            .unwrap_or_else(|| panic!("no {lang} in i18n.js"));
        let len = js[start + 1..].find("\n  }").unwrap_or(0);
        js[start..start + 1 + len].to_owned()
    }

    #[test]
    fn every_problem_has_what_to_do_in_every_language() {
        let js = String::from_utf8_lossy(include_bytes!("assets/i18n.js"));
        for lang in ["en", "fr", "nl", "de"] {
            let strings = language(&js, lang);
            for code in ProblemCode::ALL {
                let key = format!("todo_{}: \"", code.as_str());
                assert!(
                    strings.contains(&key),
                    "i18n.js: {lang} has no hint for {}",
                    code.as_str()
                );
            }
        }
    }
}
