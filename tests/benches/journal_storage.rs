//! Bytes on disk per record: fills a new journal with N `load_order`s (3 lines with the
//! payment: two articles, one VAT summary per letter), closes it (the WAL is checkpointed and
//! removed) and prints the file size per record with a breakdown per table and index.
//!
//! ```text
//! cargo bench -p fdmd-tests --bench journal_storage [-- N [THREADS] [--schema-1]]
//! ```
//! N defaults to 20000, THREADS (registers) to 4; `--schema-1` makes the journal in the layout
//! of journals made before schema 2, for comparison.
//! With `--test` (as `cargo bench -- --test` passes) it runs once with 500 orders.
#![allow(clippy::unwrap_used)] // benchmark set-up: a failed unwrap is a broken benchmark

use fdmd_core::journal::store::Layout;
use fdmd_tests::storage::{fill_as, measure};

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let smoke = args.iter().any(|a| a == "--test");
    let mut numbers = args.iter().filter_map(|a| a.parse::<u64>().ok());
    let orders = if smoke {
        500
    } else {
        numbers.next().unwrap_or(20_000)
    };
    let threads = numbers.next().unwrap_or(4);
    let layout = if args.iter().any(|a| a == "--schema-1") {
        Layout::V1
    } else {
        Layout::V2
    };
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = dir.path().join("journal.sqlite");
    let took = fill_as(&path, orders, threads, layout).unwrap();
    let size = measure(&path).unwrap();
    eprintln!(
        "journal_storage: {orders} orders from {threads} registers in {:.2} s ({:.0} orders/s)",
        took.as_secs_f64(),
        orders as f64 / took.as_secs_f64()
    );
    eprint!("journal_storage: {size}");
}
