//! Restaurant routes (the admin token; `GET /v1/registers/{id}/tables` also that register's token): open tables and checks,
//! the daily presence list, a catering event (its end, status and every ticket with its text for
//! reprinting), deposits not yet deducted.

use super::response::{Body, error, json_response};
use crate::app::App;
use hyper::{Response, StatusCode};
use serde_json::{Value, json};

fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn is_date(text: &str) -> bool {
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").is_ok()
}

/// `segments` start after `v1`.
pub async fn route(app: &App, segments: &[&str], query: Option<&str>) -> Response<Body> {
    if !app.restaurant.is_ready() {
        return loading();
    }
    match segments {
        ["tables"] => json_response(StatusCode::OK, &app.restaurant.open_tables().to_json()),
        ["staff", "presence"] => {
            let today = chrono::Local::now().format("%Y-%m-%d").to_string();
            let date = query_param(query, "date").unwrap_or(&today);
            if !is_date(date) {
                return error(StatusCode::BAD_REQUEST, "date must be YYYY-MM-DD");
            }
            let presence = app.restaurant.presence();
            let shifts = match app.restaurant.shifts_on(date) {
                Ok(s) => s,
                Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e),
            };
            json_response(
                StatusCode::OK,
                &json!({
                    "date": date,
                    "shifts": shifts.iter().map(|s| s.to_json()).collect::<Vec<_>>(),
                    "clocked_in": presence.clocked_in().iter().map(|d| json!({"operator": d.operator, "since": d.since, "register": d.register})).collect::<Vec<_>>(),
                }),
            )
        }
        ["catering", event] => {
            let Some(mut doc) = app.restaurant.catering_event(event) else {
                return error(
                    StatusCode::NOT_FOUND,
                    format!("no ticket registered for catering event {event}"),
                );
            };
            // Every ticket reprinted for the client: its stored receipt's text.
            if let Some(Value::Array(tickets)) = doc.get_mut("tickets") {
                for t in tickets.iter_mut() {
                    let (Some(register), Some(id)) = (
                        t.get("register").and_then(Value::as_str),
                        t.get("request_id").and_then(Value::as_str),
                    ) else {
                        continue;
                    };
                    if let Some(stored) = app.registrar.stored(register, id).await {
                        let receipt = app.registrar.receipt_json(&stored);
                        t["text"] = json!(app.ticket_text(&receipt));
                    }
                }
            }
            json_response(StatusCode::OK, &doc)
        }
        ["deposits"] => json_response(StatusCode::OK, &json!(app.restaurant.open_deposits())),
        _ => error(
            StatusCode::NOT_FOUND,
            format!("no route /v1/{}", segments.join("/")),
        ),
    }
}

/// 503 while the restaurant state is still read from the journal (the first start after an
/// upgrade): an empty list then would be a wrong answer, not an early one.
pub fn loading() -> Response<Body> {
    let mut response = error(StatusCode::SERVICE_UNAVAILABLE, crate::app::STATE_LOADING);
    response.headers_mut().insert(
        hyper::header::RETRY_AFTER,
        hyper::header::HeaderValue::from_static("2"),
    );
    response
}
