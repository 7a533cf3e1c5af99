//! Storing a segment: one transaction per segment. The establishment's row is locked first, so
//! segments of one establishment are taken one at a time; the verdict ([`crate::chain`]) is made
//! against what is stored; then either the new records, their turnover, counters and signers
//! and the new head are written, or the refused segment is kept as evidence and the
//! establishment flagged. Stored records are never changed (a trigger refuses it too).

use crate::Error;
use crate::chain::{self, Accepted, Head, Refusal, RefusalCode};
use crate::envelope::Content;
use crate::segment::{self, SegmentRecord};
use bytes::Bytes;
use chrono::NaiveDate;
use deadpool_postgres::Pool;
use fdmd_core::journal::verify::DeclaredSigner;
use std::collections::{BTreeMap, HashMap};
use tokio_postgres::Transaction;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;

/// What became of a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Stored (or stored already).
    Accepted {
        /// Records stored now.
        stored: u64,
        /// Records of the segment that were stored already.
        already_stored: u64,
        /// The stored head after it.
        last_seq: u64,
    },
    /// Refused.
    Refused {
        /// Why.
        refusal: Refusal,
        /// The id of the evidence kept, when it was kept.
        evidence: Option<i64>,
        /// The stored head (unchanged).
        last_seq: u64,
    },
}

/// Ingests a segment for `establishment` (already authenticated).
pub async fn ingest(pool: &Pool, establishment: &str, body: Bytes) -> Result<Outcome, Error> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let Some(head) = load_head(&tx, establishment).await? else {
        return Err(Error::UnknownEstablishment(establishment.to_owned()));
    };
    // Reading the lines is CPU work too (on every core): off the async workers. The body comes
    // back, kept as evidence when the segment is refused.
    let (body, parsed) = tokio::task::spawn_blocking(move || {
        let parsed = segment::parse(&body);
        (body, parsed)
    })
    .await
    .map_err(|e| Error::Task(e.to_string()))?;
    let verdict = match parsed {
        Err(e) => Err(Refusal {
            code: RefusalCode::MalformedSegment,
            seq: None,
            problem: e.to_string(),
        }),
        Ok(segment) => {
            let stored = if segment.header.first_seq <= head.last_seq {
                load_records(
                    &*tx,
                    establishment,
                    segment.header.first_seq,
                    segment.header.last_seq.min(head.last_seq),
                )
                .await?
            } else {
                Vec::new()
            };
            // Signatures and hashes are CPU work: off the async workers.
            let head = head.clone();
            tokio::task::spawn_blocking(move || chain::check(&head, &stored, segment))
                .await
                .map_err(|e| Error::Task(e.to_string()))?
        }
    };
    let outcome = match verdict {
        Ok(accepted) => {
            let stored = accepted.new.len() as u64;
            let last_seq = head.last_seq + stored;
            store(&tx, establishment, &accepted).await?;
            Outcome::Accepted {
                stored,
                already_stored: accepted.already_stored,
                last_seq,
            }
        }
        Err(refusal) => {
            let evidence = if refusal.code.is_evidence() {
                Some(keep_evidence(&tx, establishment, &refusal, &body).await?)
            } else {
                None
            };
            Outcome::Refused {
                refusal,
                evidence,
                last_seq: head.last_seq,
            }
        }
    };
    tx.commit().await?;
    Ok(outcome)
}

/// The stored head of an establishment, its row locked until the transaction ends.
async fn load_head(tx: &Transaction<'_>, establishment: &str) -> Result<Option<Head>, Error> {
    let Some(row) = tx
        .query_opt(
            "SELECT last_seq, last_hash, fdm_id FROM establishments WHERE id = $1 FOR UPDATE",
            &[&establishment],
        )
        .await?
    else {
        return Ok(None);
    };
    let last_seq: i64 = row.get(0);
    let mut head = Head {
        last_seq: last_seq as u64,
        last_hash: row.get(1),
        fdm_id: row.get(2),
        ..Head::default()
    };
    for row in tx
        .query(
            "SELECT public_key FROM enrolled_keys WHERE establishment_id = $1",
            &[&establishment],
        )
        .await?
    {
        head.enrolled_keys.push(row.get(0));
    }
    for row in tx
        .query(
            "SELECT signer_id, algorithm, public_key FROM chain_signers
              WHERE establishment_id = $1 ORDER BY declared_seq",
            &[&establishment],
        )
        .await?
    {
        head.signers.push(DeclaredSigner {
            id: row.get(0),
            algorithm: row.get(1),
            public_key: row.get(2),
        });
    }
    for row in tx
        .query(
            "SELECT counter, value FROM chain_counters WHERE establishment_id = $1",
            &[&establishment],
        )
        .await?
    {
        let value: i64 = row.get(1);
        head.counters.insert(row.get(0), value as u64);
    }
    Ok(Some(head))
}

/// Stored records `from..=to` of an establishment, in order.
pub async fn load_records(
    tx: &impl tokio_postgres::GenericClient,
    establishment: &str,
    from: u64,
    to: u64,
) -> Result<Vec<SegmentRecord>, Error> {
    let rows = tx
        .query(
            "SELECT seq, hash, signature, canonical FROM records
              WHERE establishment_id = $1 AND seq BETWEEN $2 AND $3 ORDER BY seq",
            &[&establishment, &(from as i64), &(to as i64)],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| SegmentRecord {
            seq: row.get::<_, i64>(0) as u64,
            hash: row.get(1),
            signature: row.get(2),
            canonical: row.get(3),
        })
        .collect())
}

/// The types of the columns [`store`] copies into `records`, in order.
const RECORD_COLUMNS: [Type; 12] = [
    Type::TEXT,
    Type::INT8,
    Type::TEXT,
    Type::TEXT,
    Type::DATE,
    Type::TEXT,
    Type::BYTEA,
    Type::BYTEA,
    Type::BYTEA,
    Type::BYTEA,
    Type::TEXT,
    Type::TEXT,
];

