//! A rough ingest rate, not a benchmark of the targets: one box's journal of
//! `FDMD_BO_RATE_ORDERS` orders (2,000 by default) ingested in segments of 1,000 records into a
//! throwaway cluster on this machine. Ignored by default; run with
//! `cargo test -p fdmd-backoffice --release --test rate -- --ignored --nocapture`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::fdmbox::FdmBox;
use std::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; prints records per second"]
async fn ingest_rate() {
    let orders: u64 = std::env::var("FDMD_BO_RATE_ORDERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let office = common::Office::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut b = FdmBox::new(&dir.path().join("a"), [7; 32]);
    b.orders(orders);
    let credential = office.enrol("a", vec![b.public_key()]).await;
    let last = b.last_seq();
    let segments = common::segments(&b, 1, last, 1_000);
    let start = Instant::now();
    for s in &segments {
        let (status, answer) = office.push("a", &credential, s).await;
        assert_eq!(status, 200, "{answer}");
    }
    let took = start.elapsed();
    println!(
        "ingested {last} records in {} segments in {:.2} s: {:.0} records/s (verified and stored)",
        segments.len(),
        took.as_secs_f64(),
        last as f64 / took.as_secs_f64()
    );
    let start = Instant::now();
    let _ = office
        .get_json("/v1/turnover?from=2000-01-01&to=2100-12-31")
        .await;
    println!(
        "chain-wide turnover report: {:.1} ms",
        start.elapsed().as_secs_f64() * 1000.0
    );
    office.stop().await;
}
