//! Journal benchmarks: group commit with real fdatasync from 64 concurrent appenders, against
//! the disk's raw fdatasync rate measured in the same run (one small write + fdatasync each,
//! which is what a journal without group commit would do per record).
//!
//! Run: `cargo bench --bench journal`. The data directory is a temporary directory under
//! `$TMPDIR` (default /tmp); point TMPDIR at the disk you want to measure.

use std::hint::black_box;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

mod support;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use emission_auction::domain::{AuctionId, BidId, Price, PricePolicy, Quantity, Timestamp};
use emission_auction::engine::{Command, Format, TieRule};
use emission_auction::journal::{Journal, Options, SyncPolicy};
use emission_auction::service::clock::ManualClock;
use emission_auction::service::entry::Entry;
use emission_auction::service::{Exchange, Fingerprint, Origin};
use support::{T0, bidders, reserve_auction};

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
    let (journal, _, stats) = Journal::open(&dir.path().join("journal"), Options::default()).unwrap();
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

const REPLAYED: u64 = 1_000_000;

/// A journal holding one auction and 1,000,000 accepted bids from 2,000 bidders.
fn journal_of_bids(runtime: &tokio::runtime::Runtime, dir: &std::path::Path) {
    let auction = reserve_auction(Format::SealedUniformPrice, TieRule::TimePriority, 500_000);
    let bidders = bidders(2000);
    let (journal, _, _) = Journal::open(dir, Options { sync: SyncPolicy::Never, ..Options::default() }).unwrap();
    let journal = Arc::new(journal);
    runtime.block_on(async {
        journal
            .append(
                Entry::Create { spec: Box::new(auction.spec().clone()), seed: None, origin: None }.encode().unwrap(),
            )
            .await
            .unwrap();
        for chunk in 0..(REPLAYED / 10_000) {
            // Reserve in order so the journal keeps the bids in arrival order.
            let mut pending = Vec::with_capacity(10_000);
            for i in chunk * 10_000..(chunk + 1) * 10_000 {
                let command = Command::PlaceBid {
                    bidder: bidders[(i % 2000) as usize],
                    bid: BidId::new(i + 1),
                    price: Some(Price::from_units(1_800_000 + (i * 7919 % 2000) as i64 * 50).unwrap()),
                    quantity: Some(Quantity::from_units((i % 5 + 1) as i64 * 1000).unwrap()),
                    eligibility: None,
                };
                // As a terminal sends it: its principal and a UUID-sized request id.
                let origin = Origin {
                    principal: format!("bidder-{:04}", i % 2000),
                    request_id: format!("7f3e2c1a-0000-4000-8000-{i:012}"),
                    fingerprint: Fingerprint::of("PlaceBid", &i.to_le_bytes()),
                };
                let entry = Entry::Apply {
                    at: Timestamp::from_micros(T0 + 1 + i as i64),
                    auction: AuctionId::new(1),
                    command,
                    origin: Some(origin),
                    settled: None,
                };
                pending.push(journal.reserve().await.unwrap().submit(entry.encode().unwrap()));
            }
            for p in pending {
                p.wait().await.unwrap();
            }
        }
    });
}

fn replay(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    journal_of_bids(&runtime, &dir.path().join("journal"));
    let mut g = c.benchmark_group("journal");
    g.sample_size(10).measurement_time(Duration::from_secs(30)).throughput(Throughput::Elements(REPLAYED + 1));
    // From the files to a running exchange: read and check every segment (CRC32C, sequence,
    // hash chain), decode every entry, apply it to the core, rebuild the request table.
    g.bench_function("recover_1m_commands_from_files", |b| {
        b.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                let start = Instant::now();
                let recovered = emission_auction::journal::recover(&dir.path().join("journal")).unwrap();
                let exchange = runtime.block_on(async {
                    let clock = Arc::new(ManualClock::new(Timestamp::from_micros(T0)));
                    Exchange::recover(PricePolicy::default(), clock, memory_journal(), Vec::new(), &recovered)
                        .await
                        .unwrap()
                });
                total += start.elapsed();
                runtime.block_on(exchange.shutdown());
            }
            total
        })
    });
    // Replay alone, from records already read and checked: decode, apply, rebuild the request
    // table, start the exchange.
    let recovered = emission_auction::journal::recover(&dir.path().join("journal")).unwrap();
    g.bench_function("replay_1m_commands", |b| {
        b.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                let start = Instant::now();
                let exchange = runtime.block_on(async {
                    let clock = Arc::new(ManualClock::new(Timestamp::from_micros(T0)));
                    Exchange::recover(PricePolicy::default(), clock, memory_journal(), Vec::new(), &recovered)
                        .await
                        .unwrap()
                });
                total += start.elapsed();
                runtime.block_on(exchange.shutdown());
            }
            total
        })
    });
    // Ceiling: the same commands, already decoded, applied straight to the core.
    let commands: Vec<(Timestamp, Command)> = recovered
        .entries()
        .skip(1)
        .map(|(_, payload)| match Entry::decode(payload).unwrap() {
            Entry::Apply { at, command, .. } => (at, command),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    g.bench_function("replay_ceiling_core_apply_1m", |b| {
        b.iter_batched(
            || (reserve_auction(Format::SealedUniformPrice, TieRule::TimePriority, 500_000), commands.clone()),
            |(mut auction, commands)| {
                for (at, command) in commands {
                    black_box(auction.apply_command(at, command).is_ok());
                }
                auction
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, group_commit, replay);
criterion_main!(benches);

/// An empty journal in memory, for an exchange recovered from records read elsewhere.
fn memory_journal() -> Arc<Journal> {
    Arc::new(Journal::memory(Options { sync: SyncPolicy::Never, ..Options::default() }).unwrap().0)
}
