//! FDM-style result codes and field-level validation errors.

use serde::Serialize;
use std::fmt;

/// The result codes a Belgian FDM v1 answers with (reference §1.6). fdmd uses the same numbers in
/// its receipts so a POS written for a black box understands them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(into = "u16")]
pub enum FdmCode {
    /// 000: no error.
    Ok,
    /// 001: PIN accepted.
    PinAccepted,
    /// 101: journal storage is 90 % full (the operation succeeded).
    StorageNearlyFull,
    /// 102: this request was already handled; the stored result is returned.
    AlreadyHandled,
    /// 103: no record.
    NoRecord,
    /// 199: unspecified warning.
    UnspecifiedWarning,
    /// 201: no signing card, or the card is broken.
    NoCard,
    /// 202: the signing card must be initialised with its PIN.
    PinRequired,
    /// 203: the signing card is blocked.
    CardBlocked,
    /// 204: invalid PIN.
    InvalidPin,
    /// 205: journal storage is full; nothing can be signed.
    StorageFull,
    /// 206: unknown request identifier.
    UnknownIdentifier,
    /// 207: invalid data in the message.
    InvalidData,
    /// 208: the module is not operational.
    NotOperational,
    /// 209: the real-time clock is corrupt.
    ClockCorrupt,
    /// 210: the signing card is not compatible.
    IncompatibleCard,
    /// 299: unspecified error.
    Unspecified,
}

impl FdmCode {
    /// The three-digit number of the code.
    pub fn number(self) -> u16 {
        match self {
            FdmCode::Ok => 0,
            FdmCode::PinAccepted => 1,
            FdmCode::StorageNearlyFull => 101,
            FdmCode::AlreadyHandled => 102,
            FdmCode::NoRecord => 103,
            FdmCode::UnspecifiedWarning => 199,
            FdmCode::NoCard => 201,
            FdmCode::PinRequired => 202,
            FdmCode::CardBlocked => 203,
            FdmCode::InvalidPin => 204,
            FdmCode::StorageFull => 205,
            FdmCode::UnknownIdentifier => 206,
            FdmCode::InvalidData => 207,
            FdmCode::NotOperational => 208,
            FdmCode::ClockCorrupt => 209,
            FdmCode::IncompatibleCard => 210,
            FdmCode::Unspecified => 299,
        }
    }

    /// Looks a code up by its number.
    pub fn from_number(n: u16) -> Option<FdmCode> {
        ALL_CODES.iter().copied().find(|c| c.number() == n)
    }

    /// True for the 2xx codes: the operation did not happen.
    pub fn is_error(self) -> bool {
        self.number() >= 200
    }
}

const ALL_CODES: [FdmCode; 17] = [
    FdmCode::Ok,
    FdmCode::PinAccepted,
    FdmCode::StorageNearlyFull,
    FdmCode::AlreadyHandled,
    FdmCode::NoRecord,
    FdmCode::UnspecifiedWarning,
    FdmCode::NoCard,
    FdmCode::PinRequired,
    FdmCode::CardBlocked,
    FdmCode::InvalidPin,
    FdmCode::StorageFull,
    FdmCode::UnknownIdentifier,
    FdmCode::InvalidData,
    FdmCode::NotOperational,
    FdmCode::ClockCorrupt,
    FdmCode::IncompatibleCard,
    FdmCode::Unspecified,
];

impl From<FdmCode> for u16 {
    fn from(c: FdmCode) -> u16 {
        c.number()
    }
}

impl fmt::Display for FdmCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:03}", self.number())
    }
}

/// One problem with one field of an input, e.g. `lines[2].vat: unknown VAT letter "E"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// Path of the field at fault (`lines[2].vat`), or empty when the whole input is at fault.
    pub field: String,
    /// What is wrong, in words an installer understands.
    pub message: String,
}

impl FieldError {
    /// A problem with `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// All problems found in one input (code 207). Never empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationError {
    /// Every problem found, in input order.
    pub problems: Vec<FieldError>,
}

impl ValidationError {
    /// A validation error with one problem.
    pub fn single(field: impl Into<String>, message: impl Into<String>) -> Self {
        ValidationError {
            problems: vec![FieldError::new(field, message)],
        }
    }

    /// The first problem; the one a receipt names in `field`/`message`.
    pub fn first(&self) -> &FieldError {
        // Constructed only with at least one problem.
        &self.problems[0]
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// Collects field errors while validating; turns into a [`ValidationError`] when any were found.
#[derive(Debug, Default)]
pub struct Problems(Vec<FieldError>);

impl Problems {
    /// Records a problem.
    pub fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError::new(field, message));
    }

    /// Records the error of a `Result`, returning its value if it had one.
    pub fn take<T>(&mut self, r: Result<T, FieldError>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.0.push(e);
                None
            }
        }
    }

    /// Ok when nothing was recorded.
    pub fn finish(self) -> Result<(), ValidationError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ValidationError { problems: self.0 })
        }
    }

    /// True when nothing was recorded yet.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
