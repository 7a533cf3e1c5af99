//! The verdict on a segment against what is stored for its establishment: no database here, so
//! every rule is tested on its own.
//!
//! Rules, in order:
//! 1. the segment starts at or before the record after the stored head (else: a gap, nothing is
//!    kept; the box sends from its cursor again);
//! 2. every record it holds that is stored already is byte-identical (canonical bytes, hash,
//!    signature) to the stored one (else: a fork);
//! 3. the new records verify with `fdmd-core`'s [`Verifier`]: sequence, hash, canonical form,
//!    chain, signer declared in the chain and its key among the keys given at enrolment,
//!    signature, counters within the segment;
//! 4. the first new record's `prev_hash` is the stored head's hash (else: a fork), its FDM id is
//!    the establishment's;
//! 5. counters and ticket numbers continue those of the stored chain.

use crate::envelope::{self, Content, Envelope};
use crate::segment::{Segment, SegmentRecord};
use fdmd_core::journal::verify::{DeclaredSigner, RecordParts, Verifier, par_map};
use std::collections::HashMap;

/// What is stored for an establishment, as the verdict needs it.
#[derive(Debug, Clone, Default)]
pub struct Head {
    /// Last stored seq, 0 when nothing is stored.
    pub last_seq: u64,
    /// Its hash.
    pub last_hash: Option<Vec<u8>>,
    /// The FDM production number of the stored chain.
    pub fdm_id: Option<String>,
    /// Signers declared by stored records.
    pub signers: Vec<DeclaredSigner>,
    /// Last value of each counter (`total`, `label:NS`, `series:NAME`).
    pub counters: HashMap<String, u64>,
    /// Public keys given at enrolment: every record must be signed with one of them.
    pub enrolled_keys: Vec<Vec<u8>>,
}

/// Why a segment is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalCode {
    /// Not an export segment (malformed lines, cut short).
    MalformedSegment,
    /// It starts after the record following the stored head: records would be missing. Not
    /// evidence of anything: nothing is kept, the establishment is not flagged.
    Gap,
    /// It differs from stored records, or does not continue the stored chain.
    Fork,
    /// A record does not verify (hash, canonical form, chain, signer, signature, counters).
    VerificationFailed,
    /// Counters or ticket numbers do not continue the stored chain's.
    CounterDiscontinuity,
    /// The FDM production number differs from the stored chain's.
    FdmIdChanged,
}

impl RefusalCode {
    /// Every code.
    pub const ALL: [RefusalCode; 6] = [
        RefusalCode::MalformedSegment,
        RefusalCode::Gap,
        RefusalCode::Fork,
        RefusalCode::VerificationFailed,
        RefusalCode::CounterDiscontinuity,
        RefusalCode::FdmIdChanged,
    ];

    /// The stable code in answers and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalCode::MalformedSegment => "malformed_segment",
            RefusalCode::Gap => "gap",
            RefusalCode::Fork => "fork",
            RefusalCode::VerificationFailed => "verification_failed",
            RefusalCode::CounterDiscontinuity => "counter_discontinuity",
            RefusalCode::FdmIdChanged => "fdm_id_changed",
        }
    }

    /// Whether the refused segment is kept as evidence and the establishment flagged.
    pub fn is_evidence(self) -> bool {
        self != RefusalCode::Gap
    }

    /// HTTP status: 409 when the segment conflicts with the stored chain, 422 when it is bad.
    pub fn http_status(self) -> u16 {
        match self {
            RefusalCode::Gap | RefusalCode::Fork => 409,
            _ => 422,
        }
    }
}

/// A refused segment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {problem}", code.as_str())]
pub struct Refusal {
    /// Why.
    pub code: RefusalCode,
    /// The first record concerned, when there is one.
    pub seq: Option<u64>,
    /// What is wrong, for a person.
    pub problem: String,
}

fn refuse<T>(
    code: RefusalCode,
    seq: Option<u64>,
    problem: impl Into<String>,
) -> Result<T, Refusal> {
    Err(Refusal {
        code,
        seq,
        problem: problem.into(),
    })
}

/// A new record, verified, with its envelope.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The record as received.
    pub record: SegmentRecord,
    /// Its envelope.
    pub envelope: Envelope,
}

/// A segment accepted: the records to store (possibly none: the segment was stored already).
#[derive(Debug, Clone, Default)]
pub struct Accepted {
    /// Records after the stored head, in order.
    pub new: Vec<Checked>,
    /// Records of the segment stored already (identical).
    pub already_stored: u64,
    /// Counters after the new records.
    pub counters: HashMap<String, u64>,
    /// Signers the new records declare.
    pub declared: Vec<(u64, DeclaredSigner)>,
}

