//! Bytes on disk per record: fills a new journal with N `load_order`s (3 lines with the
//! payment: two articles, one VAT summary per letter), closes it (the WAL is checkpointed and
//! removed) and prints the file size per record with a breakdown per table and index.
//!
//! ```text
//! cargo bench -p fdmd-tests --bench journal_storage [-- N [THREADS]]   # default 20000 4
//! ```
//! With `--test` (as `cargo bench -- --test` passes) it runs once with 500 orders.
#![allow(clippy::unwrap_used)] // benchmark set-up: a failed unwrap is a broken benchmark

use fdmd_tests::storage::{fill, measure};

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
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = dir.path().join("journal.sqlite");
    let took = fill(&path, orders, threads).unwrap();
    let size = measure(&path).unwrap();
    eprintln!(
        "journal_storage: {orders} orders from {threads} registers in {:.2} s ({:.0} orders/s)",
        took.as_secs_f64(),
        orders as f64 / took.as_secs_f64()
    );
    eprint!("journal_storage: {size}");
}
