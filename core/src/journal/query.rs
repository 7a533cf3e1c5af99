//! Reading the journal: the queries the daemon, reports and tools make, so that no SQL on the
//! `records` table lives outside the journal module.
//!
//! Every function takes a read-only connection ([`open_read_only`]); records come back as
//! [`StoredRecord`]s decoded by the store, whatever the file's layout. To read several things
//! from one consistent state while the writer goes on, wrap them in [`in_snapshot`].

use super::record::RecordKind;
pub use super::store::{
    FiscalEventsOf, Heads, StoredRecord, find_request, fiscal_days, for_each_in_range, load_heads,
    open_read_only, record, records_of_kind,
};
use rusqlite::{Connection, OptionalExtension};

/// Runs `read` inside one read transaction: every query in it sees the same records, however
/// many the writer commits meanwhile.
pub fn in_snapshot<T, E: From<rusqlite::Error>>(
    conn: &Connection,
    read: impl FnOnce(&Connection) -> Result<T, E>,
) -> Result<T, E> {
    conn.execute_batch("BEGIN")?;
    let result = read(conn);
    // A read transaction has nothing to keep: ending it cannot lose data.
    let _ = conn.execute_batch("COMMIT");
    result
}

/// The sequence number of the last record (0 for an empty journal).
pub fn last_seq(conn: &Connection) -> rusqlite::Result<u64> {
    conn.query_row("SELECT coalesce(max(seq), 0) FROM records", [], |r| {
        r.get::<_, i64>(0)
    })
    .map(|n| n.max(0) as u64)
}

/// The record holding the highest number of a numbering `series` (e.g. the last Z report of a
/// register), if the series has one.
pub fn last_in_series(conn: &Connection, series: &str) -> rusqlite::Result<Option<StoredRecord>> {
    let seq: Option<i64> = conn
        .query_row(
            "SELECT seq FROM records WHERE series = ?1 ORDER BY series_number DESC LIMIT 1",
            [series],
            |r| r.get(0),
        )
        .optional()?;
    match seq {
        Some(s) => record(conn, s as u64),
        None => Ok(None),
    }
}

