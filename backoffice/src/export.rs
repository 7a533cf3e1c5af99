//! Exports from the back office: the stored records of an establishment whose FDM date lies in
//! a period, in the export format of `docs/journal-format.md` §9, which `fdmctl verify` checks
//! (a slice: give the establishment's key with `--key`, or anchor it).

use crate::Error;
use crate::ingest::load_records;
use crate::reports::Period;
use crate::segment;
use fdmd_core::journal::export::{EXPORT_FORMAT, EXPORT_VERSION, ExportHeader};
use fdmd_core::journal::verify::DeclaredSigner;
use tokio_postgres::GenericClient;

/// Most records one export holds (the export is built in memory).
pub const MAX_EXPORT_RECORDS: u64 = 200_000;

/// The export of `establishment`'s records dated in `period`, or `None` when there is none.
pub async fn export(
    client: &impl GenericClient,
    establishment: &str,
    period: Period,
) -> Result<Option<Vec<u8>>, Error> {
    let Some(row) = client
        .query_opt(
            "SELECT fdm_id FROM establishments WHERE id = $1",
            &[&establishment],
        )
        .await?
    else {
        return Err(Error::UnknownEstablishment(establishment.to_owned()));
    };
    let fdm_id: Option<String> = row.get(0);
    // Records are in time order, so the dated ones are a contiguous range.
    let range = client
        .query_one(
            "SELECT min(seq), max(seq) FROM records
              WHERE establishment_id = $1 AND fdm_date BETWEEN $2 AND $3",
            &[&establishment, &period.from, &period.to],
        )
        .await?;
    let (Some(from), Some(to)) = (
        range.get::<_, Option<i64>>(0),
        range.get::<_, Option<i64>>(1),
    ) else {
        return Ok(None);
    };
    let (from, to) = (from as u64, to as u64);
    if to - from + 1 > MAX_EXPORT_RECORDS {
        return Err(Error::invalid(
            "period",
            format!(
                "{} records: an export holds at most {MAX_EXPORT_RECORDS}; ask for a shorter period",
                to - from + 1
            ),
        ));
    }
    let records = load_records(client, establishment, from, to).await?;
    let signers = client
        .query(
            "SELECT signer_id, algorithm, public_key FROM chain_signers
              WHERE establishment_id = $1 AND declared_seq <= $2 ORDER BY declared_seq",
            &[&establishment, &(to as i64)],
        )
        .await?
        .iter()
        .map(|r| DeclaredSigner {
            id: r.get(0),
            algorithm: r.get(1),
            public_key: r.get(2),
        })
        .collect();
    let header = ExportHeader {
        line_type: "header".into(),
        format: EXPORT_FORMAT.into(),
        version: EXPORT_VERSION,
        fdm_id: fdm_id.unwrap_or_default(),
        first_seq: from,
        last_seq: to,
        exported_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        signers,
    };
    let mut out = Vec::new();
    segment::write(&header, &records, &mut out)?;
    Ok(Some(out))
}
