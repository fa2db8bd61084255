//! Journal benchmarks: group commit with real fdatasync from 64 concurrent appenders, against
//! the disk's raw fdatasync rate measured in the same run (one small write + fdatasync each,
//! which is what a journal without group commit would do per record).
//!
//! Run: `cargo bench --bench journal`. The data directory is a temporary directory under
//! `$TMPDIR` (default /tmp); point TMPDIR at the disk you want to measure.

use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use emission_auction::journal::{FileJournal, Options};

const APPENDERS: u64 = 64;
/// A bid command is about this large once encoded.
const PAYLOAD: usize = 160;

fn group_commit(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut g = c.benchmark_group("journal");
    g.sample_size(10).measurement_time(Duration::from_secs(15)).throughput(Throughput::Elements(1));

    g.bench_function("ceiling_raw_fdatasync_per_record", |b| {
        let dir = tempfile::tempdir().unwrap();
        let file =
            std::fs::OpenOptions::new().create(true).truncate(true).write(true).open(dir.path().join("raw")).unwrap();
        file.set_len(64 << 20).unwrap();
        let record = [7u8; PAYLOAD];
        b.iter_custom(|n| {
            let start = Instant::now();
            for i in 0..n {
                file.write_all_at(&record, (i % 100_000) * PAYLOAD as u64).unwrap();
                file.sync_data().unwrap();
            }
            start.elapsed()
        })
    });

    let dir = tempfile::tempdir().unwrap();
    let (journal, _, stats) = FileJournal::open(dir.path(), Options::default()).unwrap();
    let journal = Arc::new(journal);
    g.bench_function("group_commit_64_appenders", |b| {
        b.iter_custom(|n| {
            let per_task = n.div_ceil(APPENDERS);
            let start = Instant::now();
            runtime.block_on(async {
                let tasks: Vec<_> = (0..APPENDERS)
                    .map(|_| {
                        let j = Arc::clone(&journal);
                        tokio::spawn(async move {
                            for _ in 0..per_task {
                                j.append(vec![7u8; PAYLOAD]).await.unwrap();
                            }
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await.unwrap();
                }
            });
            // Time per record, counting the extra records the rounding up added.
            start.elapsed().mul_f64(n as f64 / (per_task * APPENDERS) as f64)
        })
    });
    g.finish();
    let (records, syncs) = (stats.records.load(Ordering::Relaxed), stats.syncs.load(Ordering::Relaxed));
    println!(
        "journal/group_commit_64_appenders: {records} records in {syncs} fdatasyncs, {:.1} records per sync",
        records as f64 / syncs.max(1) as f64
    );
}

criterion_group!(benches, group_commit);
criterion_main!(benches);
