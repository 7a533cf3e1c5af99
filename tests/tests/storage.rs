//! Bytes on disk per record (issue 14): a journal of 3-line orders in the current layout takes at
//! most 1,100 bytes per record once checkpointed (file plus WAL), and less than half of what
//! the same orders take in a schema-1 journal.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use fdmd_core::journal::store::Layout;
use fdmd_tests::storage::{fill_as, measure};

const ORDERS: u64 = 1_500;

#[test]
fn a_schema_2_journal_takes_at_most_1100_bytes_per_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut per_record = Vec::new();
    for layout in [Layout::V2, Layout::V1] {
        let path = dir.path().join(format!("{layout:?}.sqlite"));
        fill_as(&path, ORDERS, 4, layout).unwrap();
        let size = measure(&path).unwrap();
        eprint!("{size}");
        assert_eq!(size.records, ORDERS + 1, "journal_open and the orders");
        assert_eq!(size.schema, layout.version());
        per_record.push(size.per_record());
    }
    let (v2, v1) = (per_record[0], per_record[1]);
    assert!(v2 <= 1_100.0, "{v2:.0} bytes per record");
    assert!(
        v2 * 2.0 < v1,
        "schema 2 {v2:.0} B, schema 1 {v1:.0} B per record"
    );
}