/// Turnover of the new records per (date, rate): tickets, total, VAT.
type TurnoverDelta = BTreeMap<(NaiveDate, String), (i64, i64, i64)>;

async fn store(
    tx: &Transaction<'_>,
    establishment: &str,
    accepted: &Accepted,
) -> Result<(), Error> {
    let Some(last) = accepted.new.last() else {
        return Ok(());
    };
    // The records, streamed with COPY in PostgreSQL's binary format: no SQL text or arrays to
    // build and parse per segment (was one INSERT … SELECT unnest(…) of twelve arrays). Same
    // table, constraints and triggers; the transaction is the segment's.
    let sink = tx
        .copy_in(
            "COPY records (establishment_id, seq, kind, fdm_time, fdm_date, signer_id,
                           prev_hash, hash, signature, canonical, label, report)
             FROM STDIN (FORMAT binary)",
        )
        .await?;
    let writer = BinaryCopyInWriter::new(sink, &RECORD_COLUMNS);
    let mut writer = std::pin::pin!(writer);
    let mut turnover = TurnoverDelta::new();
    for c in &accepted.new {
        let e = &c.envelope;
        let (label, report): (Option<&str>, Option<&str>) = match &e.content {
            Content::Fiscal(f) => {
                for r in &f.turnover {
                    let t = turnover.entry((e.fdm_date, r.rate.clone())).or_default();
                    t.0 += 1;
                    t.1 += r.total_cents;
                    t.2 += r.vat_cents;
                }
                (Some(f.label.as_str()), None)
            }
            Content::Report { report, .. } => (None, Some(report.as_str())),
            _ => (None, None),
        };
        writer
            .as_mut()
            .write(&[
                &establishment,
                &(e.seq as i64),
                &e.kind.as_str(),
                &e.time.as_str(),
                &e.fdm_date,
                &e.signer_id.as_str(),
                &e.prev_hash.as_slice(),
                &c.record.hash.as_slice(),
                &c.record.signature.as_slice(),
                &c.record.canonical.as_slice(),
                &label,
                &report,
            ])
            .await?;
    }
    writer.finish().await?;
    // Turnover per day and rate.
    let (mut t_dates, mut t_rates, mut t_tickets, mut t_totals, mut t_vats) =
        (vec![], vec![], vec![], vec![], vec![]);
    for ((date, rate), (tickets, total, vat)) in turnover {
        t_dates.push(date);
        t_rates.push(rate);
        t_tickets.push(tickets);
        t_totals.push(total);
        t_vats.push(vat);
    }
    if !t_dates.is_empty() {
        tx.execute(
            "INSERT INTO turnover_daily AS t (establishment_id, fdm_date, rate, tickets, total_cents, vat_cents)
             SELECT $1::text, * FROM unnest($2::date[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[])
             ON CONFLICT (establishment_id, fdm_date, rate) DO UPDATE SET
                 tickets = t.tickets + EXCLUDED.tickets,
                 total_cents = t.total_cents + EXCLUDED.total_cents,
                 vat_cents = t.vat_cents + EXCLUDED.vat_cents",
            &[&establishment, &t_dates, &t_rates, &t_tickets, &t_totals, &t_vats],
        )
        .await?;
    }
    // Counters and declared signers.
    let changed: HashMap<&String, i64> = accepted
        .counters
        .iter()
        .map(|(k, v)| (k, *v as i64))
        .collect();
    let (names, values): (Vec<&String>, Vec<i64>) = changed.into_iter().unzip();
    tx.execute(
        "INSERT INTO chain_counters AS c (establishment_id, counter, value)
         SELECT $1::text, * FROM unnest($2::text[], $3::bigint[])
         ON CONFLICT (establishment_id, counter) DO UPDATE SET value = EXCLUDED.value",
        &[&establishment, &names, &values],
    )
    .await?;
    for (seq, s) in &accepted.declared {
        tx.execute(
            "INSERT INTO chain_signers (establishment_id, signer_id, algorithm, public_key, declared_seq)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (establishment_id, signer_id) DO UPDATE SET
                 algorithm = EXCLUDED.algorithm, public_key = EXCLUDED.public_key,
                 declared_seq = EXCLUDED.declared_seq",
            &[&establishment, &s.id, &s.algorithm, &s.public_key, &(*seq as i64)],
        )
        .await?;
    }
    tx.execute(
        "UPDATE establishments SET last_seq = $2, last_hash = $3, last_fdm_time = $4,
                fdm_id = COALESCE(fdm_id, $5), last_received_at = now()
          WHERE id = $1",
        &[
            &establishment,
            &(last.envelope.seq as i64),
            &last.record.hash,
            &last.envelope.time,
            &last.envelope.fdm_id,
        ],
    )
    .await?;
    Ok(())
}

async fn keep_evidence(
    tx: &Transaction<'_>,
    establishment: &str,
    refusal: &Refusal,
    body: &[u8],
) -> Result<i64, Error> {
    let seq = refusal.seq.map(|s| s as i64);
    let row = tx
        .query_one(
            "INSERT INTO refused_segments (establishment_id, code, problem, seq, body)
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
            &[
                &establishment,
                &refusal.code.as_str(),
                &refusal.problem,
                &seq,
                &body,
            ],
        )
        .await?;
    tx.execute(
        "UPDATE establishments SET flagged = true, flag_code = $2, flag_problem = $3,
                flagged_at = now()
          WHERE id = $1",
        &[&establishment, &refusal.code.as_str(), &refusal.problem],
    )
    .await?;
    Ok(row.get(0))
}
