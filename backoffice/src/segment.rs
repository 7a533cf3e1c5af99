//! A segment as a box sends it: an export (`docs/journal-format.md` §9) of a range of its
//! journal, read into typed records. Only the shape is checked here (lines, order, the end
//! line); the records themselves are verified by [`crate::chain`].

use fdmd_core::journal::export::{EXPORT_FORMAT, EXPORT_VERSION, ExportHeader, ExportWriter};
use fdmd_core::journal::verify::par_map;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

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

/// Lines read on all cores at a time: bounds the memory of a body of many short or bad lines
/// (results are kept for a chunk only, and reading stops at the first chunk with a problem).
const CHUNK_LINES: usize = if cfg!(test) { 64 } else { 4096 };

/// A record line as read, its strings borrowed from the body where they hold no escapes.
#[derive(Deserialize)]
struct RecordLineRef<'a> {
    #[serde(rename = "type", borrow)]
    line_type: Cow<'a, str>,
    seq: u64,
    #[serde(borrow)]
    hash: Cow<'a, str>,
    #[serde(borrow)]
    signature: Cow<'a, str>,
    #[serde(borrow)]
    record: Cow<'a, str>,
}

/// What a line after the header is, read on its own (on any thread). The order rules (the seq
/// expected, the end line last) are applied afterwards, in line order.
enum Line {
    /// A record line; `parts` is `None` when its hash or signature is not hex.
    Record {
        seq: u64,
        parts: Option<(Vec<u8>, Vec<u8>)>,
        canonical: Vec<u8>,
    },
    /// The end line.
    End(EndLine),
    /// Valid JSON of an end line's shape with another `type`.
    UnknownType,
    /// Neither a record nor an end line.
    Bad(String),
}

fn read_line(line: &str) -> Line {
    if let Ok(r) = serde_json::from_str::<RecordLineRef<'_>>(line)
        && r.line_type == "record"
    {
        let parts = match (hex::decode(&*r.hash), hex::decode(&*r.signature)) {
            (Ok(hash), Ok(signature)) => Some((hash, signature)),
            _ => None,
        };
        return Line::Record {
            seq: r.seq,
            parts,
            canonical: r.record.into_owned().into_bytes(),
        };
    }
    match serde_json::from_str::<EndLine>(line) {
        Ok(e) if e.line_type == "end" => Line::End(e),
        Ok(_) => Line::UnknownType,
        Err(e) => Line::Bad(format!("not a record or end line: {e}")),
    }
}

