//! The PostgreSQL and NATS JetStream recorders against the real services.
//!
//! They run when `EMISSION_AUCTION_TEST_POSTGRES` (a connection string such as
//! `host=127.0.0.1 port=5432 user=postgres dbname=test`) and `EMISSION_AUCTION_TEST_NATS`
//! (`nats://127.0.0.1:4222`) are set, as `.ci/run` does, and otherwise print a notice and pass,
//! so `cargo test` works on a laptop without the services. Each test uses a schema or stream of
//! its own, with a random suffix, and removes it at the end.
//!
//! - `postgres_*` and `nats_*`: the recorder API on synthetic settlements: idempotent replays,
//!   cursors, what the tables and subjects hold.
//! - `thousand_auctions_*`: the release binary with jsonl + postgres + nats recorders settles
//!   1,000 auctions from concurrent terminals while the PostgreSQL connection is terminated
//!   mid-run and the server is SIGKILLed and restarted; afterwards the database holds each
//!   settlement once, allocations summing to its totals, and the stream holds each settlement
//!   id once, in order.
//! - `a_recorder_down_delays_no_bid`: bid latency with an unreachable recorder against a run
//!   with it up.

use std::ffi::OsStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use emission_auction::auth::{Principal, Principals, Role};
use emission_auction::cli::client::Terminal;
use emission_auction::domain::{CreditCode, Timestamp};
use emission_auction::proto as pb;
use emission_auction::recorders::nats::NatsRecorder;
use emission_auction::recorders::postgres::{self, PostgresRecorder};
use emission_auction::recorders::{Directory, sample};
use emission_auction::service::RecordedSettlement;
use emission_auction::service::clock::{Clock, SystemClock};
use emission_auction::service::recorder::{JsonLinesRecorder, Recorder};
use tokio_postgres::NoTls;

use crate::crash::{Server, release_binary};
use crate::grpc::{create, reserve_lot};

fn postgres_url() -> Option<String> {
    let url = std::env::var("EMISSION_AUCTION_TEST_POSTGRES").ok().filter(|u| !u.is_empty());
    if url.is_none() {
        println!("NOTICE: EMISSION_AUCTION_TEST_POSTGRES is not set; skipping this PostgreSQL recorder test");
    }
    url
}

fn nats_url() -> Option<String> {
    let url = std::env::var("EMISSION_AUCTION_TEST_NATS").ok().filter(|u| !u.is_empty());
    if url.is_none() {
        println!("NOTICE: EMISSION_AUCTION_TEST_NATS is not set; skipping this NATS recorder test");
    }
    url
}

/// A short random suffix for schema, stream and application names.
fn suffix() -> String {
    let mut bytes = [0u8; 5];
    getrandom::fill(&mut bytes).unwrap();
    hex::encode(bytes)
}

async fn pg(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.expect("the test database answers");
    tokio::spawn(connection);
    client
}

async fn drop_schema(url: &str, schema: &str) {
    pg(url).await.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).await.unwrap();
}

async fn js(url: &str) -> jetstream::Context {
    jetstream::new(async_nats::connect(url).await.expect("the test NATS answers"))
}

/// Every settlement in the stream's settlement subjects, in stream order: (subject, sequence,
/// message id).
async fn stream_settlements(url: &str, stream: &str, prefix: &str) -> Vec<(String, u64, String)> {
    let js = js(url).await;
    let mut stream = js.get_stream(stream).await.unwrap();
    let last = stream.info().await.unwrap().state.last_sequence;
    let mut out = Vec::new();
    for seq in 1..=last {
        let Ok(message) = stream.get_raw_message(seq).await else { continue };
        if !message.subject.starts_with(&format!("{prefix}.settlements.")) {
            continue;
        }
        let recorded: RecordedSettlement = serde_json::from_slice(&message.payload).unwrap();
        let id = message.headers.get("Nats-Msg-Id").map(|v| v.as_str().to_owned()).unwrap_or_default();
        out.push((message.subject.to_string(), recorded.sequence, id));
    }
    out
}

/// One bid as the `books` table keeps it: bid id, bidder, pseudonym, price in fen, quantity in
/// kg, when its last version was taken (microseconds since the epoch), state.
type BookBid = (String, String, Option<String>, i64, i64, i64, String);

