//! How a schema-2 journal stores a record's canonical bytes: one zstd frame per record,
//! compressed with a dictionary kept in the journal file itself (table `dictionaries`).
//!
//! The canonical bytes are what is hashed and signed; the stored form only has to give them back
//! byte for byte. A frame that does not decompress, or decompresses to other bytes, is caught by
//! the verifier like any other change (the hash no longer matches).
//!
//! The dictionary a new journal starts with is a raw-content dictionary (no training): a few
//! records' worth of the envelope's and the bodies' member names and usual values
//! (`dictionary/records-1.txt`), with no product names or amounts of any benchmark. It is copied
//! into the journal when the journal is created, so that reading a record never depends on the
//! binary that reads it.

use rusqlite::{Connection, OptionalExtension};
use std::collections::HashMap;

/// The dictionary a new journal gets as dictionary 1.
pub(super) const FIRST_DICTIONARY: &[u8] = include_bytes!("../dictionary/records-1.txt");

/// Id of [`FIRST_DICTIONARY`] in a new journal.
pub(super) const FIRST_DICTIONARY_ID: i64 = 1;

/// zstd level: 3 (zstd's default). Level 1 gave about 30 bytes more per record for no measurable
/// gain in CPU, 9 and more cost several times the CPU (docs/benchmarks.md).
const LEVEL: i32 = 3;

/// Largest canonical record a frame may announce (a record is a few KiB; a Z report with many
/// articles some tens): anything larger is treated as a damaged frame.
const MAX_RECORD_BYTES: u64 = 16 << 20;

/// Why a stored record cannot be given back.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The record names a dictionary the journal does not hold.
    #[error("its dictionary {0} is not in the journal")]
    NoDictionary(i64),
    /// The stored frame is not a valid zstd frame for its dictionary.
    #[error("its stored bytes do not decompress: {0}")]
    Corrupt(String),
}

/// Compresses records for one journal (the writer keeps one).
pub struct Packer {
    dictionary: i64,
    compressor: zstd::bulk::Compressor<'static>,
}

impl std::fmt::Debug for Packer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Packer")
            .field("dictionary", &self.dictionary)
            .finish_non_exhaustive()
    }
}

fn io_error(e: std::io::Error) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(Box::new(e))
}

impl Packer {
    /// A packer with the journal's newest dictionary.
    pub fn for_journal(conn: &Connection) -> rusqlite::Result<Packer> {
        let (id, bytes): (i64, Vec<u8>) = conn.query_row(
            "SELECT id, bytes FROM dictionaries ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let mut compressor =
            zstd::bulk::Compressor::with_dictionary(LEVEL, &bytes).map_err(io_error)?;
        // The record's hash already guards its content; the frame carries its size so that
        // reading it allocates exactly once.
        compressor.include_checksum(false).map_err(io_error)?;
        compressor.include_dictid(false).map_err(io_error)?;
        compressor.include_contentsize(true).map_err(io_error)?;
        Ok(Packer {
            dictionary: id,
            compressor,
        })
    }

    /// The id of the dictionary this packer compresses with.
    pub fn dictionary(&self) -> i64 {
        self.dictionary
    }

    /// The stored form of `canonical`.
    pub fn pack(&mut self, canonical: &[u8]) -> rusqlite::Result<Vec<u8>> {
        self.compressor.compress(canonical).map_err(io_error)
    }
}

/// Decompresses records of one journal; loads each dictionary once, when first needed.
#[derive(Default)]
pub(super) struct Unpacker {
    decompressors: HashMap<i64, zstd::bulk::Decompressor<'static>>,
}

impl Unpacker {
    /// The canonical bytes of a record stored as `packed` with dictionary `dictionary`.
    pub(super) fn unpack(
        &mut self,
        conn: &Connection,
        dictionary: i64,
        packed: &[u8],
    ) -> Result<Result<Vec<u8>, UnpackError>, rusqlite::Error> {
        let decompressor = match self.decompressors.entry(dictionary) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let bytes: Option<Vec<u8>> = conn
                    .prepare_cached("SELECT bytes FROM dictionaries WHERE id = ?1")?
                    .query_row([dictionary], |r| r.get(0))
                    .optional()?;
                let Some(bytes) = bytes else {
                    return Ok(Err(UnpackError::NoDictionary(dictionary)));
                };
                let decompressor = match zstd::bulk::Decompressor::with_dictionary(&bytes) {
                    Ok(d) => d,
                    Err(e) => return Ok(Err(UnpackError::Corrupt(e.to_string()))),
                };
                e.insert(decompressor)
            }
        };
        let size = match zstd::zstd_safe::get_frame_content_size(packed) {
            Ok(Some(size)) if size <= MAX_RECORD_BYTES => size as usize,
            Ok(Some(size)) => {
                return Ok(Err(UnpackError::Corrupt(format!(
                    "the frame announces {size} bytes"
                ))));
            }
            _ => {
                return Ok(Err(UnpackError::Corrupt(
                    "the frame does not say its size".into(),
                )));
            }
        };
        Ok(decompressor
            .decompress(packed, size)
            .map_err(|e| UnpackError::Corrupt(e.to_string()))
            .and_then(|bytes| {
                if bytes.len() == size {
                    Ok(bytes)
                } else {
                    Err(UnpackError::Corrupt(format!(
                        "the frame gives {} bytes, not the {size} it announces",
                        bytes.len()
                    )))
                }
            }))
    }
}
