//! JSON responses and errors.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::{Response, StatusCode, header};
use serde_json::{Value, json};

/// The body type of every response.
pub type Body = BoxBody<Bytes, std::io::Error>;

/// A JSON response.
pub fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    with_body(status, "application/json", Bytes::from(bytes))
}

/// A response with a body of the given content type.
pub fn with_body(status: StatusCode, content_type: &str, bytes: Bytes) -> Response<Body> {
    let mut r = Response::new(Full::new(bytes).map_err(|never| match never {}).boxed());
    *r.status_mut() = status;
    if let Ok(v) = header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r
}

/// An error response `{"status":"error","code":…,"message":…}`.
pub fn error(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    json_response(
        status,
        &json!({"status": "error", "code": status.as_u16(), "message": message.into()}),
    )
}