/// Checks what the schema holds: each settlement of `expected` exactly once, as it was, with
/// allocations that sum to its totals; the cursor at the last one.
async fn check_database(url: &str, schema: &str, expected: &[RecordedSettlement]) {
    let db = pg(url).await;
    let rows = db
        .query(
            &format!(
                "SELECT s.sequence, s.auction_id, s.status, s.sold_kg, s.total_amount_fen, s.journal_seq,
                        s.journal_hash, s.settled_at, count(a.position)
                   FROM {schema}.settlements s LEFT JOIN {schema}.allocations a USING (sequence)
                  GROUP BY s.sequence ORDER BY s.sequence"
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), expected.len(), "each settlement exactly once");
    for (row, want) in rows.iter().zip(expected) {
        let s = &want.settlement;
        let settled_at = std::time::UNIX_EPOCH + Duration::from_micros(s.settled_at.as_micros() as u64);
        let held: (i64, String, String, i64, i64, i64, String, std::time::SystemTime, i64) = (
            row.get(0),
            row.get(1),
            row.get(2),
            row.get(3),
            row.get(4),
            row.get(5),
            row.get(6),
            row.get(7),
            row.get(8),
        );
        let status = serde_json::to_value(s.status).unwrap().as_str().unwrap().to_owned();
        let wanted = (
            want.sequence as i64,
            s.auction_id.to_string(),
            status,
            s.sold.units(),
            s.total_amount.units(),
            want.journal.seq as i64,
            want.journal.hash.clone(),
            settled_at,
            s.allocations.len() as i64,
        );
        assert_eq!(held, wanted, "settlement {} as recorded", want.sequence);
    }
    let mismatched = db
        .query(
            &format!(
                "SELECT s.sequence FROM {schema}.settlements s
                   LEFT JOIN (SELECT sequence, sum(quantity_kg) q, sum(amount_fen) a, sum(buyer_fee_fen) b,
                                     sum(seller_fee_fen) f
                                FROM {schema}.allocations GROUP BY sequence) x USING (sequence)
                  WHERE coalesce(x.q, 0) <> s.sold_kg OR coalesce(x.a, 0) <> s.total_amount_fen
                     OR coalesce(x.b, 0) <> s.total_buyer_fee_fen OR coalesce(x.f, 0) <> s.total_seller_fee_fen"
            ),
            &[],
        )
        .await
        .unwrap();
    assert!(mismatched.is_empty(), "allocations that do not sum to their settlement: {mismatched:?}");
    // Each auction's final book is there for audit: from its bids' fields an auditor recomputes
    // their leaves and the settlement's book root, which is the one the engine computed.
    let books = db
        .query(&format!("SELECT b.sequence, b.auction_id, b.book::text, s.book_root FROM {schema}.books b JOIN {schema}.settlements s USING (sequence) ORDER BY b.sequence"), &[])
        .await
        .unwrap();
    assert_eq!(books.len(), expected.len(), "one book per settlement");
    let mut bids_held = 0;
    for (row, want) in books.iter().zip(expected) {
        let (sequence, auction_id, book, recorded): (i64, String, String, Option<String>) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        assert_eq!(sequence as u64, want.sequence);
        assert_eq!(recorded, want.settlement.book_root, "settlement {sequence}: the book root as settled");
        let bids: Vec<BookBid> = serde_json::from_str(&book).unwrap();
        bids_held += bids.len() as i64;
        let leaves: Vec<[u8; 32]> = bids
            .into_iter()
            .map(|(bid_id, bidder, pseudonym, price_fen, quantity_kg, received_at, state)| {
                emission_auction::domain::receipt::ReceiptFields {
                    auction_id: auction_id.clone(),
                    bid_id,
                    bidder,
                    price: emission_auction::domain::format_units(price_fen, 2),
                    quantity: emission_auction::domain::format_units(quantity_kg, 3),
                    received_at,
                    state,
                    pseudonym: pseudonym.unwrap_or_default(),
                }
                .leaf()
            })
            .collect();
        let root = hex::encode(emission_auction::domain::receipt::merkle_root(&leaves));
        assert_eq!(Some(root), recorded, "settlement {sequence}: the recorded bids give the recorded root");
    }
    // The view shows the same bids a row each.
    let (viewed, positions): (i64, i64) = {
        let row = db
            .query_one(&format!("SELECT count(*), count(DISTINCT (sequence, position)) FROM {schema}.bids"), &[])
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!((viewed, positions), (bids_held, bids_held));
    let cursor: i64 =
        db.query_one(&format!("SELECT sequence FROM {schema}.recorder_cursor"), &[]).await.unwrap().get(0);
    assert_eq!(cursor as u64, expected.last().map_or(0, |s| s.sequence));
}

#[tokio::test]
async fn postgres_records_each_settlement_once_and_replays_are_no_ops() {
    let Some(url) = postgres_url() else { return };
    let schema = format!("ea_test_{}", suffix());
    let recorder = PostgresRecorder::new(&url, &schema, sample::directory()).unwrap();
    assert_eq!(recorder.cursor().await.unwrap(), 0, "a new schema holds nothing");
    let all = sample::settlements(1, 300, 3);
    recorder.record(&all[..200]).await.unwrap();
    assert_eq!(recorder.cursor().await.unwrap(), 200);
    // A retried batch that overlaps what is held changes nothing and adds the rest.
    recorder.record(&all[150..]).await.unwrap();
    recorder.record(&all).await.unwrap();
    assert_eq!(recorder.cursor().await.unwrap(), 300);
    let expected: Vec<RecordedSettlement> = all.iter().map(|s| (**s).clone()).collect();
    check_database(&url, &schema, &expected).await;

    // One enterprise's deals, bought and sold, join on its code (一企一档).
    let db = pg(&url).await;
    let buyer = CreditCode::with_check_digit("91140100000000000").unwrap().to_string();
    let (bought, regions): (i64, i64) = {
        let row = db
            .query_one(
                &format!(
                    "SELECT count(*), count(DISTINCT region) FROM {schema}.enterprise_deals
                      WHERE enterprise_code = $1 AND side = 'BUYER'"
                ),
                &[&buyer],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!((bought, regions), (300, 4));
    let sold: i64 = db
        .query_one(&format!("SELECT count(*) FROM {schema}.enterprise_deals WHERE side = 'SELLER'"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(sold, 900);
    let lots: i64 = db.query_one(&format!("SELECT count(*) FROM {schema}.lots"), &[]).await.unwrap().get(0);
    assert_eq!(lots, 300);

    // A second recorder on the same schema (a restart) finds the migrations applied and the
    // cursor where it was.
    let again = PostgresRecorder::new(&url, &schema, sample::directory()).unwrap();
    assert_eq!(again.cursor().await.unwrap(), 300);
    drop_schema(&url, &schema).await;
}

#[tokio::test]
async fn postgres_reconnects_after_its_connection_is_terminated() {
    let Some(base) = postgres_url() else { return };
    let tag = suffix();
    let (schema, app) = (format!("ea_test_{tag}"), format!("ea-test-{tag}"));
    let url = format!("{base} application_name={app}");
    let recorder = PostgresRecorder::new(&url, &schema, sample::directory()).unwrap();
    let all = sample::settlements(1, 100, 2);
    recorder.record(&all[..50]).await.unwrap();
    let killed: i64 = pg(&base)
        .await
        .query_one("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1", &[&app])
        .await
        .unwrap()
        .get(0);
    assert_eq!(killed, 1);
    // The first call after the cut may fail (the outbox would retry it); the next reconnects.
    let first = recorder.record(&all[50..]).await;
    if first.is_err() {
        assert_eq!(recorder.cursor().await.unwrap(), 50);
        recorder.record(&all[50..]).await.unwrap();
    }
    assert_eq!(recorder.cursor().await.unwrap(), 100);
    let expected: Vec<RecordedSettlement> = all.iter().map(|s| (**s).clone()).collect();
    check_database(&base, &schema, &expected).await;
    drop_schema(&base, &schema).await;
}

/// A batch large enough to be written in two halves on two connections, whose second half
/// fails (a stray allocation already holds one of its keys): the first half is kept with the
/// cursor at its end, nothing of the second half is, and the retry completes the batch.
#[tokio::test]
async fn postgres_split_batch_failing_in_its_second_half_keeps_the_first_half_and_its_cursor() {
    let Some(url) = postgres_url() else { return };
    let schema = format!("ea_test_{}", suffix());
    let recorder = PostgresRecorder::new(&url, &schema, sample::directory()).unwrap();
    assert_eq!(recorder.cursor().await.unwrap(), 0);
    let all = sample::settlements(1, 200, 3);
    assert!(all.len() >= postgres::SPLIT_AT, "the batch is split");
    let db = pg(&url).await;
    let stray = format!(
        "INSERT INTO {schema}.allocations VALUES (150, 0, 'AUC-9', 'B-1', '91140100000000000', '12140000MB0CENTRE',
                'SO2', '140100', 1000, 100, 100, 0, 0)"
    );
    db.execute(&stray, &[]).await.unwrap();

    let failed = recorder.record(&all).await;
    assert!(failed.is_err(), "the second half meets the stray key: {failed:?}");
    assert_eq!(recorder.cursor().await.unwrap(), 100, "the first half, and the cursor at its end");
    let count = |table: &'static str| {
        let (db, schema) = (&db, &schema);
        async move { db.query_one(&format!("SELECT count(*) FROM {schema}.{table}"), &[]).await.unwrap().get::<_, i64>(0) }
    };
    assert_eq!((count("settlements").await, count("allocations").await, count("bids").await), (100, 301, 500));

    db.execute(&format!("DELETE FROM {schema}.allocations WHERE sequence = 150"), &[]).await.unwrap();
    recorder.record(&all).await.unwrap();
    assert_eq!(recorder.cursor().await.unwrap(), 200);
    assert_eq!((count("settlements").await, count("allocations").await, count("bids").await), (200, 600, 1000));
    let expected: Vec<RecordedSettlement> = all.iter().map(|s| (**s).clone()).collect();
    check_database(&url, &schema, &expected).await;
    drop_schema(&url, &schema).await;
}

#[tokio::test]
async fn nats_publishes_each_settlement_once_in_order_on_its_subject() {
    let Some(url) = nats_url() else { return };
    let tag = suffix();
    let (stream, prefix) = (format!("EA_TEST_{tag}"), format!("eatest{tag}"));
    let recorder = NatsRecorder::new(&url, &stream, &prefix, sample::directory());
    assert_eq!(recorder.cursor().await.unwrap(), 0, "a new stream holds nothing");
    let all = sample::settlements(1, 60, 2);
    recorder.record(&all[..40]).await.unwrap();
    assert_eq!(recorder.cursor().await.unwrap(), 40);
    // Retried publishes are dropped by the stream's duplicate window.
    recorder.record(&all[30..]).await.unwrap();
    assert_eq!(recorder.cursor().await.unwrap(), 60);
    let held = stream_settlements(&url, &stream, &prefix).await;
    let sequences: Vec<u64> = held.iter().map(|(_, s, _)| *s).collect();
    assert_eq!(sequences, (1..=60).collect::<Vec<_>>(), "each settlement once, in order");
    for ((subject, sequence, id), want) in held.iter().zip(&all) {
        let lot = &sample::spec(want.settlement.auction_id).lot;
        assert_eq!(subject, &NatsRecorder::settlement_subject(&prefix, lot.pollutant, lot.region));
        assert_eq!(id, &format!("S-{sequence}"));
    }
    assert!(held.iter().any(|(s, _, _)| s == &format!("{prefix}.settlements.so2.140100")));
    assert!(held.iter().any(|(s, _, _)| s == &format!("{prefix}.settlements.nh3_n.140200")));
    // A new recorder (a restart) takes its cursor from the stream.
    let again = NatsRecorder::new(&url, &stream, &prefix, sample::directory());
    assert_eq!(again.cursor().await.unwrap(), 60);
    js(&url).await.delete_stream(&stream).await.unwrap();
}

fn firm(n: usize) -> CreditCode {
    CreditCode::with_check_digit(&format!("91140100MA0R{n:05}")).unwrap()
}

/// One step of a sale, as a terminal sends it.
#[derive(Clone)]
enum Call {
    Create(Box<pb::CreateAuctionRequest>),
    Bid(pb::PlaceBidRequest),
    Close(pb::AuctionRef),
}

impl Call {
    /// Sends it; the answer is the auction id.
    async fn send(&self, t: &mut Terminal) -> Result<String, tonic::Status> {
        match self.clone() {
            Call::Create(r) => t.operator.create_auction(*r).await.map(|a| a.into_inner().auction_id),
            Call::Bid(r) => t.trading.place_bid(r).await.map(|b| b.into_inner().auction_id),
            Call::Close(r) => t.operator.close_auction(r).await.map(|a| a.into_inner().auction_id),
        }
    }
}

/// Sends `call` again and again, the same request, until the server answers it (across a kill
/// and a restart, the request id makes the retry idempotent). Anything but an outage fails.
async fn until_answered(addr: &std::sync::RwLock<String>, token: &str, call: Call) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "no answer within a minute");
        let at = addr.read().unwrap().clone();
        let Ok(mut terminal) = Terminal::connect(&at, token).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        match call.send(&mut terminal).await {
            Ok(answer) => return answer,
            Err(status)
                if matches!(
                    status.code(),
                    tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled
                ) =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(status) => panic!("{status:?}"),
        }
    }
}

