//! Export as JSON lines, and reading an export back for verification.
//!
//! ```text
//! {"type":"header","format":"fdmd-journal-export","version":1,"fdm_id":…,"first_seq":…,"last_seq":…,"exported_at":…,"signers":[…]}
//! {"type":"record","seq":1,"hash":"…","signature":"…","record":"<canonical bytes as a JSON string>"}
//! …
//! {"type":"end","records":N,"last_hash":"…"}
//! ```
//! The `record` string holds the canonical bytes exactly: hash its UTF-8 bytes to check it.

use super::record::RecordKind;
use super::store::{self, StoredRecord};
use super::verify::content::{Prepared, prepare};
use super::verify::parallel::{CHUNK_BYTES, CHUNK_RECORDS, Pass};
use super::verify::pipeline::pipeline;
use super::verify::{
    Anchor, AnchorError, DeclaredSigner, Verifier, VerifyError, VerifySummary, verify_records,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::io::{BufRead, Write};

/// Name in the header's `format` field.
pub const EXPORT_FORMAT: &str = "fdmd-journal-export";
/// Version of the export format.
pub const EXPORT_VERSION: u64 = 1;
/// Longest line an export reader accepts (records are far smaller).
pub const MAX_LINE_BYTES: usize = 4 * 1024 * 1024;

/// The first line of an export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportHeader {
    /// Always `header`.
    #[serde(rename = "type")]
    pub line_type: String,
    /// Always [`EXPORT_FORMAT`].
    pub format: String,
    /// [`EXPORT_VERSION`].
    pub version: u64,
    /// FDM production number.
    pub fdm_id: String,
    /// First record exported.
    pub first_seq: u64,
    /// Last record exported.
    pub last_seq: u64,
    /// When the export was made (RFC 3339).
    pub exported_at: String,
    /// Every signer declared in the journal up to `last_seq`. The header is not signed: a
    /// verifier uses this list only for a slice (`first_seq` > 1) whose records were signed
    /// before the slice declares their signer, and reports those keys as unanchored
    /// ([`VerifySummary::unanchored_keys`]) unless given keys or anchors cover them.
    pub signers: Vec<DeclaredSigner>,
}

#[derive(Serialize, Deserialize)]
struct RecordLine {
    #[serde(rename = "type")]
    line_type: String,
    seq: u64,
    hash: String,
    signature: String,
    record: String,
}

#[derive(Serialize, Deserialize)]
struct EndLine {
    #[serde(rename = "type")]
    line_type: String,
    records: u64,
    last_hash: Option<String>,
}

