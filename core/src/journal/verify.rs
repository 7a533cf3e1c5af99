//! Verification of a journal or an export: every hash, link, signature and counter.
//!
//! The checks follow `docs/journal-format.md` so that an independent verifier written from that
//! page finds the same first bad record:
//! 1. sequence numbers follow each other without gap or repeat;
//! 2. SHA-256 of the canonical bytes equals the stored hash;
//! 3. the bytes are canonical JSON and their `seq` is the record's;
//! 4. `prev_hash` is the previous record's hash (64 zeros before the first);
//! 5. the signer is declared by a journal_open / signer_change record of the chain (a slice may
//!    also use the export header's list, whose keys it then reports as unanchored) and, when keys
//!    are given, is one of them; the signature over the hash verifies;
//! 6. fiscal counters, ticket numbers and report numbers continue without gap;
//! 7. what the records claim: a fiscal event's line totals, total, VAT per letter and PLU hash
//!    from its lines ([`claims`], with the checks of its own bytes); a report's period and its
//!    checkpoint (records, chain head, Merkle root) from the records before it, and its
//!    figures from the fiscal events of its period ([`periods`], with the daemon's own
//!    [`crate::reports::figures`]); a register's `request_id` used once.
//!
//! Step 3 also requires exactly the envelope's members and its `time` in the documented RFC 3339
//! form. Outside anchors ([`Anchor`], a receipt's `journal_seq` and `signed_digest`) are checked
//! against the records' hashes after the chain.
//!
//! [`verify_records`], [`Verifier::check_many`] and the export reader run these checks a chunk
//! of records at a time ([`parallel`]) in a pipeline ([`pipeline`]): chunks read on the calling
//! thread; each record's own bytes ([`content`], checks 2, 3 and the syntax of 4) and its
//! signature with the guessed key ([`speculate`]) on workers kept for the run, on every core; the
//! chain, signers, counters and series in order on one thread ([`Verifier`]). The verdict, first
//! bad record and problem, is the one-by-one verifier's.

mod claims;
pub(crate) mod content;
pub(crate) mod parallel;
mod periods;
pub(crate) mod pipeline;
#[cfg(test)]
mod reference;
mod scan;
pub(crate) mod speculate;
#[cfg(test)]
mod tests;

use super::record::{GENESIS_PREV_HASH, RecordKind};
use super::store::StoredRecord;
use content::{Counters, Prepared, prepare, prepare_stored};
pub use parallel::par_map;
use parallel::{CHUNK_BYTES, CHUNK_RECORDS, Pass, SignatureCheck};
use periods::Periods;
use pipeline::{Stopped, pipeline};
use serde::{Deserialize, Serialize};
use speculate::Guesses;
use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;

/// A signer as declared in the journal or an export header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeclaredSigner {
    /// Signer (VSC) id.
    pub id: String,
    /// Algorithm (`ed25519`).
    pub algorithm: String,
    /// Public key, hex.
    pub public_key: String,
}

/// The first bad record and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("record {seq}: {problem}")]
pub struct VerifyError {
    /// Sequence number of the first bad record (as the record claims, or where one is missing).
    pub seq: u64,
    /// What is wrong.
    pub problem: String,
}

/// What a successful verification covered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifySummary {
    /// Records checked.
    pub records: u64,
    /// First sequence number.
    pub first_seq: Option<u64>,
    /// Last sequence number.
    pub last_seq: Option<u64>,
    /// Hash of the last record, hex.
    pub last_hash: Option<String>,
    /// Fiscal events among them.
    pub fiscal_events: u64,
    /// Signers whose signatures were checked.
    pub signers: Vec<DeclaredSigner>,
    /// True when every signer key was among the keys given to the verifier; false when keys
    /// were taken from the journal itself (compare them with the card or `/v1/signer`).
    pub keys_trusted: bool,
    /// The outside anchors given, each of which matched (a mismatch is an [`AnchorError`]).
    pub anchors: Vec<Anchor>,
    /// Keys that only the (unsigned) header of a slice declares, used for records that neither a
    /// given key nor a matched anchor covers: nothing ties them to the journal. Empty for a whole
    /// journal (its signers must be declared by its own records) and whenever keys are given.
    pub unanchored_keys: Vec<UnanchoredKey>,
}

