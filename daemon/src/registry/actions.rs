//! Registry changes made on the running daemon: each is journaled (`device_change`) before it
//! takes effect, so every change in force has its record.

use super::{DeactivationReason, Registry, change_body, check_register_production_number};
use crate::access::ClientKind;
use crate::app::App;
use crate::journal::record::RecordKind;
use crate::journal::{AppendError, Entry, query};
use serde_json::{Value, json};

/// Why a registry change was not made. Nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The request is not valid.
    #[error("{field}: {message}")]
    Invalid {
        /// Field at fault.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// No such active device.
    #[error("{0}")]
    Unknown(String),
    /// In conflict with the registry (already linked elsewhere).
    #[error("{0}")]
    Conflict(String),
    /// The change could not be journaled, so it was not made.
    #[error("not journaled, so not changed: {0}")]
    Journal(#[from] AppendError),
    /// Reading the journal or changing credentials failed.
    #[error("{0}")]
    Io(String),
}

fn invalid(field: &str, message: impl Into<String>) -> RegistryError {
    RegistryError::Invalid {
        field: field.to_owned(),
        message: message.into(),
    }
}

/// Reads the registry from the daemon's journal.
pub async fn load(app: &App) -> Result<Registry, RegistryError> {
    let path = app.registrar.journal().path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        let conn = query::open_read_only(&path).map_err(|e| RegistryError::Io(e.to_string()))?;
        Registry::load(&conn).map_err(|e| RegistryError::Io(e.to_string()))
    })
    .await
    .map_err(|e| RegistryError::Io(e.to_string()))?
}

fn active_register(app: &App, id: &str) -> Result<(), RegistryError> {
    if app
        .access
        .list()
        .iter()
        .any(|e| e.kind == ClientKind::Register && e.id == id && e.active)
    {
        Ok(())
    } else {
        Err(RegistryError::Unknown(format!(
            "register {id} is not enrolled or no longer active"
        )))
    }
}

async fn journal(app: &App, body: Value) -> Result<Value, RegistryError> {
    let appended = app
        .registrar
        .journal()
        .append(Entry::new(RecordKind::DeviceChange, change_body(body)))
        .await?;
    let mut out = Value::Object(appended.body);
    out["journal_seq"] = json!(appended.seq);
    out["fdm_time"] = json!(appended.time);
    Ok(out)
}

/// Links an enrolled register, under its production number, to this FDM.
pub async fn link(app: &App, id: &str, production_number: &str) -> Result<Value, RegistryError> {
    check_register_production_number(production_number)
        .map_err(|m| invalid("production_number", m))?;
    active_register(app, id)?;
    let registry = load(app).await?;
    if let Some(other) = registry.linked_register(production_number)
        && other.id != id
    {
        return Err(RegistryError::Conflict(format!(
            "production number {production_number} is already linked to register {}",
            other.id
        )));
    }
    journal(
        app,
        json!({
            "action": "link",
            "device": "register",
            "id": id,
            "production_number": production_number,
            "fdm_id": app.config.fdm.id,
        }),
    )
    .await
}

/// A deactivation or replacement reason, or the error naming the reasons there are.
fn parse_reason(reason: &str) -> Result<DeactivationReason, RegistryError> {
    DeactivationReason::parse(reason).ok_or_else(|| {
        invalid(
            "reason",
            format!("must be one of {}", DeactivationReason::ALL.join(", ")),
        )
    })
}

/// Deactivates a register with a reason: journaled, then its credentials stop working, so its
/// orders are refused.
pub async fn deactivate(
    app: &App,
    id: &str,
    reason: &str,
    note: Option<&str>,
) -> Result<Value, RegistryError> {
    let reason = parse_reason(reason)?;
    let note = note.map(str::trim).filter(|n| !n.is_empty());
    if reason == DeactivationReason::Other && note.is_none() {
        return Err(invalid(
            "note",
            "a note is required when the reason is other",
        ));
    }
    if note.is_some_and(|n| n.chars().count() > 200) {
        return Err(invalid("note", "at most 200 characters"));
    }
    active_register(app, id)?;
    let registry = load(app).await?;
    let production_number = registry
        .devices
        .get(&format!("register:{id}"))
        .and_then(|d| d.production_number.clone());
    let out = journal(
        app,
        json!({
            "action": "deactivate",
            "device": "register",
            "id": id,
            "reason": reason.as_str(),
            "note": note,
            "production_number": production_number,
        }),
    )
    .await?;
    app.access
        .revoke(ClientKind::Register, id, &app.now())
        .map_err(|e| RegistryError::Io(e.to_string()))?;
    Ok(out)
}

/// Records that the signing card is being replaced (the new card's own key is declared by a
/// `signer_change` record when it first signs).
pub async fn replace_card(
    app: &App,
    new_vsc_id: &str,
    reason: &str,
) -> Result<Value, RegistryError> {
    let reason = parse_reason(reason)?;
    let new = new_vsc_id.trim();
    if new.is_empty()
        || new.len() > 32
        || !new
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(invalid(
            "new_vsc_id",
            "1-32 characters of A-Z a-z 0-9 - _ (a VSC id looks like 0000000196-860)",
        ));
    }
    let old = app
        .signer
        .identity()
        .map(|i| i.id)
        .map_err(|e| RegistryError::Io(e.to_string()))?;
    if old == new {
        return Err(invalid("new_vsc_id", "this card is the one in use"));
    }
    journal(
        app,
        json!({
            "action": "replace_card",
            "device": "card",
            "old_vsc_id": old,
            "new_vsc_id": new,
            "reason": reason.as_str(),
        }),
    )
    .await
}
