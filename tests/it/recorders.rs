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

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use emission_auction::auth::{Principal, Principals, Role};
use emission_auction::cli::client::Terminal;
use emission_auction::domain::{CreditCode, Timestamp};
use emission_auction::proto as pb;
use emission_auction::recorders::nats::NatsRecorder;
use emission_auction::recorders::postgres::PostgresRecorder;
use emission_auction::recorders::{Directory, sample};
use emission_auction::service::RecordedSettlement;
use emission_auction::service::clock::{Clock, SystemClock};
use emission_auction::service::recorder::{JsonLinesRecorder, Recorder};
use tokio_postgres::NoTls;

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

/// Checks what the schema holds: each settlement of `expected` exactly once, identical, with
/// allocations that sum to its totals; the cursor at the last one.
async fn check_database(url: &str, schema: &str, expected: &[RecordedSettlement]) {
    let db = pg(url).await;
    let rows = db
        .query(&format!("SELECT sequence, body::text FROM {schema}.settlements ORDER BY sequence"), &[])
        .await
        .unwrap();
    let held: Vec<(i64, RecordedSettlement)> =
        rows.iter().map(|r| (r.get(0), serde_json::from_str(r.get::<_, &str>(1)).unwrap())).collect();
    assert_eq!(held.len(), expected.len(), "each settlement exactly once");
    for ((sequence, recorded), want) in held.iter().zip(expected) {
        assert_eq!(*sequence as u64, want.sequence);
        assert_eq!(recorded, want, "settlement {sequence} as recorded");
    }
    let mismatched = db
        .query(
            &format!(
                "SELECT s.sequence FROM {schema}.settlements s
                   LEFT JOIN (SELECT sequence, count(*) n, sum(quantity_kg) q, sum(amount_fen) a,
                                     sum(buyer_fee_fen) b, sum(seller_fee_fen) f
                                FROM {schema}.allocations GROUP BY sequence) x USING (sequence)
                  WHERE coalesce(x.q, 0) <> s.sold_kg OR coalesce(x.a, 0) <> s.total_amount_fen
                     OR coalesce(x.b, 0) <> s.total_buyer_fee_fen OR coalesce(x.f, 0) <> s.total_seller_fee_fen
                     OR coalesce(x.n, 0) <> jsonb_array_length(s.body->'allocations')"
            ),
            &[],
        )
        .await
        .unwrap();
    assert!(mismatched.is_empty(), "allocations that do not sum to their settlement: {mismatched:?}");
    let cursor: i64 =
        db.query_one(&format!("SELECT sequence FROM {schema}.recorder_cursor"), &[]).await.unwrap().get(0);
    assert_eq!(cursor as u64, expected.last().map_or(0, |s| s.sequence));
}

#[tokio::test]
async fn postgres_records_each_settlement_once_and_replays_are_no_ops() {
    let Some(url) = postgres_url() else { return };
    let schema = format!("ea_test_{}", suffix());
    let recorder = PostgresRecorder::new(&url, &schema, Directory::fixed(sample::lookup())).unwrap();
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
    let again = PostgresRecorder::new(&url, &schema, Directory::fixed(sample::lookup())).unwrap();
    assert_eq!(again.cursor().await.unwrap(), 300);
    drop_schema(&url, &schema).await;
}

#[tokio::test]
async fn postgres_reconnects_after_its_connection_is_terminated() {
    let Some(base) = postgres_url() else { return };
    let tag = suffix();
    let (schema, app) = (format!("ea_test_{tag}"), format!("ea-test-{tag}"));
    let url = format!("{base} application_name={app}");
    let recorder = PostgresRecorder::new(&url, &schema, Directory::fixed(sample::lookup())).unwrap();
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

#[tokio::test]
async fn nats_publishes_each_settlement_once_in_order_on_its_subject() {
    let Some(url) = nats_url() else { return };
    let tag = suffix();
    let (stream, prefix) = (format!("EA_TEST_{tag}"), format!("eatest{tag}"));
    let recorder = NatsRecorder::new(&url, &stream, &prefix, Directory::fixed(sample::lookup()));
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
    let again = NatsRecorder::new(&url, &stream, &prefix, Directory::fixed(sample::lookup()));
    assert_eq!(again.cursor().await.unwrap(), 60);
    js(&url).await.delete_stream(&stream).await.unwrap();
}