/// A record's hash known from outside the journal: a receipt's `journal_seq` and
/// `signed_digest`, or a record of an earlier export. Written `SEQ:HASH`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anchor {
    /// The record's sequence number.
    pub seq: u64,
    /// Its hash, 64 lower-case hex characters.
    pub hash: String,
}

/// Why a `SEQ:HASH` anchor could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnchorParseError {
    /// No colon.
    #[error("anchor {0:?} is not SEQ:HASH")]
    Shape(String),
    /// The sequence number is not a number from 1.
    #[error("anchor {0:?}: SEQ must be a record number (1 or more)")]
    Seq(String),
    /// The hash is not 64 hex characters.
    #[error("anchor {0:?}: HASH must be 64 hex characters (the record's hash)")]
    Hash(String),
}

impl FromStr for Anchor {
    type Err = AnchorParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (seq, hash) = text
            .trim()
            .split_once(':')
            .ok_or_else(|| AnchorParseError::Shape(text.into()))?;
        let seq = seq
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|s| *s > 0)
            .ok_or_else(|| AnchorParseError::Seq(text.into()))?;
        // Tickets print the hash in groups of eight: spaces between them are allowed.
        let hash: String = hash
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_ascii_lowercase();
        if hash.len() != 64 || hex::decode(&hash).is_err() {
            return Err(AnchorParseError::Hash(text.into()));
        }
        Ok(Anchor { seq, hash })
    }
}

/// An outside anchor the records contradict, or cannot be checked against.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("anchor {seq}: {problem}")]
pub struct AnchorError {
    /// The anchor's sequence number.
    pub seq: u64,
    /// What is wrong.
    pub problem: String,
}

/// A key that only a slice's header declares (see [`VerifySummary::unanchored_keys`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnanchoredKey {
    /// The signer as the header declares it.
    pub signer: DeclaredSigner,
    /// First record signed with it under the header's declaration.
    pub first_seq: u64,
    /// Last such record: an anchor at this record or a later one covers them all.
    pub last_seq: u64,
}

/// The bookkeeping of trust both verifiers share: the hashes of anchored records, and which
/// records were signed with keys only the export header declares.
#[derive(Debug, Default)]
pub(crate) struct TrustBook {
    anchors: Vec<Anchor>,
    anchored: HashSet<u64>,
    found: HashMap<u64, [u8; 32]>,
    header_use: Vec<UnanchoredKey>,
}

impl TrustBook {
    pub(crate) fn new(anchors: Vec<Anchor>) -> Self {
        TrustBook {
            anchored: anchors.iter().map(|a| a.seq).collect(),
            anchors,
            ..TrustBook::default()
        }
    }

    /// A record passed its checks with this hash.
    pub(crate) fn record(&mut self, seq: u64, hash: &[u8; 32]) {
        if self.anchored.contains(&seq) {
            self.found.insert(seq, *hash);
        }
    }

    /// A record was signed with a key only the export header declares.
    pub(crate) fn header_signed(&mut self, signer: &DeclaredSigner, seq: u64) {
        match self.header_use.iter_mut().find(|u| &u.signer == signer) {
            Some(used) => used.last_seq = seq,
            None => self.header_use.push(UnanchoredKey {
                signer: signer.clone(),
                first_seq: seq,
                last_seq: seq,
            }),
        }
    }

    /// The first anchor (by sequence number) the records checked do not match.
    pub(crate) fn problem(
        &self,
        first_seq: Option<u64>,
        last_seq: Option<u64>,
    ) -> Option<AnchorError> {
        let mut anchors: Vec<&Anchor> = self.anchors.iter().collect();
        anchors.sort_by_key(|a| a.seq);
        anchors.into_iter().find_map(|a| {
            let problem = match (first_seq, last_seq, self.found.get(&a.seq)) {
                (Some(first), _, _) if a.seq < first => format!(
                    "record {} comes before the first record checked ({first}): it cannot be checked",
                    a.seq
                ),
                (_, last, None) => format!(
                    "record {} is not there: the records checked end at {} (records were cut off at the end, or the anchor is wrong)",
                    a.seq,
                    last.map_or_else(|| "none".to_owned(), |l| format!("record {l}"))
                ),
                (_, _, Some(found)) if hex::encode(found) != a.hash => format!(
                    "record {}'s hash is {}, the anchor says {}",
                    a.seq,
                    hex::encode(found),
                    a.hash
                ),
                _ => return None,
            };
            Some(AnchorError {
                seq: a.seq,
                problem,
            })
        })
    }

