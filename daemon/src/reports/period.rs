//! Periods of the journal for exports: a date range (local FDM dates) as a range of records.
//!
//! An export of the returned range (`journal::export::write_export`) holds everything needed to
//! verify it on its own: the records, their hashes and signatures, and in its header every
//! signer key declared up to its last record (`fdmctl verify FILE --key …`).

use super::ReportError;

/// Checks a `YYYY-MM-DD` date.
pub fn parse_date(text: &str) -> Result<chrono::NaiveDate, ReportError> {
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| ReportError::Invalid {
        field: "date".into(),
        message: format!("{text:?} is not a date YYYY-MM-DD"),
    })
}

/// The first and last record whose FDM date lies in `from..=to` (dates as `YYYY-MM-DD`), or
/// `None` when there is none. Records are in time order, so this is a contiguous range.
pub fn seq_range_of_dates(
    conn: &rusqlite::Connection,
    from: &str,
    to: &str,
) -> Result<Option<(u64, u64)>, ReportError> {
    let (from, to) = (parse_date(from)?, parse_date(to)?);
    if from > to {
        return Err(ReportError::Invalid {
            field: "date".into(),
            message: format!("the period ends ({to}) before it starts ({from})"),
        });
    }
    crate::journal::query::seq_range_of_dates(conn, &from.to_string(), &to.to_string())
        .map_err(|e| ReportError::Read(e.to_string()))
}