/// Why an export could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Reading the database failed.
    #[error("journal database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Reading or writing the file failed.
    #[error("export file: {0}")]
    Io(#[from] std::io::Error),
    /// The journal holds no records in the range.
    #[error("the journal has no records between {from} and {to}")]
    Empty {
        /// First asked for.
        from: u64,
        /// Last asked for.
        to: u64,
    },
    /// The export is not in the documented format.
    #[error("export line {line}: {problem}")]
    Format {
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        problem: String,
    },
    /// A record failed verification.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// The records verify, but an outside anchor does not match them or is not among them.
    #[error(transparent)]
    Anchor(#[from] AnchorError),
    /// The records verify, but the journal file lacks an append-only trigger.
    #[error("{0}")]
    Unprotected(String),
}

/// Every signer declared in records up to `last_seq`.
pub fn declared_signers(
    conn: &rusqlite::Connection,
    last_seq: u64,
) -> Result<Vec<DeclaredSigner>, ExportError> {
    let mut out: Vec<DeclaredSigner> = Vec::new();
    for r in store::records_of_kind(conn, &[RecordKind::JournalOpen, RecordKind::SignerChange])? {
        if r.seq > last_seq {
            break;
        }
        let envelope: Value = serde_json::from_slice(&r.canonical).unwrap_or(Value::Null);
        if let Some(s) = envelope
            .pointer("/body/signer")
            .cloned()
            .and_then(|s| serde_json::from_value::<DeclaredSigner>(s).ok())
            && !out.contains(&s)
        {
            out.push(s);
        }
    }
    Ok(out)
}

/// Records read per statement (each its own read transaction, see
/// [`store::for_each_in_range_in_steps`]): an export or a back office segment read at idle
/// priority holds a WAL snapshot for a few hundred records at a time, never for the whole range.
const READ_STEP: u64 = 256;

/// Writes records `from..=to` (clamped to what exists) as an export. Returns the header.
pub fn write_export(
    conn: &rusqlite::Connection,
    from: u64,
    to: u64,
    exported_at: &str,
    out: &mut impl Write,
) -> Result<ExportHeader, ExportError> {
    let last: Option<i64> = conn.query_row("SELECT max(seq) FROM records", [], |r| r.get(0))?;
    let last = last.unwrap_or(0) as u64;
    let (from, to) = (from.max(1), to.min(last));
    if from > to {
        return Err(ExportError::Empty { from, to });
    }
    let first = store::record(conn, from)?.ok_or(ExportError::Empty { from, to })?;
    let fdm_id = serde_json::from_slice::<Value>(&first.canonical)
        .ok()
        .and_then(|v| v.get("fdm_id").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_default();
    let header = ExportHeader {
        line_type: "header".into(),
        format: EXPORT_FORMAT.into(),
        version: EXPORT_VERSION,
        fdm_id,
        first_seq: from,
        last_seq: to,
        exported_at: exported_at.to_owned(),
        signers: declared_signers(conn, to)?,
    };
    let mut writer = ExportWriter::start(&mut *out, &header)?;
    store::for_each_in_range_in_steps(
        conn,
        from,
        to,
        READ_STEP,
        |r: StoredRecord| -> Result<(), ExportError> {
            writer.record(r.seq, &r.hash, &r.signature, &r.canonical)
        },
    )?;
    writer.finish()?;
    Ok(header)
}

/// Writes the lines of an export: the header, each record, then the end line with the count and
/// the last hash. The one writer of the format, for the daemon's exports and the back office's.
pub struct ExportWriter<W: Write> {
    out: W,
    count: u64,
    last_hash: Option<String>,
}

impl<W: Write> ExportWriter<W> {
    /// Writes the header line.
    pub fn start(mut out: W, header: &ExportHeader) -> Result<Self, ExportError> {
        write_line(&mut out, header)?;
        Ok(ExportWriter {
            out,
            count: 0,
            last_hash: None,
        })
    }

    /// Writes one record line. The canonical bytes must be UTF-8 (they always are when written
    /// by fdmd); anything else is refused, never replaced.
    pub fn record(
        &mut self,
        seq: u64,
        hash: &[u8],
        signature: &[u8],
        canonical: &[u8],
    ) -> Result<(), ExportError> {
        let record = std::str::from_utf8(canonical).map_err(|_| ExportError::Format {
            line: self.count + 2,
            problem: format!("record {seq} is not UTF-8"),
        })?;
        let hash = hex::encode(hash);
        write_line(
            &mut self.out,
            &RecordLine {
                line_type: "record".into(),
                seq,
                hash: hash.clone(),
                signature: hex::encode(signature),
                record: record.to_owned(),
            },
        )?;
        self.count += 1;
        self.last_hash = Some(hash);
        Ok(())
    }

    /// Writes the end line, flushes and gives the output back.
    pub fn finish(mut self) -> Result<W, ExportError> {
        write_line(
            &mut self.out,
            &EndLine {
                line_type: "end".into(),
                records: self.count,
                last_hash: self.last_hash.take(),
            },
        )?;
        self.out.flush()?;
        Ok(self.out)
    }
}

fn write_line(out: &mut impl Write, value: &impl Serialize) -> Result<(), ExportError> {
    serde_json::to_writer(&mut *out, value).map_err(std::io::Error::from)?;
    out.write_all(b"\n")?;
    Ok(())
}

/// Verifies an export file on its own. `trusted_keys` are public keys given out of band; without
/// them the keys declared in the journal are used (and the summary says so, `keys_trusted`).
/// A whole export (`first_seq` 1) must declare every signer in its own records; the header's
/// list is used only for a slice, and the keys used from it are listed in the summary's
/// `unanchored_keys` (the caller decides what to do with them: `fdmctl verify` fails).
pub fn verify_export(
    input: impl BufRead,
    trusted_keys: Vec<Vec<u8>>,
) -> Result<(ExportHeader, VerifySummary), ExportError> {
    verify_export_anchored(input, trusted_keys, Vec::new())
}

/// [`verify_export`], and the records must match every `anchor` ([`ExportError::Anchor`]
/// otherwise, after the records themselves verified): an anchor before the first record or
/// after the last one is a failure too.
///
/// Lines are read in chunks (bounded in lines and bytes); each chunk's lines are parsed and their
/// records checked on every core, then followed in order (see `verify::parallel`). The first
/// problem, by line, is the one a line-by-line reader reports.
pub fn verify_export_anchored(
    input: impl BufRead,
    trusted_keys: Vec<Vec<u8>>,
    anchors: Vec<Anchor>,
) -> Result<(ExportHeader, VerifySummary), ExportError> {
    let mut lines = BoundedLines { input, line: 0 };
    let first = lines
        .next_line()?
        .ok_or_else(|| format_error(1, "the export is empty".into()))?;
    let header: ExportHeader = serde_json::from_str(&first)
        .map_err(|e| format_error(1, format!("not an export header: {e}")))?;
    if header.line_type != "header"
        || header.format != EXPORT_FORMAT
        || header.version != EXPORT_VERSION
    {
        return Err(format_error(
            1,
            format!("not a {EXPORT_FORMAT} version {EXPORT_VERSION} header"),
        ));
    }
    let mut reader = ExportReader {
        verifier: Verifier::new(header.first_seq == 1, trusted_keys, header.signers.clone())
            .with_anchors(anchors),
        first_seq: header.first_seq,
        end: None,
        count: 0,
    };
    let guesses = reader.verifier.guesses();
    let ((), verdict) = pipeline(
        |(first_line, chunk, broken): RawChunk| {
            let mut parsed: Vec<ParsedLine> = chunk
                .iter()
                .enumerate()
                .map(|(i, text)| parse_line(first_line + i as u64, text))
                .collect();
            drop(chunk);
            guesses.check(parsed.iter_mut().filter_map(|line| match line {
                ParsedLine::Record { record: Ok(p), .. } => Some(p),
                _ => None,
            }));
            (first_line, parsed, broken)
        },
        |(first_line, parsed, broken): ParsedChunk| reader.check_chunk(first_line, &parsed, broken),
        |feed| loop {
            // Read a chunk; a read error ends it and is the problem of the line after its lines.
            let first_line = lines.line + 1;
            let mut chunk: Vec<String> = Vec::new();
            let mut bytes = 0usize;
            let mut broken = None;
            let mut eof = false;
            while chunk.len() < CHUNK_RECORDS && bytes < CHUNK_BYTES {
                match lines.next_line() {
                    Ok(Some(text)) => {
                        bytes += text.len();
                        chunk.push(text);
                    }
                    Ok(None) => {
                        eof = true;
                        break;
                    }
                    Err(e) => {
                        broken = Some(e);
                        break;
                    }
                }
            }
            // A read error is always reported (unless an earlier line has a problem); it ends
            // the reading like the end of the file.
            let last = eof || broken.is_some();
            if feed.send((first_line, chunk, broken)).is_err() || last {
                return;
            }
        },
    );
    verdict?;
    let ExportReader {
        verifier,
        end,
        count,
        ..
    } = reader;
    let Some(end) = end else {
        return Err(format_error(
            lines.line + 1,
            "the end line is missing: the export was cut short".into(),
        ));
    };
    let anchor_problem = verifier.anchor_problem();
    let summary = verifier.finish();
    if end.records != count
        || summary.last_seq.unwrap_or(0) != header.last_seq
        || end.last_hash != summary.last_hash
    {
        return Err(VerifyError {
            seq: summary.last_seq.map_or(header.first_seq, |s| s + 1),
            problem: format!(
                "the export announces records {} to {} ({} records) but holds {count}{}",
                header.first_seq,
                header.last_seq,
                end.records,
                summary
                    .last_seq
                    .map_or(String::new(), |seq| format!(" ending at record {seq}"))
            ),
        }
        .into());
    }
    if let Some(e) = anchor_problem {
        return Err(e.into());
    }
    Ok((header, summary))
}

/// A chunk of an export as read: its first line's number, its lines, the read error after them.
type RawChunk = (u64, Vec<String>, Option<ExportError>);
/// A chunk of an export as a worker leaves it: its lines parsed, records' signatures checked.
type ParsedChunk = (u64, Vec<ParsedLine>, Option<ExportError>);

fn format_error(line: u64, problem: String) -> ExportError {
    ExportError::Format { line, problem }
}

/// What one line of an export says, from the line alone (parsed on any thread).
// Nearly every line is a record: boxing that variant would cost an allocation per record.
#[allow(clippy::large_enum_variant)]
enum ParsedLine {
    Record {
        seq: u64,
        /// The hex of the hash and the signature decoded, and the record's own checks; or the
        /// line's problem with them.
        record: Result<Prepared, (u64, String)>,
    },
    End(EndLine),
    /// Not JSON, a malformed record or end line, an unknown line type.
    Problem(u64, String),
}

fn parse_line(line: u64, text: &str) -> ParsedLine {
    // Fast path: a well-formed record line straight into its struct. Anything else (another
    // type, a duplicate member, bad JSON) takes the general path, whose problems are the ones
    // reported.
    if let Ok(r) = serde_json::from_str::<RecordLine>(text)
        && r.line_type == "record"
    {
        return parsed_record(line, r);
    }
    let value: Value = match serde_json::from_str(text) {
        Ok(value) => value,
        Err(e) => return ParsedLine::Problem(line, format!("not JSON: {e}")),
    };
    match value.get("type").and_then(Value::as_str) {
        Some("record") => match serde_json::from_value::<RecordLine>(value) {
            Ok(r) => parsed_record(line, r),
            Err(e) => ParsedLine::Problem(line, format!("bad record line: {e}")),
        },
        Some("end") => match serde_json::from_value(value) {
            Ok(end) => ParsedLine::End(end),
            Err(e) => ParsedLine::Problem(line, format!("bad end line: {e}")),
        },
        _ => ParsedLine::Problem(line, "unknown line type".into()),
    }
}

fn parsed_record(line: u64, r: RecordLine) -> ParsedLine {
    let record = match (hex::decode(&r.hash), hex::decode(&r.signature)) {
        (Err(_), _) => Err((line, "hash is not hex".into())),
        (Ok(_), Err(_)) => Err((line, "signature is not hex".into())),
        (Ok(hash), Ok(signature)) => Ok(prepare(r.seq, r.record.as_bytes(), &hash, signature)),
    };
    ParsedLine::Record { seq: r.seq, record }
}

/// The state of an export being verified, line after line.
struct ExportReader {
    verifier: Verifier,
    first_seq: u64,
    end: Option<EndLine>,
    count: u64,
}

impl ExportReader {
    /// Checks a chunk of lines numbered from `first_line` (parsed, signatures checked ahead by
    /// a worker), then the read error after them, if any.
    fn check_chunk(
        &mut self,
        first_line: u64,
        parsed: &[ParsedLine],
        broken: Option<ExportError>,
    ) -> Result<(), ExportError> {
        let mut pass = Pass::<ExportError>::default();
        for (item, line) in parsed.iter().enumerate() {
            if let Err(e) = self.check_line(&mut pass, first_line + item as u64, item, line) {
                pass.stop = Some(e);
                break;
            }
        }
        if pass.stop.is_none() {
            pass.stop = broken;
        }
        pass.finish(|item| match parsed.get(item) {
            Some(ParsedLine::Record { record: Ok(p), .. }) => Some(p),
            _ => None,
        })
    }

    fn check_line(
        &mut self,
        pass: &mut Pass<ExportError>,
        n: u64,
        item: usize,
        line: &ParsedLine,
    ) -> Result<(), ExportError> {
        if self.end.is_some() {
            return Err(format_error(n, "text after the end line".into()));
        }
        match line {
            ParsedLine::Problem(line, problem) => Err(format_error(*line, problem.clone())),
            ParsedLine::End(end) => {
                self.end = Some(EndLine {
                    line_type: end.line_type.clone(),
                    records: end.records,
                    last_hash: end.last_hash.clone(),
                });
                Ok(())
            }
            ParsedLine::Record { seq, record } => {
                if self.count == 0 && *seq != self.first_seq {
                    return Err(VerifyError {
                        seq: self.first_seq,
                        problem: format!("record is missing (the export starts at record {seq})"),
                    }
                    .into());
                }
                let p = record
                    .as_ref()
                    .map_err(|(line, problem)| format_error(*line, problem.clone()))?;
                self.verifier.check_in_pass(pass, item, p)?;
                self.count += 1;
                Ok(())
            }
        }
    }
}

struct BoundedLines<R> {
    input: R,
    line: u64,
}

impl<R: BufRead> BoundedLines<R> {
    fn next_line(&mut self) -> Result<Option<String>, ExportError> {
        let mut buf = Vec::new();
        let read = std::io::Read::take(&mut self.input, MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut buf)?;
        if read == 0 {
            return Ok(None);
        }
        self.line += 1;
        if buf.len() > MAX_LINE_BYTES {
            return Err(ExportError::Format {
                line: self.line,
                problem: format!("line longer than {MAX_LINE_BYTES} bytes"),
            });
        }
        if buf.last() == Some(&b'\n') {
            buf.pop();
        }
        String::from_utf8(buf)
            .map(Some)
            .map_err(|_| ExportError::Format {
                line: self.line,
                problem: "not UTF-8".into(),
            })
    }
}

/// Verifies the whole journal in a database, checking index columns too (a bounded chunk of
/// rows at a time, on every core).
pub fn verify_database(
    conn: &rusqlite::Connection,
    trusted_keys: Vec<Vec<u8>>,
) -> Result<VerifySummary, ExportError> {
    verify_database_anchored(conn, trusted_keys, Vec::new())
}

/// [`verify_database`], and the records must match every `anchor` (see
/// [`verify_export_anchored`]).
pub fn verify_database_anchored(
    conn: &rusqlite::Connection,
    trusted_keys: Vec<Vec<u8>>,
    anchors: Vec<Anchor>,
) -> Result<VerifySummary, ExportError> {
    let mut verifier = Verifier::new(true, trusted_keys, Vec::new())
        .with_anchors(anchors)
        .requests_unique_by_index();
    let checked = verify_records::<ExportError>(&mut verifier, |f| {
        store::for_each_in_range(conn, 1, u64::MAX, f)
    });
    match checked {
        // A stored record that cannot be read back (a damaged compressed frame, schema 2) is a
        // bad record like any other: named, not a failure of the whole check (the records read
        // before it are checked first, so an earlier bad record is still the one named).
        Err(ExportError::Sqlite(e)) => match store::unreadable_record(&e) {
            Some(unreadable) => Err(ExportError::Verify(crate::journal::verify::VerifyError {
                seq: unreadable.seq,
                problem: format!(
                    "the stored record cannot be read back: {}",
                    unreadable.problem
                ),
            })),
            None => Err(ExportError::Sqlite(e)),
        },
        Err(e) => Err(e),
        Ok(()) => match verifier.anchor_problem() {
            Some(e) => Err(e.into()),
            None => match store::trigger_problem(conn)?.or(store::request_index_problem(conn)?) {
                Some(problem) => Err(ExportError::Unprotected(problem)),
                None => Ok(verifier.finish()),
            },
        },
    }
}