    /// Puts the anchors and the unanchored keys into the summary (`trusted`: the keys given).
    pub(crate) fn settle(self, summary: &mut VerifySummary, trusted: &[Vec<u8>]) {
        let matched: Vec<Anchor> = self
            .anchors
            .into_iter()
            .filter(|a| {
                self.found
                    .get(&a.seq)
                    .is_some_and(|h| hex::encode(h) == a.hash)
            })
            .collect();
        let covered_to = matched.iter().map(|a| a.seq).max();
        summary.unanchored_keys = self
            .header_use
            .into_iter()
            .filter(|u| {
                let key = hex::decode(&u.signer.public_key).unwrap_or_default();
                !trusted.contains(&key) && covered_to.is_none_or(|to| to < u.last_seq)
            })
            .collect();
        summary.anchors = matched;
    }
}

pub(crate) fn fail<T>(seq: u64, problem: impl Into<String>) -> Result<T, VerifyError> {
    Err(VerifyError {
        seq,
        problem: problem.into(),
    })
}

/// One record as an export line or a segment gives it, borrowed (see [`Verifier::check_many`]).
#[derive(Debug, Clone, Copy)]
pub struct RecordParts<'a> {
    /// The sequence number the record is given under.
    pub seq: u64,
    /// Its canonical bytes.
    pub canonical: &'a [u8],
    /// The hash given for it.
    pub hash: &'a [u8],
    /// The signature given for it.
    pub signature: &'a [u8],
}

/// A declared signer with its key decoded once (not once per record).
#[derive(Debug)]
pub(crate) struct KnownSigner {
    pub(crate) declared: DeclaredSigner,
    /// Declared only by the export header, not by a record of the chain checked.
    from_header: bool,
    /// The public key's bytes (empty when the hex is malformed).
    key: Vec<u8>,
    /// The key as a point, when it is one.
    verifying: Option<ed25519_dalek::VerifyingKey>,
}

impl KnownSigner {
    fn new(declared: DeclaredSigner, from_header: bool) -> Self {
        let key = hex::decode(&declared.public_key).unwrap_or_default();
        let verifying = <[u8; 32]>::try_from(key.as_slice())
            .ok()
            .and_then(|k| ed25519_dalek::VerifyingKey::from_bytes(&k).ok());
        KnownSigner {
            declared,
            from_header,
            key,
            verifying,
        }
    }

    /// The same answer as [`crate::signer::verify_ed25519`] with this key (strict RFC 8032
    /// verification), without decoding the key again.
    pub(crate) fn verifies(&self, digest: &[u8], signature: &[u8]) -> bool {
        let (Some(key), Ok(signature)) = (&self.verifying, <[u8; 64]>::try_from(signature)) else {
            return false;
        };
        key.verify_strict(digest, &ed25519_dalek::Signature::from_bytes(&signature))
            .is_ok()
    }
}

/// The checks that follow the chain: sequence, links, signers, counters and numbers. Records are
/// given in order; each record's own bytes are checked beforehand ([`content`]).
pub struct Verifier {
    expect_genesis: bool,
    trusted: Vec<Vec<u8>>,
    signers: HashMap<String, Arc<KnownSigner>>,
    prev: Option<(u64, [u8; 32])>,
    total_counter: Option<u64>,
    event_counters: HashMap<String, u64>,
    series: HashMap<String, u64>,
    used_signers: Vec<DeclaredSigner>,
    trust: TrustBook,
    /// Every register request seen (a 128-bit digest of register and request_id) and its record;
    /// `None` when the journal file's unique index `records_request` guarantees it (see
    /// [`Verifier::requests_unique_by_index`]): then nothing is kept per record.
    requests: Option<HashMap<u128, u64, KeyIsHash>>,
    /// Report periods and checkpoints.
    periods: Periods,
    summary: VerifySummary,
}

