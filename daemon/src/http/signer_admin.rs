//! Admin route of the signer: `POST /v1/admin/signer/pin` gives the card its PIN. The PIN is
//! never logged; the body is bounded and dropped (and the PIN wiped) once the card has answered.

use super::response::{Body, error, json_response};
use super::routes::read_body;
use crate::app::App;
use crate::signer::{Pin, SignerError};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use std::sync::Arc;

/// `/v1/admin/signer/…`
pub async fn route(app: Arc<App>, req: Request<Incoming>, rest: &[&str]) -> Response<Body> {
    match (req.method(), rest) {
        (&Method::POST, ["signer", "pin"]) => pin(app, req).await,
        _ => error(StatusCode::NOT_FOUND, "no such admin route"),
    }
}

async fn pin(app: Arc<App>, req: Request<Incoming>) -> Response<Body> {
    let body = match read_body(req, 256).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let pin = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("pin").and_then(Value::as_str).map(Pin::parse));
    drop(body);
    let pin = match pin {
        Some(Ok(pin)) => pin,
        Some(Err(e)) => return error(StatusCode::UNPROCESSABLE_ENTITY, e),
        None => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "body must be {\"pin\": \"12345\"}",
            );
        }
    };
    // With an FDM v1 box as signer the PIN is its card's: sent to the box as a `P` request.
    if let Some(fdm) = app.registrar.fdm_v1() {
        return match fdm.submit_pin(pin).await {
            Ok(code) if !code.is_error() => json_response(
                StatusCode::OK,
                &json!({"status": "ok", "code": code.number(), "message": "the FDM v1 box accepted the PIN"}),
            ),
            Ok(code) => json_response(
                if code == crate::fiscal::FdmCode::InvalidPin {
                    StatusCode::FORBIDDEN
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                },
                &json!({"status": "error", "code": code.number(), "message": format!("the FDM v1 box answered {:03}", code.number())}),
            ),
            Err(r) => json_response(
                if r.code == crate::fiscal::FdmCode::InvalidData {
                    StatusCode::UNPROCESSABLE_ENTITY
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                },
                &json!({"status": "error", "code": r.code.number(), "message": r.message}),
            ),
        };
    }
    // The card answers slowly and the call holds it: off the async threads.
    let signer = app.signer.clone();
    let answer = tokio::task::spawn_blocking(move || signer.submit_pin(&pin)).await;
    let state = app.signer.state();
    match answer {
        Ok(Ok(state)) => json_response(
            StatusCode::OK,
            &json!({"status": "ok", "code": 1, "message": "PIN accepted", "state": state}),
        ),
        Ok(Err(e)) => {
            let status = match e {
                SignerError::BadPinFormat(_) => StatusCode::UNPROCESSABLE_ENTITY,
                SignerError::WrongPin { .. } | SignerError::Blocked => StatusCode::FORBIDDEN,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            let tries_left = match e {
                SignerError::WrongPin { tries_left } => tries_left,
                SignerError::Blocked => Some(0),
                _ => None,
            };
            json_response(
                status,
                &json!({"status": "error", "code": e.code().number(), "message": e.to_string(),
                        "tries_left": tries_left, "state": state}),
            )
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}