/// The verdict on `segment`. `stored` are the stored records the segment overlaps, in order
/// (those with seq from its first up to the head). The segment's new records are moved into
/// the [`Accepted`] records, not copied.
pub fn check(head: &Head, stored: &[SegmentRecord], segment: Segment) -> Result<Accepted, Refusal> {
    let first = segment.header.first_seq;
    if first > head.last_seq + 1 {
        return refuse(
            RefusalCode::Gap,
            Some(head.last_seq + 1),
            format!(
                "the segment starts at record {first}; the next record expected is {}",
                head.last_seq + 1
            ),
        );
    }
    // 2. the overlap must be identical
    let overlap = segment
        .records
        .iter()
        .take_while(|r| r.seq <= head.last_seq)
        .count();
    for (r, s) in segment.records[..overlap].iter().zip(stored) {
        if r.seq != s.seq {
            return refuse(
                RefusalCode::Fork,
                Some(r.seq),
                format!("record {} is not stored (internal: overlap misread)", r.seq),
            );
        }
        if r != s {
            return refuse(
                RefusalCode::Fork,
                Some(r.seq),
                format!(
                    "record {} differs from the stored record {}: the box's journal forked from the copy (restored from an older image?) or was changed",
                    r.seq, s.seq
                ),
            );
        }
    }
    if stored.len() < overlap {
        return refuse(
            RefusalCode::Fork,
            Some(first),
            "stored records of the overlap are missing (internal)",
        );
    }
    let mut new_records = segment.records;
    new_records.drain(..overlap);
    let mut accepted = Accepted {
        already_stored: overlap as u64,
        counters: head.counters.clone(),
        ..Accepted::default()
    };
    if new_records.is_empty() {
        return Ok(accepted);
    }
    if head.enrolled_keys.is_empty() {
        return refuse(
            RefusalCode::VerificationFailed,
            new_records.first().map(|r| r.seq),
            "no signer key was enrolled for this establishment",
        );
    }
    // 3. the records themselves, as fdmctl verify checks them, on every core: hashes, canonical
    // form and one `verify_strict` per signature in parallel, chain and counters in order. The
    // verifier names the first bad record; every record before it passed, as one by one.
    let mut verifier = Verifier::new(
        head.last_seq == 0,
        head.enrolled_keys.clone(),
        head.signers.clone(),
    );
    let verified = verifier.check_many(&new_records, |r| RecordParts {
        seq: r.seq,
        canonical: &r.canonical,
        hash: &r.hash,
        signature: &r.signature,
    });
    // The records before the first bad one (all of them when none is) take the back office's
    // own checks, in order, as when each record was verified and then checked.
    let good = match &verified {
        Ok(()) => new_records.len(),
        Err(e) => new_records
            .iter()
            .position(|r| r.seq >= e.seq)
            .unwrap_or(new_records.len()),
    };
    let envelopes = par_map(&new_records[..good], |_, r| {
        envelope::parse(r.seq, &r.canonical)
    });
    accepted.new.reserve_exact(good);
    for (r, envelope) in new_records.into_iter().zip(envelopes) {
        let envelope = envelope.map_err(|e| Refusal {
            code: RefusalCode::VerificationFailed,
            seq: Some(e.seq),
            problem: e.to_string(),
        })?;
        // 4. continuity with the stored head (within the segment the verifier checked it)
        let prev_hash = match accepted.new.last() {
            Some(last) => Some(&last.record.hash),
            None => head.last_hash.as_ref(),
        };
        if let Some(prev) = prev_hash
            && envelope.prev_hash.as_slice() != prev.as_slice()
        {
            return refuse(
                RefusalCode::Fork,
                Some(r.seq),
                format!(
                    "record {} does not follow the stored record {}: its prev_hash differs (the box's journal forked from the copy)",
                    r.seq,
                    r.seq - 1
                ),
            );
        }
        if let Some(fdm_id) = &head.fdm_id
            && &envelope.fdm_id != fdm_id
        {
            return refuse(
                RefusalCode::FdmIdChanged,
                Some(r.seq),
                format!(
                    "record {} names FDM {:?}, the stored chain {fdm_id:?}",
                    r.seq, envelope.fdm_id
                ),
            );
        }
        // 5. counters continue the stored chain's
        continue_counters(&mut accepted.counters, &envelope)?;
        if let Content::Declaration(signer) = &envelope.content {
            accepted.declared.push((r.seq, signer.clone()));
        }
        accepted.new.push(Checked {
            record: r,
            envelope,
        });
    }
    if let Err(e) = verified {
        return refuse(RefusalCode::VerificationFailed, Some(e.seq), e.to_string());
    }
    Ok(accepted)
}

fn continue_counters(counters: &mut HashMap<String, u64>, e: &Envelope) -> Result<(), Refusal> {
    let mut step = |name: String, value: u64| -> Result<(), Refusal> {
        let last = counters.get(&name).copied().unwrap_or(0);
        if value != last + 1 {
            return refuse(
                RefusalCode::CounterDiscontinuity,
                Some(e.seq),
                format!(
                    "record {}: {name} is {value}, the stored chain's last is {last}",
                    e.seq
                ),
            );
        }
        counters.insert(name, value);
        Ok(())
    };
    match &e.content {
        Content::Fiscal(f) => {
            step("total".into(), f.total_counter)?;
            step(format!("label:{}", f.label), f.event_counter)?;
            if let Some((series, number)) = &f.series {
                step(format!("series:{series}"), *number)?;
            }
        }
        Content::Report {
            series: Some((series, number)),
            ..
        } => step(format!("series:{series}"), *number)?,
        _ => {}
    }
    Ok(())
}