/// The keys of [`Verifier::requests`] are SHA-256 digests already: their low 64 bits are the
/// hash.
#[derive(Debug, Default, Clone, Copy)]
struct KeyIsHash;

impl std::hash::BuildHasher for KeyIsHash {
    type Hasher = LowBits;
    fn build_hasher(&self) -> LowBits {
        LowBits(0)
    }
}

#[derive(Debug)]
struct LowBits(u64);

impl std::hash::Hasher for LowBits {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for (i, b) in bytes.iter().take(8).enumerate() {
            self.0 ^= u64::from(*b) << (8 * i);
        }
    }
    fn write_u128(&mut self, n: u128) {
        // Truncation intended: the low 64 bits of a digest.
        self.0 = n as u64;
    }
}

impl Verifier {
    /// A verifier for a whole journal (must start at record 1 with `journal_open`), or for a
    /// slice when `expect_genesis` is false. `trusted_keys` are public keys given out of band;
    /// `known_signers` are declarations from an export header (used when a slice starts after
    /// the signer's own declaration; never for a whole journal, whose signers must be declared
    /// by its own records): the records signed with them are listed as unanchored unless a
    /// given key or an anchor covers them.
    pub fn new(
        expect_genesis: bool,
        trusted_keys: Vec<Vec<u8>>,
        known_signers: Vec<DeclaredSigner>,
    ) -> Self {
        Verifier {
            expect_genesis,
            summary: VerifySummary {
                keys_trusted: !trusted_keys.is_empty(),
                ..VerifySummary::default()
            },
            trusted: trusted_keys,
            signers: known_signers
                .into_iter()
                .filter(|_| !expect_genesis)
                .map(|s| (s.id.clone(), Arc::new(KnownSigner::new(s, true))))
                .collect(),
            prev: None,
            total_counter: None,
            event_counters: HashMap::new(),
            series: HashMap::new(),
            used_signers: Vec::new(),
            trust: TrustBook::default(),
            requests: Some(HashMap::default()),
            periods: Periods::new(expect_genesis),
        }
    }

    /// Leaves the duplicate `request_id` check to the journal file: rows come from a database
    /// whose UNIQUE index `records_request` on `(register_id, request_id)` was checked
    /// ([`crate::journal::store::request_index_problem`]), and each row's `register_id` and
    /// `request_id` columns are checked against its signed body, so two records with the same
    /// register and request_id cannot be there. Keeps nothing per record.
    pub fn requests_unique_by_index(mut self) -> Self {
        self.requests = None;
        self
    }

    /// Checks the records against these outside anchors too (see [`Verifier::anchor_problem`]).
    pub fn with_anchors(mut self, anchors: Vec<Anchor>) -> Self {
        self.trust = TrustBook::new(anchors);
        self
    }

    /// The first anchor the records checked so far do not match or do not reach (call it when
    /// every record was checked).
    pub fn anchor_problem(&self) -> Option<AnchorError> {
        self.trust
            .problem(self.summary.first_seq, self.summary.last_seq)
    }

    /// Checks the next record from an export or a database, on this thread: its claimed sequence
    /// number, canonical bytes, stored hash and signature.
    pub fn check(
        &mut self,
        seq: u64,
        canonical: &[u8],
        hash: &[u8],
        signature: &[u8],
    ) -> Result<(), VerifyError> {
        self.check_prepared(&prepare(seq, canonical, hash, signature.to_vec()))
    }