/// Reads a segment. Records must be consecutive from the header's `first_seq` to its
/// `last_seq`, and the end line must agree with them.
///
/// The lines are read (JSON, hex) on every core, [`CHUNK_LINES`] at a time; the rules of order
/// are then applied line by line, so the line named is the first bad one, as when the lines were
/// read one by one.
pub fn parse(body: &[u8]) -> Result<Segment, SegmentError> {
    let text = match std::str::from_utf8(body) {
        Ok(t) => t,
        Err(e) => return problem(1, format!("not UTF-8: {e}")),
    };
    let mut lines = text.lines();
    let Some(first) = lines.next() else {
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
    // 1-based number of the last line taken (the header is line 1).
    let mut n = 1;
    let mut chunk: Vec<&str> = Vec::with_capacity(CHUNK_LINES);
    loop {
        chunk.clear();
        chunk.extend(lines.by_ref().take(CHUNK_LINES));
        if chunk.is_empty() {
            break;
        }
        // Once the end line is read, the lines after it need no reading: only blank ones are
        // allowed.
        let read = if end.is_some() {
            Vec::new()
        } else {
            par_map(&chunk, |_, line| read_line(line))
        };
        let mut read = read.into_iter();
        for line in &chunk {
            n += 1;
            let this = read.next();
            if end.is_some() {
                if line.trim().is_empty() {
                    continue;
                }
                return problem(n, "text after the end line");
            }
            match this {
                Some(Line::Record {
                    seq,
                    parts,
                    canonical,
                }) => {
                    let expected = header.first_seq + records.len() as u64;
                    if seq != expected || records.len() as u64 >= announced {
                        return problem(
                            n,
                            format!("record {seq} where record {expected} was expected"),
                        );
                    }
                    let Some((hash, signature)) = parts else {
                        return problem(n, "hash or signature is not hex");
                    };
                    records.push(SegmentRecord {
                        seq,
                        hash,
                        signature,
                        canonical,
                    });
                }
                Some(Line::End(e)) => end = Some(e),
                Some(Line::UnknownType) => return problem(n, "unknown line type"),
                Some(Line::Bad(p)) => return problem(n, p),
                None => return problem(n, "line not read (internal)"),
            }
        }
    }
    let Some(end) = end else {
        return problem(n + 1, "the end line is missing: the segment was cut short");
    };
    let last_hash = records.last().map(|r| hex::encode(&r.hash));
    if records.len() as u64 != announced || end.records != announced || end.last_hash != last_hash {
        return problem(
            n,
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

    /// A change made to a line of a segment.
    type Change = dyn Fn(&str) -> String;

    /// The lines of a written segment of records `first..=last`.
    fn lines(first: u64, last: u64) -> Vec<String> {
        let records: Vec<SegmentRecord> = (first..=last).map(rec).collect();
        let mut out = Vec::new();
        write(&header(first, last), &records, &mut out).expect("a segment of UTF-8 records");
        String::from_utf8_lossy(&out)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn joined(lines: &[String]) -> Vec<u8> {
        lines
            .iter()
            .flat_map(|l| format!("{l}\n").into_bytes())
            .collect()
    }

    /// Lines are read many at a time on every core ([`CHUNK_LINES`] lines a chunk, 64 in tests):
    /// a bad line anywhere in a large segment, at a chunk's edges too, is named with its line
    /// number and the problem the line-by-line reading named; of two bad lines, the first.
    #[test]
    fn a_bad_line_in_a_large_segment_is_named_exactly() {
        let good = lines(1, 1000);
        assert_eq!(good.len(), 1002);
        assert_eq!(parse(&joined(&good)).map(|s| s.records.len()), Ok(1000));
        // Line k holds record k - 1; lines 2..=65 are the first chunk, 66..=129 the second.
        let bad_json = |_: &str| "{}".to_owned();
        let not_hex = |l: &str| l.replacen("\"signature\":\"", "\"signature\":\"zz", 1);
        let other_type = |_: &str| "{\"type\":\"other\",\"records\":1}".to_owned();
        let twice = |l: &str| l.replacen("\"seq\":", "\"seq\":1", 1);
        let cases: Vec<(usize, &Change, String)> = vec![
            (
                2,
                &bad_json,
                "not a record or end line: missing field `type` at line 1 column 2".into(),
            ),
            (65, &not_hex, "hash or signature is not hex".into()),
            (66, &other_type, "unknown line type".into()),
            (67, &twice, "record 166 where record 66 was expected".into()),
            (
                500,
                &bad_json,
                "not a record or end line: missing field `type` at line 1 column 2".into(),
            ),
            (501, &not_hex, "hash or signature is not hex".into()),
            (
                1001,
                &twice,
                "record 11000 where record 1000 was expected".into(),
            ),
            (
                1002,
                &bad_json,
                "not a record or end line: missing field `type` at line 1 column 2".into(),
            ),
        ];
        for (k, change, problem) in &cases {
            let mut bad = good.clone();
            bad[k - 1] = change(&bad[k - 1]);
            let expected = Err(SegmentError {
                line: *k,
                problem: problem.clone(),
            });
            assert_eq!(
                parse(&joined(&bad)).map(|s| s.records.len()),
                expected,
                "line {k}"
            );
            // A second bad line later (in the same chunk and in a later one) changes nothing.
            for later in [k + 1, k + 200] {
                if later < good.len() {
                    let mut worse = bad.clone();
                    worse[later - 1] = bad_json(&worse[later - 1]);
                    assert_eq!(
                        parse(&joined(&worse)).map(|s| s.records.len()),
                        expected,
                        "line {k}, then {later}"
                    );
                }
            }
        }
        // Text after the end line, blank lines after it, and the end line missing.
        let mut after = good.clone();
        after.extend(["".to_owned(), "  ".to_owned(), "x".to_owned()]);
        assert_eq!(
            parse(&joined(&after)).map(|s| s.records.len()),
            Err(SegmentError {
                line: 1005,
                problem: "text after the end line".into()
            })
        );
        let cut = &good[..good.len() - 1];
        assert_eq!(
            parse(&joined(cut)).map(|s| s.records.len()),
            Err(SegmentError {
                line: 1002,
                problem: "the end line is missing: the segment was cut short".into()
            })
        );
        let mut short = good.clone();
        short.remove(400);
        assert_eq!(
            parse(&joined(&short)).map(|s| s.records.len()),
            Err(SegmentError {
                line: 401,
                problem: "record 401 where record 400 was expected".into()
            })
        );
    }
}