const AUCTIONS: usize = 1_000;
const TERMINALS: usize = 8;

/// One terminal's share of the auctions: create a one-tonne fixed-price sale, buy it whole,
/// close it.
async fn settle_share(
    terminal: usize,
    addr: Arc<std::sync::RwLock<String>>,
    operator: String,
    bidder: String,
    settled: Arc<AtomicU64>,
) {
    let now = SystemClock.now();
    for i in (terminal..AUCTIONS).step_by(TERMINALS) {
        let request = create(
            reserve_lot(&format!("REC-{i:04}"), "1.000", "1.000"),
            pb::AuctionFormat::FixedPrice,
            now,
            Timestamp::from_micros(now.as_micros() + 3_600_000_000),
        );
        let auction = until_answered(&addr, &operator, Call::Create(Box::new(request))).await;
        let bid = pb::PlaceBidRequest {
            request_id: format!("bid-{i}"),
            auction_id: auction.clone(),
            price: String::new(),
            quantity: "1.000".into(),
        };
        until_answered(&addr, &bidder, Call::Bid(bid)).await;
        let close = pb::AuctionRef { request_id: format!("close-{i}"), auction_id: auction.clone() };
        until_answered(&addr, &operator, Call::Close(close)).await;
        settled.fetch_add(1, Ordering::SeqCst);
    }
}