    /// Checks records given in order, as [`Verifier::check`] would one after the other, but a
    /// bounded chunk at a time on every core ([`pipeline`]): each record's own bytes (hash,
    /// canonical form, envelope, claims) and the Ed25519 signatures (`verify_strict`, one per
    /// record, never a batch equation) on worker threads, the chain, signers, counters and series
    /// in order. The verdict (first bad record and problem) is the one-by-one verifier's; on `Ok`
    /// the verifier's state is the same as after checking each record with [`Verifier::check`].
    pub fn check_many<R: Sync>(
        &mut self,
        records: &[R],
        parts: impl Fn(&R) -> RecordParts<'_> + Sync,
    ) -> Result<(), VerifyError> {
        let guesses = self.guesses();
        let ((), verdict) = pipeline(
            |chunk: &[R]| {
                let mut prepared: Vec<Prepared> = chunk
                    .iter()
                    .map(|r| {
                        let p = parts(r);
                        prepare(p.seq, p.canonical, p.hash, p.signature.to_vec())
                    })
                    .collect();
                guesses.check(&mut prepared);
                prepared
            },
            |prepared: Vec<Prepared>| self.check_chunk(&prepared),
            |feed| {
                for chunk in records.chunks(CHUNK_RECORDS) {
                    if feed.send(chunk).is_err() {
                        break;
                    }
                }
            },
        );
        verdict
    }

    /// The signers known before the first record (an export header's), to guess keys from.
    pub(crate) fn guesses(&self) -> Guesses {
        Guesses::new(self.signers.values().cloned())
    }

    /// Checks a database row on this thread: the record itself, then that its index columns say
    /// what its canonical bytes say.
    pub fn check_stored(&mut self, r: &StoredRecord) -> Result<(), VerifyError> {
        self.check_prepared(&prepare_stored(r))
    }

    fn check_prepared(&mut self, p: &Prepared) -> Result<(), VerifyError> {
        let signer = self.before_signature(p)?;
        if !signer.verifies(&p.hash, &p.signature) {
            return fail(
                p.seq,
                format!("bad signature (signer {})", signer.declared.id),
            );
        }
        self.after_signature(p, &signer)
    }

    /// The checks of a record up to its signature (sequence, own bytes, chain, signer); returns
    /// the signer whose key the signature must verify with.
    pub(crate) fn before_signature(
        &mut self,
        p: &Prepared,
    ) -> Result<Arc<KnownSigner>, VerifyError> {
        let seq = p.seq;
        // 1. sequence
        match self.prev {
            Some((prev_seq, _)) if seq != prev_seq + 1 => {
                if seq > prev_seq + 1 {
                    return fail(
                        prev_seq + 1,
                        format!(
                            "record is missing (record {prev_seq} is followed by record {seq})"
                        ),
                    );
                }
                return fail(
                    seq,
                    format!("appears out of order or twice (after record {prev_seq})"),
                );
            }
            None if self.expect_genesis && seq != 1 => {
                return fail(
                    1,
                    format!("record is missing (the journal starts at record {seq})"),
                );
            }
            _ => {}
        }
        // 2., 3. and the syntax of 4: the record's own bytes
        let c = p.content.as_ref().map_err(Clone::clone)?;
        // 4. chain
        match self.prev {
            Some((prev_seq, expected)) if c.prev_hash != expected => {
                return fail(
                    seq,
                    format!(
                        "does not follow record {prev_seq}: its prev_hash differs from record {prev_seq}'s hash (a record was inserted, removed, changed or reordered)"
                    ),
                );
            }
            None if self.expect_genesis
                && (c.prev_hash != GENESIS_PREV_HASH || c.kind != RecordKind::JournalOpen) =>
            {
                return fail(
                    seq,
                    "the first record must be journal_open with a prev_hash of zeros",
                );
            }
            _ => {}
        }
        // 5. signer (the signature itself is checked by the caller)
        if let Some(declaration) = &c.declaration {
            let Some(declared) = declaration else {
                return fail(seq, "signer declaration is malformed");
            };
            self.signers.insert(
                declared.id.clone(),
                Arc::new(KnownSigner::new(declared.clone(), false)),
            );
        }
        let signer_id = c.signer_id.as_str();
        let Some(signer) = self.signers.get(signer_id).cloned() else {
            return fail(seq, undeclared(signer_id, self.expect_genesis));
        };
        if signer.declared.algorithm != "ed25519" {
            return fail(
                seq,
                format!(
                    "signer {signer_id} uses {:?}, which this verifier does not know",
                    signer.declared.algorithm
                ),
            );
        }
        if !self.trusted.is_empty() && !self.trusted.contains(&signer.key) {
            return fail(
                seq,
                format!(
                    "signer {signer_id}'s key {} is not among the trusted keys",
                    signer.declared.public_key
                ),
            );
        }
        Ok(signer)
    }

