//! Enrolling an establishment: its id, name, VAT number, the signer keys its records must be
//! signed with, and a new credential (returned once, stored hashed).

use crate::{Error, credential};
use tokio_postgres::GenericClient;

/// An establishment to enrol.
#[derive(Debug, Clone)]
pub struct Enrolment {
    /// Id used in URLs: lower-case letters, digits, `.`, `_`, `-`; up to 64 characters.
    pub id: String,
    /// Name.
    pub name: String,
    /// VAT number (`BE0123456789`).
    pub vat_number: String,
    /// Signer public keys (32 bytes each; ed25519), from outside the journal: the card, the
    /// box's `GET /v1/signer`, a printed Z report.
    pub keys: Vec<Vec<u8>>,
}

/// Checks an establishment id.
pub fn valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    id.len() <= 64
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
}

/// Reads a hex public key.
pub fn parse_key(text: &str) -> Result<Vec<u8>, Error> {
    hex::decode(text.trim())
        .ok()
        .filter(|k| k.len() == 32)
        .ok_or_else(|| Error::invalid("key", format!("{text:?} is not 64 hex characters")))
}

/// Enrols an establishment; returns its credential (shown once).
pub async fn enrol(client: &mut tokio_postgres::Client, e: &Enrolment) -> Result<String, Error> {
    if !valid_id(&e.id) {
        return Err(Error::invalid(
            "id",
            "lower-case letters, digits, '.', '_' and '-', starting with a letter or digit, at most 64",
        ));
    }
    if e.name.trim().is_empty() || e.vat_number.trim().is_empty() {
        return Err(Error::invalid("name, vat_number", "both are required"));
    }
    if e.keys.is_empty() {
        return Err(Error::invalid(
            "key",
            "at least one signer key is required (the box's GET /v1/signer shows it)",
        ));
    }
    let secret = credential::generate()?;
    let tx = client.transaction().await?;
    let inserted = tx
        .execute(
            "INSERT INTO establishments (id, name, vat_number, credential_sha256)
             VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING",
            &[
                &e.id,
                &e.name.trim(),
                &e.vat_number.trim(),
                &credential::hash(&secret).as_slice(),
            ],
        )
        .await?;
    if inserted == 0 {
        return Err(Error::AlreadyEnrolled(e.id.clone()));
    }
    for key in &e.keys {
        add_key(&tx, &e.id, key).await?;
    }
    tx.commit().await?;
    Ok(secret)
}

/// Adds a signer key to an enrolled establishment (a replaced card).
pub async fn add_key(client: &impl GenericClient, id: &str, key: &[u8]) -> Result<(), Error> {
    client
        .execute(
            "INSERT INTO enrolled_keys (establishment_id, public_key)
             SELECT id, $2 FROM establishments WHERE id = $1 ON CONFLICT DO NOTHING",
            &[&id, &key],
        )
        .await?;
    let exists = client
        .query_opt("SELECT 1 FROM establishments WHERE id = $1", &[&id])
        .await?
        .is_some();
    if !exists {
        return Err(Error::UnknownEstablishment(id.to_owned()));
    }
    Ok(())
}

/// Clears an establishment's flag after an administrator looked at the refused segments (they
/// stay kept as evidence). Returns whether it was flagged.
pub async fn unflag(client: &impl GenericClient, id: &str) -> Result<bool, Error> {
    let row = client
        .query_opt(
            "UPDATE establishments e SET flagged = false, flag_code = NULL, flag_problem = NULL,
                    flagged_at = NULL
               FROM establishments old
              WHERE e.id = $1 AND old.id = e.id
          RETURNING old.flagged",
            &[&id],
        )
        .await?;
    match row {
        Some(row) => Ok(row.get(0)),
        None => Err(Error::UnknownEstablishment(id.to_owned())),
    }
}

/// The stored credential hash of an establishment, if it is enrolled.
pub async fn credential_hash(
    client: &impl GenericClient,
    id: &str,
) -> Result<Option<Vec<u8>>, Error> {
    Ok(client
        .query_opt(
            "SELECT credential_sha256 FROM establishments WHERE id = $1",
            &[&id],
        )
        .await?
        .map(|row| row.get(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(valid_id("bxl-01"));
        assert!(valid_id("a.b_c"));
        assert!(!valid_id(""));
        assert!(!valid_id("-a"));
        assert!(!valid_id("A"));
        assert!(!valid_id("a/b"));
        assert!(!valid_id(&"a".repeat(65)));
    }
}