/// Terminates the recorder's PostgreSQL sessions; returns how many there were.
async fn cut_postgres(url: &str, application_name: &str) -> i64 {
    pg(url)
        .await
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
            &[&application_name],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_auctions_recorded_once_through_a_postgres_cut_and_a_sigkill() {
    let (Some(pg_url), Some(nats)) = (postgres_url(), nats_url()) else { return };
    let tag = suffix();
    let (schema, app, stream, prefix) =
        (format!("ea_test_{tag}"), format!("ea-test-{tag}"), format!("EA_TEST_{tag}"), format!("eatest{tag}"));
    let binary = release_binary();
    let data = tempfile::tempdir().unwrap();
    let mut principals = Principals::default();
    let operator =
        principals.add(Principal { name: "operator".into(), role: Role::Operator, enterprise: None }).unwrap();
    let bidders: Vec<String> = (0..TERMINALS)
        .map(|n| {
            let p = Principal { name: format!("t{n}"), role: Role::Bidder, enterprise: Some(firm(n)) };
            principals.add(p).unwrap()
        })
        .collect();
    principals.save(&data.path().join("principals.json")).unwrap();
    let config = data.path().join("server.toml");
    std::fs::write(
        &config,
        format!(
            r#"data_dir = "{data}"

[limits]
rate_per_second = 100000
rate_burst = 100000

[[recorders]]
kind = "jsonl"

[[recorders]]
kind = "postgres"
url = "{pg_url} application_name={app}"
schema = "{schema}"

[[recorders]]
kind = "nats"
url = "{nats}"
stream = "{stream}"
subject_prefix = "{prefix}"
"#,
            data = data.path().display()
        ),
    )
    .unwrap();

    let started = Instant::now();
    let server = Server::serve(&binary, [OsStr::new("--config"), config.as_os_str()], &operator).await;
    let addr = Arc::new(std::sync::RwLock::new(server.addr.clone()));
    let settled = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..TERMINALS)
        .map(|n| {
            tokio::spawn(settle_share(n, Arc::clone(&addr), operator.clone(), bidders[n].clone(), Arc::clone(&settled)))
        })
        .collect();

    // A third of the way in, the database connection is cut.
    while settled.load(Ordering::SeqCst) < AUCTIONS as u64 / 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut cut = 0;
    for _ in 0..100 {
        cut = cut_postgres(&pg_url, &app).await;
        if cut > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(cut > 0, "the recorder's PostgreSQL session was found and terminated");
    let cut_at = settled.load(Ordering::SeqCst);

    // Two thirds of the way in, the server is killed and started again on the same data.
    while settled.load(Ordering::SeqCst) < 2 * AUCTIONS as u64 / 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let killed_at = settled.load(Ordering::SeqCst);
    server.kill();
    let server = Server::serve(&binary, [OsStr::new("--config"), config.as_os_str()], &operator).await;
    *addr.write().unwrap() = server.addr.clone();
    for task in tasks {
        task.await.unwrap();
    }
    let load = started.elapsed();

    // The required JSON-lines file is the reference: every settlement, once.
    let reference = JsonLinesRecorder::read_all(&data.path().join("settlements.jsonl")).unwrap();
    assert_eq!(reference.len(), AUCTIONS, "one settlement per auction in settlements.jsonl");
    let last = reference.last().unwrap().sequence;
    let auctions: std::collections::BTreeSet<_> = reference.iter().map(|s| s.settlement.auction_id).collect();
    assert_eq!(auctions.len(), AUCTIONS);

    // Wait for both remote recorders to catch up.
    let caught_up = Instant::now();
    let nats_cursor = NatsRecorder::new(&nats, &stream, &prefix, Directory::default());
    let postgres_cursor = PostgresRecorder::new(&pg_url, &schema, Directory::default()).unwrap();
    loop {
        let (p, n) = (postgres_cursor.cursor().await.unwrap_or(0), nats_cursor.cursor().await.unwrap_or(0));
        if p == last && n == last {
            break;
        }
        assert!(
            caught_up.elapsed() < Duration::from_secs(60),
            "recorders caught up (postgres {p}, nats {n} of {last})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.kill();

    check_database(&pg_url, &schema, &reference).await;
    let held = stream_settlements(&nats, &stream, &prefix).await;
    let sequences: Vec<u64> = held.iter().map(|(_, s, _)| *s).collect();
    let expected: Vec<u64> = reference.iter().map(|s| s.sequence).collect();
    assert_eq!(sequences, expected, "the stream holds each settlement once, in order");
    let ids: std::collections::BTreeSet<&String> = held.iter().map(|(_, _, id)| id).collect();
    assert_eq!(ids.len(), AUCTIONS, "message ids are unique");
    assert!(held.iter().all(|(subject, _, _)| subject == &format!("{prefix}.settlements.so2.140100")));
    let phases = count_phase_messages(&nats, &stream, &prefix).await;
    println!(
        "{AUCTIONS} auctions settled by {TERMINALS} terminals in {load:?}; PostgreSQL cut after {cut_at}, \
         SIGKILL after {killed_at}; recorders caught up {:?} after the load; database and stream hold \
         settlements 1..={last} once each; {phases} phase-change messages",
        caught_up.elapsed()
    );
    drop_schema(&pg_url, &schema).await;
    js(&nats).await.delete_stream(&stream).await.unwrap();
}

/// How many phase-change messages the stream holds.
async fn count_phase_messages(url: &str, stream: &str, prefix: &str) -> usize {
    let js = js(url).await;
    let mut stream = js.get_stream(stream).await.unwrap();
    let info = stream.info().await.unwrap();
    let total = info.state.messages as usize;
    let settlements = stream_settlements(url, &info.config.name, prefix).await.len();
    total - settlements
}

/// An in-process server with JSON-lines (required), PostgreSQL and NATS (best-effort)
/// recorders, the remote two either up or unreachable (a closed port) for its whole life.
struct Rig {
    up: bool,
    addr: std::sync::RwLock<String>,
    operator: String,
    bidders: Vec<String>,
    tag: String,
    schema: String,
    stream: String,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<Result<(), emission_auction::server::ServerError>>,
    _dir: tempfile::TempDir,
}

impl Rig {
    async fn start(pg_url: &str, nats: &str, up: bool) -> Rig {
        use emission_auction::config::{Config, RecorderConfig, RecorderKind};
        let tag = suffix();
        let (schema, stream, prefix) = (format!("ea_test_{tag}"), format!("EA_TEST_{tag}"), format!("eatest{tag}"));
        let dead_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir = tempfile::tempdir().unwrap();
        let mut principals = Principals::default();
        let operator =
            principals.add(Principal { name: "operator".into(), role: Role::Operator, enterprise: None }).unwrap();
        let bidders: Vec<String> = (0..4)
            .map(|n| {
                let p = Principal { name: format!("b{n}"), role: Role::Bidder, enterprise: Some(firm(n)) };
                principals.add(p).unwrap()
            })
            .collect();
        principals.save(&dir.path().join("principals.json")).unwrap();
        let mut config = Config::default();
        config.set_data_dir(dir.path().to_owned());
        // The journal's fsync is not what is measured here.
        config.journal_sync = emission_auction::journal::SyncPolicy::Never;
        config.limits.rate.rate_per_second = 1e6;
        config.limits.rate.burst = 1_000_000;
        let (pg_at, nats_at) = if up {
            (pg_url.to_owned(), nats.to_owned())
        } else {
            (
                format!("host=127.0.0.1 port={dead_port} user=postgres dbname=test"),
                format!("nats://127.0.0.1:{dead_port}"),
            )
        };
        config.recorders = vec![
            RecorderConfig { kind: RecorderKind::JsonLines { path: None }, required: true },
            RecorderConfig { kind: RecorderKind::Postgres { url: pg_at, schema: schema.clone() }, required: false },
            RecorderConfig {
                kind: RecorderKind::Nats { url: nats_at, stream: stream.clone(), subject_prefix: prefix },
                required: false,
            },
        ];
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = format!("http://{}", listener.local_addr().unwrap());
        let parts = emission_auction::server::assemble_with_clock(&config, Arc::new(SystemClock)).await.unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(emission_auction::server::run(parts, listener, async {
            let _ = stopped.await;
        }));
        Rig { up, addr: std::sync::RwLock::new(addr), operator, bidders, tag, schema, stream, stop, server, _dir: dir }
    }

    /// Creates an auction open for an hour; returns its id.
    async fn create(&self, lot: &str, quantity: &str, format: pb::AuctionFormat) -> String {
        let now = SystemClock.now();
        let closes = Timestamp::from_micros(now.as_micros() + 3_600_000_000);
        let request = create(reserve_lot(&format!("{lot}-{}", self.tag), quantity, "1.000"), format, now, closes);
        until_answered(&self.addr, &self.operator, Call::Create(Box::new(request))).await
    }

    async fn close(&self, auction: &str) {
        let close = pb::AuctionRef { request_id: format!("close-{auction}"), auction_id: auction.to_owned() };
        until_answered(&self.addr, &self.operator, Call::Close(close)).await;
    }

    /// Settles `n` one-tonne sales, so the recorders have settlements to record (or fail at).
    async fn settle(&self, n: usize) {
        for i in 0..n {
            let auction = self.create(&format!("WARM-{i}"), "1.000", pb::AuctionFormat::FixedPrice).await;
            let bid = pb::PlaceBidRequest {
                request_id: format!("warm-bid-{i}"),
                auction_id: auction.clone(),
                price: String::new(),
                quantity: "1.000".into(),
            };
            until_answered(&self.addr, &self.bidders[0], Call::Bid(bid)).await;
            self.close(&auction).await;
        }
    }

    async fn terminals(&self) -> Vec<Terminal> {
        let addr = self.addr.read().unwrap().clone();
        let mut out = Vec::new();
        for token in &self.bidders {
            out.push(Terminal::connect(&addr, token).await.unwrap());
        }
        out
    }

    /// Closes `auction`, checks its settlement is published with `bids` allocations, waits
    /// (when up) for the recorders to catch up, stops the server and returns the recorders'
    /// states.
    async fn finish(self, auction: String, bids: usize, pg_url: &str, nats: &str) -> Vec<pb::RecorderState> {
        self.close(&auction).await;
        let addr = self.addr.read().unwrap().clone();
        let mut op = Terminal::connect(&addr, &self.operator).await.unwrap();
        // The settlement is published whether or not the remote recorders are reachable.
        let settled = op.results.get_settlement(pb::GetSettlementRequest { auction_id: auction }).await.unwrap();
        assert_eq!(settled.into_inner().allocations.len(), bids);
        let deadline = Instant::now() + Duration::from_secs(30);
        let statuses = loop {
            let status = op.operator.get_status(pb::GetStatusRequest {}).await.unwrap().into_inner();
            let done = status.recorders.iter().all(|r| r.lag == 0);
            if !self.up || done || Instant::now() > deadline {
                break status.recorders;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let _ = self.stop.send(());
        self.server.await.unwrap().unwrap();
        if self.up {
            drop_schema(pg_url, &self.schema).await;
            js(nats).await.delete_stream(&self.stream).await.unwrap();
        }
        statuses
    }
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

/// Two servers side by side, one with its PostgreSQL and NATS recorders up, one with them
/// unreachable for the whole auction; bids go to each in turn, so both see the same machine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorder_down_for_a_whole_auction_delays_no_bid() {
    const BIDS: usize = 400;
    let (Some(pg_url), Some(nats)) = (postgres_url(), nats_url()) else { return };
    let (up, down) = (Rig::start(&pg_url, &nats, true).await, Rig::start(&pg_url, &nats, false).await);
    up.settle(30).await;
    down.settle(30).await;
    let up_auction = up.create("MEASURED", "1000.000", pb::AuctionFormat::SealedUniformPrice).await;
    let down_auction = down.create("MEASURED", "1000.000", pb::AuctionFormat::SealedUniformPrice).await;
    let (mut up_terminals, mut down_terminals) = (up.terminals().await, down.terminals().await);
    let (mut up_latency, mut down_latency) = (Vec::with_capacity(BIDS), Vec::with_capacity(BIDS));
    for k in 0..BIDS {
        let bid = |auction: &str| pb::PlaceBidRequest {
            request_id: format!("measured-{k}"),
            auction_id: auction.to_owned(),
            price: format!("{}.{:02}", 18_000 + k / 100, k % 100),
            quantity: "1.000".into(),
        };
        let sent = Instant::now();
        up_terminals[k % 4].trading.place_bid(bid(&up_auction)).await.unwrap();
        up_latency.push(sent.elapsed());
        let sent = Instant::now();
        down_terminals[k % 4].trading.place_bid(bid(&down_auction)).await.unwrap();
        down_latency.push(sent.elapsed());
    }
    up_latency.sort();
    down_latency.sort();
    let up_status = up.finish(up_auction, BIDS, &pg_url, &nats).await;
    let down_status = down.finish(down_auction, BIDS, &pg_url, &nats).await;
    assert!(up_status.iter().all(|r| r.lag == 0 && r.last_error.is_empty()), "all recorders caught up: {up_status:?}");
    for remote in &down_status[1..] {
        assert!(remote.lag > 0 && !remote.last_error.is_empty(), "{} was down: {remote:?}", remote.name);
    }
    assert_eq!(down_status[0].lag, 0, "the JSON-lines file kept up");
    let (up50, up99, down50, down99) = (
        percentile(&up_latency, 50),
        percentile(&up_latency, 99),
        percentile(&down_latency, 50),
        percentile(&down_latency, 99),
    );
    println!(
        "bid latency over {BIDS} bids each, PostgreSQL and NATS recorders up: p50 {up50:?} p99 {up99:?}; \
         unreachable: p50 {down50:?} p99 {down99:?}"
    );
    // 2x, plus a little absolute slack for a machine shared with other builds.
    assert!(down50 <= up50 * 2 + Duration::from_millis(1), "p50 {down50:?} down vs {up50:?} up");
    assert!(down99 <= up99 * 2 + Duration::from_millis(5), "p99 {down99:?} down vs {up99:?} up");
}