    /// The checks of a record after its signature (counters, numbers, index columns), taking the
    /// signature as good; moves the chain on.
    pub(crate) fn after_signature(
        &mut self,
        p: &Prepared,
        signer: &KnownSigner,
    ) -> Result<(), VerifyError> {
        let seq = p.seq;
        let c = p.content.as_ref().map_err(Clone::clone)?;
        if !self.used_signers.contains(&signer.declared) {
            self.used_signers.push(signer.declared.clone());
        }
        if signer.from_header {
            self.trust.header_signed(&signer.declared, seq);
        }
        // 6. counters and numbers
        if let Some(counters) = &c.counters {
            self.check_counters(seq, counters)?;
            self.check_series(seq, c.series.as_ref())?;
            self.summary.fiscal_events += 1;
        }
        if c.kind == RecordKind::Report {
            self.check_series(seq, c.series.as_ref())?;
        }
        // 7. what the record claims
        if let Some(problem) = &c.claim_problem {
            return fail(seq, format!("fiscal event: {problem}"));
        }
        match &c.report {
            Some(Ok(claim)) => {
                if let Err(problem) = self.periods.check_report(seq, claim) {
                    return fail(seq, problem);
                }
            }
            Some(Err(e)) => {
                return fail(
                    seq,
                    format!("report without a readable period and checkpoint: {e}"),
                );
            }
            None => {}
        }
        if let Some(r) = &c.request
            && let Some(requests) = &mut self.requests
            && let Some(earlier) = requests.insert(r.key, seq)
        {
            return fail(
                seq,
                format!(
                    "request_id {:?} of register {:?} was already used by record {earlier} (a register uses a request_id once)",
                    r.request_id, r.register
                ),
            );
        }
        self.periods.record(seq, p.hash, p.leaf, c.figures.clone());
        self.prev = Some((seq, p.hash));
        self.trust.record(seq, &p.hash);
        self.summary.records += 1;
        self.summary.first_seq.get_or_insert(seq);
        self.summary.last_seq = Some(seq);
        self.summary.last_hash = Some(hex::encode(p.hash));
        // index columns of a database row
        match &c.column_problem {
            Some(problem) => Err(problem.clone()),
            None => Ok(()),
        }
    }

    fn check_counters(&mut self, seq: u64, c: &Counters) -> Result<(), VerifyError> {
        let (Some(event), Some(total)) = (c.event, c.total) else {
            return fail(seq, "fiscal event without event and total counters");
        };
        let label = &c.label;
        let expect_from = |last: Option<u64>, genesis: bool| last.or(genesis.then_some(0));
        if let Some(last) = expect_from(self.total_counter, self.expect_genesis)
            && total != last + 1
        {
            return fail(
                seq,
                format!(
                    "total counter {total} follows {last} (a fiscal event is missing or repeated)"
                ),
            );
        }
        if let Some(last) =
            expect_from(self.event_counters.get(label).copied(), self.expect_genesis)
            && event != last + 1
        {
            return fail(
                seq,
                format!(
                    "{label} counter {event} follows {last} (a {label} event is missing or repeated)"
                ),
            );
        }
        self.total_counter = Some(total);
        self.event_counters.insert(label.clone(), event);
        Ok(())
    }

    /// Ticket and report numbers continue without gap within their series.
    fn check_series(
        &mut self,
        seq: u64,
        series: Option<&(String, u64)>,
    ) -> Result<(), VerifyError> {
        let expect_from = |last: Option<u64>, genesis: bool| last.or(genesis.then_some(0));
        if let Some((series, number)) = series {
            let number = *number;
            if let Some(last) = expect_from(
                self.series.get(series.as_str()).copied(),
                self.expect_genesis,
            ) && number != last + 1
            {
                return fail(
                    seq,
                    format!(
                        "ticket number {number} in series {series} follows {last} (the series is interrupted)"
                    ),
                );
            }
            self.series.insert(series.clone(), number);
        }
        Ok(())
    }

