//! A segment as a box sends it: an export (`docs/journal-format.md` §9) of a range of its
//! journal, read into typed records. Only the shape is checked here (lines, order, the end
//! line); the records themselves are verified by [`crate::chain`].

use fdmd_core::journal::export::{EXPORT_FORMAT, EXPORT_VERSION, ExportHeader, ExportWriter};
use serde::{Deserialize, Serialize};

/// Most records one segment may hold.
pub const MAX_SEGMENT_RECORDS: usize = 100_000;

/// One record of a segment, its hex decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentRecord {
    /// Sequence number the line claims.
    pub seq: u64,
    /// The hash the line gives (32 bytes when well formed).
    pub hash: Vec<u8>,
    /// The signature the line gives.
    pub signature: Vec<u8>,
    /// The canonical bytes.
    pub canonical: Vec<u8>,
}

/// A segment read from its lines.
#[derive(Debug, Clone)]
pub struct Segment {
    /// The header as sent (its `signers` list is never trusted).
    pub header: ExportHeader,
    /// The records, `header.first_seq..=header.last_seq` in order.
    pub records: Vec<SegmentRecord>,
}

/// Why a body is not a segment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("segment line {line}: {problem}")]
pub struct SegmentError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub problem: String,
}

/// A record line of an export.
#[derive(Debug, Serialize, Deserialize)]
pub struct RecordLine {
    /// Always `record`.
    #[serde(rename = "type")]
    pub line_type: String,
    /// Sequence number.
    pub seq: u64,
    /// Hash, hex.
    pub hash: String,
    /// Signature, hex.
    pub signature: String,
    /// Canonical bytes as a string.
    pub record: String,
}

/// The end line of an export.
#[derive(Debug, Serialize, Deserialize)]
pub struct EndLine {
    /// Always `end`.
    #[serde(rename = "type")]
    pub line_type: String,
    /// Records in the export.
    pub records: u64,
    /// Hash of the last record, hex.
    pub last_hash: Option<String>,
}

fn problem<T>(line: usize, problem: impl Into<String>) -> Result<T, SegmentError> {
    Err(SegmentError {
        line,
        problem: problem.into(),
    })
}

/// Reads a segment. Records must be consecutive from the header's `first_seq` to its
/// `last_seq`, and the end line must agree with them.
pub fn parse(body: &[u8]) -> Result<Segment, SegmentError> {
    let text = match std::str::from_utf8(body) {
        Ok(t) => t,
        Err(e) => return problem(1, format!("not UTF-8: {e}")),
    };
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
    let Some((_, first)) = lines.next() else {
        return problem(1, "the segment is empty");
    };
    let header: ExportHeader = match serde_json::from_str(first) {
        Ok(h) => h,
        Err(e) => return problem(1, format!("not an export header: {e}")),
    };
    if header.line_type != "header"
        || header.format != EXPORT_FORMAT
        || header.version != EXPORT_VERSION
    {
        return problem(
            1,
            format!("not a {EXPORT_FORMAT} version {EXPORT_VERSION} header"),
        );
    }
    if header.first_seq < 1 || header.last_seq < header.first_seq {
        return problem(1, "first_seq and last_seq do not name a range of records");
    }
    let announced = header.last_seq - header.first_seq + 1;
    if announced > MAX_SEGMENT_RECORDS as u64 {
        return problem(
            1,
            format!("{announced} records: a segment holds at most {MAX_SEGMENT_RECORDS}"),
        );
    }
    let mut records: Vec<SegmentRecord> = Vec::with_capacity(announced as usize);
    let mut end: Option<EndLine> = None;
    for (n, line) in lines {
        if end.is_some() {
            if line.trim().is_empty() {
                continue;
            }
            return problem(n, "text after the end line");
        }
        if let Ok(r) = serde_json::from_str::<RecordLine>(line)
            && r.line_type == "record"
        {
            let expected = header.first_seq + records.len() as u64;
            if r.seq != expected || records.len() as u64 >= announced {
                return problem(
                    n,
                    format!("record {} where record {expected} was expected", r.seq),
                );
            }
            let (Ok(hash), Ok(signature)) = (hex::decode(&r.hash), hex::decode(&r.signature))
            else {
                return problem(n, "hash or signature is not hex");
            };
            records.push(SegmentRecord {
                seq: r.seq,
                hash,
                signature,
                canonical: r.record.into_bytes(),
            });
            continue;
        }
        match serde_json::from_str::<EndLine>(line) {
            Ok(e) if e.line_type == "end" => end = Some(e),
            Ok(_) => return problem(n, "unknown line type"),
            Err(e) => return problem(n, format!("not a record or end line: {e}")),
        }
    }
    let Some(end) = end else {
        return problem(
            text.lines().count() + 1,
            "the end line is missing: the segment was cut short",
        );
    };
    let last_hash = records.last().map(|r| hex::encode(&r.hash));
    if records.len() as u64 != announced || end.records != announced || end.last_hash != last_hash {
        return problem(
            text.lines().count(),
            format!(
                "the header announces {announced} records, the end line {} and the segment holds {}",
                end.records,
                records.len()
            ),
        );
    }
    Ok(Segment { header, records })
}

/// Writes the header line, the record lines and the end line of an export (core's writer).
pub fn write(
    header: &ExportHeader,
    records: &[SegmentRecord],
    out: &mut Vec<u8>,
) -> Result<(), fdmd_core::journal::export::ExportError> {
    let mut writer = ExportWriter::start(out, header)?;
    for r in records {
        writer.record(r.seq, &r.hash, &r.signature, &r.canonical)?;
    }
    writer.finish()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(first: u64, last: u64) -> ExportHeader {
        ExportHeader {
            line_type: "header".into(),
            format: EXPORT_FORMAT.into(),
            version: EXPORT_VERSION,
            fdm_id: "X".into(),
            first_seq: first,
            last_seq: last,
            exported_at: "now".into(),
            signers: vec![],
        }
    }

    fn rec(seq: u64) -> SegmentRecord {
        SegmentRecord {
            seq,
            hash: vec![seq as u8; 32],
            signature: vec![1; 64],
            canonical: format!("{{\"seq\":{seq}}}").into_bytes(),
        }
    }

    #[test]
    fn a_written_segment_reads_back() {
        let mut out = Vec::new();
        let records = vec![rec(3), rec(4)];
        write(&header(3, 4), &records, &mut out).expect("a segment of UTF-8 records");
        let s = parse(&out).map_err(|e| e.to_string());
        assert_eq!(s.map(|s| s.records), Ok(records));
    }

    #[test]
    fn cut_or_disordered_segments_are_refused() {
        let mut out = Vec::new();
        write(&header(3, 4), &[rec(3), rec(4)], &mut out).expect("a segment of UTF-8 records");
        let text = String::from_utf8_lossy(&out).into_owned();
        let cut: String = text.lines().take(3).map(|l| format!("{l}\n")).collect();
        assert!(parse(cut.as_bytes()).is_err());
        let mut out = Vec::new();
        write(&header(3, 4), &[rec(4), rec(3)], &mut out).expect("a segment of UTF-8 records");
        assert!(parse(&out).is_err());
        let mut out = Vec::new();
        write(&header(3, 5), &[rec(3), rec(4)], &mut out).expect("a segment of UTF-8 records");
        assert!(parse(&out).is_err());
        assert!(parse(b"").is_err());
        assert!(parse(b"{}").is_err());
    }
}