/// The first and last sequence numbers of the records whose FDM date (the `YYYY-MM-DD` of their
/// FDM time, in the time's own offset) is in `from..=to`; `None` when there are none.
pub fn seq_range_of_dates(
    conn: &Connection,
    from: &str,
    to: &str,
) -> rusqlite::Result<Option<(u64, u64)>> {
    let range: Option<(Option<i64>, Option<i64>)> = conn
        .query_row(
            "SELECT min(seq), max(seq) FROM records WHERE substr(time, 1, 10) BETWEEN ?1 AND ?2",
            [from, to],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    Ok(match range {
        Some((Some(a), Some(b))) => Some((a as u64, b as u64)),
        _ => None,
    })
}

/// The first and last sequence numbers of the journal (`None` when it is empty): two lookups
/// at the ends of the primary key.
pub fn seq_bounds(conn: &Connection) -> rusqlite::Result<Option<(u64, u64)>> {
    let first: Option<i64> = conn
        .query_row("SELECT seq FROM records ORDER BY seq LIMIT 1", [], |r| {
            r.get(0)
        })
        .optional()?;
    let last: Option<i64> = conn
        .query_row(
            "SELECT seq FROM records ORDER BY seq DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .optional()?;
    Ok(match (first, last) {
        (Some(a), Some(b)) => Some((a.max(0) as u64, b.max(0) as u64)),
        _ => None,
    })
}

/// The sequence number and FDM time of the first record with `seq >= from` (one primary-key
/// seek).
pub fn time_at_or_after(conn: &Connection, from: u64) -> rusqlite::Result<Option<(u64, String)>> {
    conn.query_row(
        "SELECT seq, time FROM records WHERE seq >= ?1 ORDER BY seq LIMIT 1",
        [from.min(i64::MAX as u64) as i64],
        |r| Ok((r.get::<_, i64>(0)?.max(0) as u64, r.get::<_, String>(1)?)),
    )
    .optional()
}

/// The first record whose FDM time, as text, is at or after `from` (a date `YYYY-MM-DD`, or a
/// longer prefix such as `YYYY-MM-DDTHH`): its sequence number, or `None` when every record is
/// earlier. Records never go back in time (no record is signed with a time before the last
/// one's), so this bisects the sequence numbers: about 2·log2(records) primary-key seeks,
/// whatever the journal's age, where a condition on `time` would read every row.
pub fn first_seq_at_or_after_time(conn: &Connection, from: &str) -> rusqlite::Result<Option<u64>> {
    let Some((mut lo, last)) = seq_bounds(conn)? else {
        return Ok(None);
    };
    match time_at_or_after(conn, last)? {
        Some((_, time)) if time.as_str() >= from => {}
        _ => return Ok(None),
    }
    // With at(x) the first record at or after x (monotone in x), find the least x in lo..=hi
    // whose record qualifies; at(hi) qualifies throughout. A record that does not qualify lets
    // the search skip any gap in the numbering up to it.
    let mut hi = last;
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match time_at_or_after(conn, mid)? {
            Some((_, time)) if time.as_str() >= from => hi = mid,
            Some((seq, _)) => lo = seq.max(mid) + 1,
            None => lo = mid + 1,
        }
    }
    Ok(time_at_or_after(conn, lo)?.map(|(seq, _)| seq))
}

/// The first and last sequence numbers of the records whose FDM date lies in `from..=to`
/// (`YYYY-MM-DD`), found by bisection ([`first_seq_at_or_after_time`]): the same answer as
/// [`seq_range_of_dates`] without reading every row. `None` when there are none.
pub fn seq_range_of_dates_bisected(
    conn: &Connection,
    from: &str,
    to: &str,
) -> rusqlite::Result<Option<(u64, u64)>> {
    let Some(first) = first_seq_at_or_after_time(conn, from)? else {
        return Ok(None);
    };
    // Every time of the date `to` sorts before `to` followed by `U` ("YYYY-MM-DDT…" < "…U").
    let after_to = format!("{to}U");
    let last = match first_seq_at_or_after_time(conn, &after_to)? {
        // The record before it (there may be holes in the numbering).
        Some(next) => conn
            .query_row(
                "SELECT seq FROM records WHERE seq < ?1 ORDER BY seq DESC LIMIT 1",
                [next.min(i64::MAX as u64) as i64],
                |r| r.get::<_, i64>(0),
            )
            .optional()?
            .map_or(0, |s| s.max(0) as u64),
        None => last_seq(conn)?,
    };
    let Some((first, time)) = time_at_or_after(conn, first)? else {
        return Ok(None);
    };
    Ok((first <= last && time.get(..10).is_some_and(|d| d <= to)).then_some((first, last)))
}

/// Calls `f` with every record of `kind` dated (FDM date) in `year`, in order.
pub fn for_each_of_kind_in_year<E: From<rusqlite::Error>>(
    conn: &Connection,
    kind: RecordKind,
    year: i32,
    mut f: impl FnMut(StoredRecord) -> Result<(), E>,
) -> Result<(), E> {
    let (from, to) = (format!("{year:04}-01-01"), format!("{year:04}-12-31"));
    let Some((first, last)) = seq_range_of_dates(conn, &from, &to)? else {
        return Ok(());
    };
    let prefix = format!("{year:04}-");
    for_each_in_range(conn, first, last, |r| {
        if r.kind == kind.as_str() && r.time.starts_with(&prefix) {
            f(r)
        } else {
            Ok(())
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::journal::{Entry, Journal, JournalConfig};
    use crate::signer::SoftwareSigner;
    use serde_json::{Map, json};
    use std::sync::Arc;

    fn journal_with(entries: usize) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.sqlite");
        let signer = Arc::new(SoftwareSigner::from_seed([3; 32]));
        let journal = Journal::open(JournalConfig::new(&path, "DEVFDMD0001"), signer).unwrap();
        for i in 0..entries {
            let mut body = Map::new();
            body.insert("n".into(), json!(i));
            let mut entry = Entry::new(RecordKind::MoneyMovement, body);
            entry.series = Some("money".into());
            journal.append_blocking(entry).unwrap();
        }
        journal.close();
        (dir, path)
    }

    fn plan(conn: &Connection, of: FiscalEventsOf<'_>) -> String {
        let layout = crate::journal::store::layout(conn).unwrap();
        let q = format!(
            "EXPLAIN QUERY PLAN {}",
            crate::journal::store::fiscal_days_sql(layout, of)
        );
        let mut stmt = conn.prepare(&q).unwrap();
        let rows: Vec<String> = match of {
            FiscalEventsOf::AllRegisters => stmt
                .query_map([5], |r| r.get::<_, String>(3))
                .unwrap()
                .map(|r| r.unwrap())
                .collect(),
            FiscalEventsOf::RegisterAfter(r) | FiscalEventsOf::RegisterByIndex(r) => stmt
                .query_map(rusqlite::params![5, r], |r| r.get::<_, String>(3))
                .unwrap()
                .map(|r| r.unwrap())
                .collect(),
        };
        rows.join("; ")
    }

    #[test]
    fn fiscal_days_read_a_range_or_one_registers_index_never_the_whole_journal() {
        let (_dir, path) = journal_with(3);
        let conn = open_read_only(&path).unwrap();
        // The plans the two ways rely on (the query text is the store's).
        let after = plan(&conn, FiscalEventsOf::RegisterAfter("till-1"));
        assert!(after.contains("INTEGER PRIMARY KEY (rowid>?)"), "{after}");
        let by_index = plan(&conn, FiscalEventsOf::RegisterByIndex("till-1"));
        assert!(
            by_index.contains("records_request (register_id=?"),
            "{by_index}"
        );
        let all = plan(&conn, FiscalEventsOf::AllRegisters);
        assert!(all.contains("INTEGER PRIMARY KEY (rowid>?)"), "{all}");
        // And they read what they should: no fiscal events here.
        for of in [
            FiscalEventsOf::AllRegisters,
            FiscalEventsOf::RegisterAfter("till-1"),
            FiscalEventsOf::RegisterByIndex("till-1"),
        ] {
            assert!(fiscal_days(&conn, of, 0).unwrap().is_empty());
        }
    }

    #[test]
    fn bisection_finds_every_date_across_gaps_as_a_scan_does() {
        // Only the two columns bisection reads: three days, uneven, with holes in the numbers.
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE records (seq INTEGER PRIMARY KEY, time TEXT NOT NULL)")
            .unwrap();
        let mut rows = Vec::new();
        for (i, seq) in (1..=200u64).filter(|s| s % 7 != 3).enumerate() {
            let day = match i {
                0..=9 => "2026-03-28",
                10..=139 => "2026-03-29",
                _ => "2026-03-31",
            };
            let time = format!("{day}T{:02}:{:02}:00+01:00", i % 24, i % 60);
            conn.execute(
                "INSERT INTO records VALUES (?1, ?2)",
                rusqlite::params![seq as i64, time],
            )
            .unwrap();
            rows.push((seq, day));
        }
        let scan = |from: &str, to: &str| {
            let inside: Vec<u64> = rows
                .iter()
                .filter(|(_, d)| *d >= from && *d <= to)
                .map(|(s, _)| *s)
                .collect();
            inside.first().map(|f| (*f, *inside.last().unwrap()))
        };
        let days = [
            "2026-03-27",
            "2026-03-28",
            "2026-03-29",
            "2026-03-30",
            "2026-03-31",
            "2026-04-01",
        ];
        for from in days {
            for to in days.iter().filter(|t| **t >= from) {
                assert_eq!(
                    seq_range_of_dates_bisected(&conn, from, to).unwrap(),
                    scan(from, to),
                    "{from}..={to}"
                );
            }
        }
    }

    #[test]
    fn last_seq_series_and_dates_agree_with_the_records() {
        let (_dir, path) = journal_with(5);
        let conn = open_read_only(&path).unwrap();
        let last = last_seq(&conn).unwrap();
        assert!(last >= 5, "journal_open and the five entries");
        let top = last_in_series(&conn, "money").unwrap().unwrap();
        assert_eq!(top.seq, last);
        assert!(last_in_series(&conn, "other").unwrap().is_none());
        let today = &top.time[..10];
        assert_eq!(
            seq_range_of_dates(&conn, today, today).unwrap(),
            Some((1, last))
        );
        assert_eq!(
            seq_range_of_dates(&conn, "1999-01-01", "1999-12-31").unwrap(),
            None
        );
        let year: i32 = top.time[..4].parse().unwrap();
        let mut seen = Vec::new();
        for_each_of_kind_in_year(&conn, RecordKind::MoneyMovement, year, |r| {
            seen.push(r.seq);
            Ok::<_, rusqlite::Error>(())
        })
        .unwrap();
        assert_eq!(seen.len(), 5);
        // Bisection agrees with the scan, and with every record's own time.
        assert_eq!(
            seq_range_of_dates_bisected(&conn, today, today).unwrap(),
            Some((1, last))
        );
        assert_eq!(
            seq_range_of_dates_bisected(&conn, "1999-01-01", "1999-12-31").unwrap(),
            None
        );
        assert_eq!(
            seq_range_of_dates_bisected(&conn, "2999-01-01", "2999-12-31").unwrap(),
            None
        );
        assert_eq!(first_seq_at_or_after_time(&conn, "1999").unwrap(), Some(1));
        assert_eq!(first_seq_at_or_after_time(&conn, "2999").unwrap(), None);
        assert_eq!(seq_bounds(&conn).unwrap(), Some((1, last)));
        let in_snap: u64 = in_snapshot(&conn, last_seq).unwrap();
        assert_eq!(in_snap, last);
    }
}