    /// Step 2 of [`parallel`] for a chunk of prepared records (step 1 done): the chain's checks
    /// in order, then the signatures step 1 could not answer. `Ok` when every record passed.
    pub(crate) fn check_chunk(&mut self, prepared: &[Prepared]) -> Result<(), VerifyError> {
        let mut pass = Pass::<VerifyError>::default();
        for (item, p) in prepared.iter().enumerate() {
            if let Err(e) = self.check_in_pass(&mut pass, item, p) {
                pass.stop = Some(e);
                break;
            }
        }
        pass.finish(|item| prepared.get(item))
    }

    /// One record of step 2: the checks before its signature, its signature (step 1's answer
    /// when it was checked with this signer's key, otherwise listed for [`Pass::finish`]), the
    /// checks after it.
    pub(crate) fn check_in_pass<E>(
        &mut self,
        pass: &mut Pass<E>,
        item: usize,
        p: &Prepared,
    ) -> Result<(), VerifyError> {
        let signer = self.before_signature(p)?;
        match p.checked.as_ref().and_then(|c| c.answer_for(&signer)) {
            Some(true) => {}
            Some(false) => {
                return fail(
                    p.seq,
                    format!("bad signature (signer {})", signer.declared.id),
                );
            }
            None => pass.checks.push(SignatureCheck {
                item,
                signer: signer.clone(),
            }),
        }
        self.after_signature(p, &signer)
    }

    /// Ends verification: the summary, with the anchors that matched and the keys left
    /// unanchored.
    pub fn finish(mut self) -> VerifySummary {
        self.summary.signers = self.used_signers;
        self.trust.settle(&mut self.summary, &self.trusted);
        self.summary
    }
}

/// The problem of a record whose signer no declaration names.
pub(crate) fn undeclared(signer_id: &str, whole: bool) -> String {
    if whole {
        format!(
            "signer {signer_id} is not declared in the chain (a signer never declared by a journal_open or signer_change record before this one; an export header's list does not count)"
        )
    } else {
        format!(
            "signer {signer_id} is not declared in the chain nor in the export header (a signer never declared)"
        )
    }
}

/// Verifies database rows given in order (a whole journal when the verifier expects the
/// genesis record), a bounded chunk at a time: rows are read on the calling thread, each chunk's
/// records checked on their own (bytes and signature, [`speculate`]) by a pool of worker threads
/// kept for the whole run, and the chain checked in order on one more thread ([`pipeline`]).
/// Stops at the first bad record. `E` is the error of the row source; when the source fails, the
/// rows it gave before are checked first (a bad record among them is the verdict, as when rows
/// were checked one by one).
pub fn verify_records<E: From<VerifyError> + Send>(
    verifier: &mut Verifier,
    for_each_row: impl FnOnce(&mut dyn FnMut(StoredRecord) -> Result<(), E>) -> Result<(), E>,
) -> Result<(), E> {
    let guesses = verifier.guesses();
    let (read, verdict) = pipeline(
        |rows: Vec<StoredRecord>| {
            let mut prepared: Vec<Prepared> = rows.iter().map(prepare_stored).collect();
            drop(rows);
            guesses.check(&mut prepared);
            prepared
        },
        |prepared: Vec<Prepared>| verifier.check_chunk(&prepared),
        |feed| {
            let mut chunk: Vec<StoredRecord> = Vec::with_capacity(CHUNK_RECORDS);
            let mut bytes = 0usize;
            let mut stopped = false;
            let read = for_each_row(&mut |r: StoredRecord| -> Result<(), E> {
                bytes += r.canonical.len();
                chunk.push(r);
                if chunk.len() >= CHUNK_RECORDS || bytes >= CHUNK_BYTES {
                    let rows = std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK_RECORDS));
                    bytes = 0;
                    if feed.send(rows) == Err(Stopped) {
                        // The in-order step's verdict is returned instead of this.
                        stopped = true;
                        return Err(E::from(VerifyError {
                            seq: 0,
                            problem: "verification stopped".into(),
                        }));
                    }
                }
                Ok(())
            });
            // Every row read (or the source failed after them): the rows before the verdict.
            if !stopped && !chunk.is_empty() {
                let _ = feed.send(std::mem::take(&mut chunk));
            }
            read
        },
    );
    verdict?;
    read
}
