//! Recording throughput into PostgreSQL: 100,000 synthetic settlements (three allocations
//! each, a final book of five bids each) recorded through the `Recorder` API in batches of
//! 512, as the outbox hands them out, each batch committed with the cursor.
//!
//! Run: `EMISSION_AUCTION_TEST_POSTGRES="host=127.0.0.1 port=5432 user=postgres dbname=test"
//! cargo bench --bench recorders`. Without the variable it prints a notice and does nothing.
//! It writes into a schema of its own and drops it afterwards. A ceiling measured in the same
//! run (as many transactions of as many one-bigint rows) shows what the database and its
//! fsync cost alone on the machine as loaded at the time.

use std::time::Instant;

use emission_auction::recorders::postgres::PostgresRecorder;
use std::collections::HashMap;
use std::sync::Arc;

use emission_auction::recorders::{Directory, sample};
use emission_auction::service::recorder::Recorder;

const SETTLEMENTS: u64 = 100_000;
const BATCH: usize = 512;
const WINNERS: u64 = 3;

fn main() {
    let Some(url) = std::env::var("EMISSION_AUCTION_TEST_POSTGRES").ok().filter(|u| !u.is_empty()) else {
        println!("NOTICE: EMISSION_AUCTION_TEST_POSTGRES is not set; skipping the PostgreSQL recorder benchmark");
        return;
    };
    // `cargo test --benches` runs benchmarks with --bench absent: keep that quick.
    let quick = !std::env::args().any(|a| a == "--bench");
    let count = if quick { 2_000 } else { SETTLEMENTS };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let mut suffix = [0u8; 4];
        getrandom::fill(&mut suffix).unwrap();
        let schema = format!("ea_bench_{}", hex::encode(suffix));
        // The auctions' terms and final books are made before the clock starts: in the server
        // the exchange holds them, and making them is the engine's work, not the recorder's.
        let settlements = sample::settlements(1, count, WINNERS);
        let ids = || settlements.iter().map(|s| s.settlement.auction_id);
        let specs: Arc<HashMap<_, _>> = Arc::new(ids().map(|id| (id, Arc::new(sample::spec(id)))).collect());
        let books: Arc<HashMap<_, _>> = Arc::new(ids().map(|id| (id, sample::book(id))).collect());
        let directory = Directory::fixed(
            Arc::new(move |id| specs.get(&id).cloned()),
            Arc::new(move |id| Box::pin(std::future::ready(books.get(&id).cloned()))),
        );
        let recorder = PostgresRecorder::new(&url, &schema, directory).unwrap();
        recorder.cursor().await.unwrap();
        let started = Instant::now();
        for batch in settlements.chunks(BATCH) {
            recorder.record(batch).await.unwrap();
        }
        let took = started.elapsed();
        assert_eq!(recorder.cursor().await.unwrap(), count);
        let rate = count as f64 / took.as_secs_f64();
        println!(
            "postgres recorder: {count} settlements ({} allocations, {} bids in their books) in batches of {BATCH}: {took:.2?}, {rate:.0} settlements/s",
            count * WINNERS,
            count * sample::BOOK
        );
        let (mut client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);

        // Ceiling, same run: as many transactions of as many rows, each row one bigint into a
        // table with only a primary key: what the database and its fsync cost alone.
        client.batch_execute(&format!("CREATE TABLE {schema}.ceiling (n bigint PRIMARY KEY)")).await.unwrap();
        let insert = client
            .prepare(&format!("INSERT INTO {schema}.ceiling SELECT * FROM unnest($1::int8[])"))
            .await
            .unwrap();
        let numbers: Vec<i64> = (1..=count as i64).collect();
        let started = Instant::now();
        for chunk in numbers.chunks(BATCH) {
            let tx = client.transaction().await.unwrap();
            tx.execute(&insert, &[&chunk]).await.unwrap();
            tx.commit().await.unwrap();
        }
        let ceiling = started.elapsed();
        println!(
            "ceiling: {count} one-bigint rows in transactions of {BATCH}: {ceiling:.2?}, {:.0} rows/s; recorder/ceiling time {:.1}x",
            count as f64 / ceiling.as_secs_f64(),
            took.as_secs_f64() / ceiling.as_secs_f64()
        );
        client.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")).await.unwrap();
    });
}
