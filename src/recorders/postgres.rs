//! The PostgreSQL recorder: settlements, their allocations, the auctions and lots they
//! concluded, and those auctions' final bid books for audit, in a schema of its own that it
//! creates and migrates.
//!
//! Each batch is written with the cursor (`recorder_cursor`, one row) in the same transaction,
//! so the tables hold exactly the settlements up to the cursor. That makes the writes
//! idempotent: settlements, allocations and books at or below the cursor are skipped by the insert
//! itself (`WHERE sequence > cursor`), lots and auctions by their keys (`ON CONFLICT`), an
//! auction's phase moves only to a later settlement's, and the cursor only forward
//! (`GREATEST`). Replaying a batch is a no-op; a plain insert that still met a key held would
//! fail the batch rather than write a row twice.
//!
//! Rows go in with one multi-row `INSERT ... SELECT FROM unnest(...)` per table; the statements
//! are prepared once per connection and pipelined. A batch of [`SPLIT_AT`] settlements or more
//! is written in two halves on two connections at once, so that two database backends share
//! the work (inserting rows and index entries is what the time goes on): each half is its own
//! transaction, and the second half's (which moves the cursor past the first's) commits only
//! after the first half's has committed. A failure in either leaves a prefix of the batch and
//! a cursor that says so; the outbox retries from the cursor.
//!
//! Enterprise codes (unified social credit codes), regions (GB/T 2260) and pollutants are
//! plain columns on every table, so a deal joins the rest of an enterprise's records
//! (一企一档); the view `enterprise_deals` lists every allocation once for its buyer and once
//! for its seller. Money is in fen (`*_fen`), quantities in kilograms (`*_kg`), as integers.
//!
//! The connections are opened lazily and again after any error (a `tokio_postgres::Client`
//! dies with its connection): a cut connection costs one failed batch, which the outbox
//! retries from the cursor. No TLS: reach the database over a trusted network or a local
//! socket.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, NoTls, Statement, Transaction};

use super::{BookEntry, Directory};
use crate::domain::Timestamp;
use crate::engine::{AuctionSpec, BidState, LotOrigin, SettlementStatus};
use crate::service::recorder::{RecordedSettlement, Recorder, RecorderError};

/// The `application_name` the recorder's sessions carry unless the URL sets one.
pub const APPLICATION_NAME: &str = "emission-auction-recorder";

/// Longest a connection attempt may take (unless the URL sets `connect_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest one batch may take before the connection is dropped and the batch retried.
const BATCH_TIMEOUT: Duration = Duration::from_secs(30);

/// The schema's migrations, in order; `{schema}` is replaced by the configured schema.
/// Applied ones are listed in `schema_migrations`; a new version is appended, never edited.
const MIGRATIONS: &[(i32, &str)] = &[(1, V1), (2, V2), (3, V3)];

const V1: &str = r#"
CREATE TABLE {schema}.auctions (
    auction_id      text PRIMARY KEY,       -- AUC-0001
    lot_id          text NOT NULL,
    pollutant       text NOT NULL,          -- SO2, NOX, COD, NH3_N, SMOKE_DUST, INDUSTRIAL_DUST
    region          text NOT NULL,          -- GB/T 2260, e.g. 140100
    seller_code     text NOT NULL,          -- unified social credit code (GB 32100)
    format          text NOT NULL,
    benchmark_fen   bigint NOT NULL,
    floor_fen       bigint NOT NULL,
    cap_fen         bigint,
    opens_at        timestamptz NOT NULL,
    closes_at       timestamptz NOT NULL,
    created_at      timestamptz NOT NULL,
    phase           text NOT NULL,          -- SETTLED, FAILED or CANCELLED once recorded here
    last_sequence   bigint NOT NULL         -- the settlement that set the phase
);

CREATE TABLE {schema}.lots (
    auction_id      text PRIMARY KEY,       -- a lot offered again gets a row per auction
    lot_id          text NOT NULL,
    pollutant       text NOT NULL,
    region          text NOT NULL,
    seller_code     text NOT NULL,
    quantity_kg     bigint NOT NULL,
    fill_unit_kg    bigint NOT NULL,
    origin          text NOT NULL,          -- GOVERNMENT_RESERVE, ERC_CERTIFIED, ALLOCATED
    certificate_id  text,
    vintage_year    integer NOT NULL,
    valid_years     integer NOT NULL
);
CREATE INDEX ON {schema}.lots (pollutant, lot_id);

CREATE TABLE {schema}.settlements (
    sequence             bigint PRIMARY KEY, -- the settlement stream's number
    auction_id           text NOT NULL,
    lot_id               text NOT NULL,
    pollutant            text NOT NULL,
    region               text NOT NULL,
    seller_code          text NOT NULL,
    format               text NOT NULL,
    status               text NOT NULL,      -- SETTLED, FAILED, CANCELLED
    reason               text,
    note                 text,
    clearing_price_fen   bigint,
    floor_fen            bigint NOT NULL,
    cap_fen              bigint,
    sold_kg              bigint NOT NULL,
    unsold_kg            bigint NOT NULL,
    total_amount_fen     bigint NOT NULL,
    total_buyer_fee_fen  bigint NOT NULL,
    total_seller_fee_fen bigint NOT NULL,
    settled_at           timestamptz NOT NULL,
    journal_seq          bigint NOT NULL,
    journal_hash         text NOT NULL,
    tie_break            json,               -- who was served at the margin, and how
    recorded_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON {schema}.settlements (auction_id);
CREATE INDEX ON {schema}.settlements (seller_code);
CREATE INDEX ON {schema}.settlements (pollutant, region, settled_at);

CREATE TABLE {schema}.allocations (
    sequence        bigint NOT NULL REFERENCES {schema}.settlements DEFERRABLE INITIALLY DEFERRED,
    position        integer NOT NULL,       -- order within the settlement
    auction_id      text NOT NULL,
    bid_id          text NOT NULL,
    bidder_code     text NOT NULL,          -- the buyer's unified social credit code
    seller_code     text NOT NULL,
    pollutant       text NOT NULL,
    region          text NOT NULL,
    quantity_kg     bigint NOT NULL,
    unit_price_fen  bigint NOT NULL,
    amount_fen      bigint NOT NULL,
    buyer_fee_fen   bigint NOT NULL,
    seller_fee_fen  bigint NOT NULL,
    PRIMARY KEY (sequence, position)
);
CREATE INDEX ON {schema}.allocations (bidder_code);

CREATE TABLE {schema}.recorder_cursor (
    id          smallint PRIMARY KEY CHECK (id = 1),
    sequence    bigint NOT NULL,            -- the last settlement held here
    updated_at  timestamptz NOT NULL
);
INSERT INTO {schema}.recorder_cursor VALUES (1, 0, now());

CREATE VIEW {schema}.enterprise_deals AS
    SELECT a.bidder_code AS enterprise_code, 'BUYER' AS side, a.sequence, a.auction_id, s.lot_id,
           a.pollutant, a.region, a.quantity_kg, a.unit_price_fen, a.amount_fen,
           a.buyer_fee_fen AS fee_fen, s.settled_at
      FROM {schema}.allocations a JOIN {schema}.settlements s USING (sequence)
    UNION ALL
    SELECT a.seller_code, 'SELLER', a.sequence, a.auction_id, s.lot_id,
           a.pollutant, a.region, a.quantity_kg, a.unit_price_fen, a.amount_fen,
           a.seller_fee_fen, s.settled_at
      FROM {schema}.allocations a JOIN {schema}.settlements s USING (sequence);
"#;

/// Allocations are written in the transaction that writes their settlement, which is what the
/// deferred foreign key checked at every commit, one lookup per allocation: a third of an
/// allocation's cost. The invariant is the recorder's (and `allocations.sequence` is still
/// indexed by the primary key for the join).
const V2: &str = r#"
ALTER TABLE {schema}.allocations DROP CONSTRAINT IF EXISTS allocations_sequence_fkey;
"#;

/// The final bid book of each recorded auction, for audit: every bid's last version, sealed
/// bids included (the book is public once the auction has concluded). From its fields an
/// auditor recomputes each bid's leaf (its receipt encoding, hashed) and the settlement's
/// `book_root` (docs/API.md gives both). A book is written once and read whole, so it is kept
/// as one compact `json` array per auction, one array per bid (a row per bid costs an index
/// entry each, and more than the rest of the settlement together); the view `bids` shows a row
/// per bid with named columns.
const V3: &str = r#"
ALTER TABLE {schema}.settlements ADD COLUMN book_root text;  -- hex SHA-256 root of the final book's tree

CREATE TABLE {schema}.books (
    sequence        bigint PRIMARY KEY,     -- the settlement that concluded the auction
    auction_id      text NOT NULL,
    -- The bids in bid-id order (the order of the book's tree), each
    -- [bid_id, bidder_code, pseudonym, price_fen, quantity_kg, placed_at_us, state]:
    book            json NOT NULL
);

CREATE VIEW {schema}.bids AS
    SELECT b.sequence, (e.position - 1)::integer AS position, b.auction_id,
           e.bid->>0 AS bid_id,
           e.bid->>1 AS bidder_code,                                -- unified social credit code
           e.bid->>2 AS pseudonym,                                  -- ASCENDING_ENGLISH: B001...
           (e.bid->>3)::bigint AS price_fen,
           (e.bid->>4)::bigint AS quantity_kg,
           timestamptz 'epoch' + (e.bid->>5)::bigint * interval '1 microsecond' AS placed_at,
           e.bid->>6 AS state                                       -- ACTIVE or WITHDRAWN
      FROM {schema}.books b, json_array_elements(b.book) WITH ORDINALITY AS e(bid, position);
"#;

/// Connections one batch is spread over: one database backend per half.
const LANES: usize = 2;

/// A batch of fewer settlements goes over one connection: splitting it would cost more round
/// trips than the backends' shared work saves.
pub const SPLIT_AT: usize = 64;

pub struct PostgresRecorder {
    name: String,
    config: Config,
    schema: String,
    directory: Directory,
    /// The live connections, if any; one batch at a time.
    sessions: tokio::sync::Mutex<[Option<Session>; LANES]>,
}

impl PostgresRecorder {
    /// A recorder for `url` (`postgres://...` or `host=... dbname=...`) writing into `schema`
    /// (lowercase letters, digits and underscores, as the config checks). Connects on first use.
    pub fn new(url: &str, schema: &str, directory: Directory) -> Result<PostgresRecorder, RecorderError> {
        let name = format!("postgres:{schema}");
        // The schema is spliced into SQL text: only plain identifiers are taken.
        if schema.is_empty()
            || !schema.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            || schema.starts_with(|c: char| c.is_ascii_digit())
        {
            return Err(RecorderError::Unavailable {
                recorder: name,
                reason: "schema must be lowercase letters, digits and underscores, not starting with a digit".into(),
            });
        }
        let mut config = Config::from_str(url)
            .map_err(|e| RecorderError::Unavailable { recorder: name.clone(), reason: format!("url: {e}") })?;
        if config.get_application_name().is_none() {
            config.application_name(APPLICATION_NAME);
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        Ok(PostgresRecorder {
            name,
            config,
            schema: schema.to_owned(),
            directory,
            sessions: tokio::sync::Mutex::new([None, None]),
        })
    }

    fn unavailable(&self, e: impl std::fmt::Display) -> RecorderError {
        RecorderError::Unavailable { recorder: self.name.clone(), reason: e.to_string() }
    }

    /// The live session, connecting (and migrating) when there is none or it died.
    async fn connected<'a>(&self, slot: &'a mut Option<Session>) -> Result<&'a mut Session, RecorderError> {
        if slot.as_ref().is_some_and(|s| s.client.is_closed()) {
            *slot = None;
        }
        if slot.is_none() {
            let pg = |e: tokio_postgres::Error| self.unavailable(e);
            let (mut client, connection) = self.config.connect(NoTls).await.map_err(pg)?;
            let name = self.name.clone();
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(recorder = %name, error = %e, "postgres connection ended");
                }
            });
            migrate(&mut client, &self.schema).await.map_err(|e| self.unavailable(format!("migrating: {e}")))?;
            let s = &self.schema;
            let statements = Statements {
                auctions: client.prepare(&AUCTIONS.replace("{schema}", s)).await.map_err(pg)?,
                lots: client.prepare(&LOTS.replace("{schema}", s)).await.map_err(pg)?,
                settlements: client.prepare(&SETTLEMENTS.replace("{schema}", s)).await.map_err(pg)?,
                allocations: client.prepare(&ALLOCATIONS.replace("{schema}", s)).await.map_err(pg)?,
                books: client.prepare(&BOOKS.replace("{schema}", s)).await.map_err(pg)?,
                cursor: client.prepare(&CURSOR.replace("{schema}", s)).await.map_err(pg)?,
            };
            *slot = Some(Session { client, statements });
        }
        Ok(slot.as_mut().expect("connected above"))
    }

    /// Runs `work` on the connections; any failure drops them all, so the next call starts on
    /// fresh ones.
    async fn with_sessions<T>(
        &self,
        work: impl AsyncFnOnce(&mut [Option<Session>; LANES]) -> Result<T, RecorderError>,
    ) -> Result<T, RecorderError> {
        let mut slots = self.sessions.lock().await;
        let attempt = tokio::time::timeout(BATCH_TIMEOUT, work(&mut slots)).await;
        let result = attempt.unwrap_or_else(|_| Err(self.unavailable(format!("no answer within {BATCH_TIMEOUT:?}"))));
        if result.is_err() {
            *slots = [None, None];
        }
        result
    }

    /// Writes a batch: in one transaction on one connection, or, from [`SPLIT_AT`] settlements,
    /// in two halves on two connections at once, the second committed only after the first.
    async fn write(&self, slots: &mut [Option<Session>; LANES], batch: &[Rows]) -> Result<(), RecorderError> {
        let pg = |e: tokio_postgres::Error| self.unavailable(e);
        let [first_slot, second_slot] = slots;
        if batch.len() < SPLIT_AT {
            let Some(last) = batch.last().map(|r| r.sequence) else { return Ok(()) };
            let session = self.connected(first_slot).await?;
            let tx = session.client.transaction().await.map_err(pg)?;
            // The inserts read the cursor to skip what is held: the cursor moves only after them.
            insert(&tx, &session.statements, batch).await.map_err(pg)?;
            advance(&tx, &session.statements, last).await.map_err(pg)?;
            return tx.commit().await.map_err(pg);
        }
        let (first, second) = batch.split_at(batch.len() / 2);
        let (first_end, second_end) = (first[first.len() - 1].sequence, second[second.len() - 1].sequence);
        let one = self.connected(first_slot).await?;
        let two = self.connected(second_slot).await?;
        let (tx1, tx2) = tokio::try_join!(one.client.transaction(), two.client.transaction()).map_err(pg)?;
        // Both halves' rows at once, each in its own backend; the first half also moves the
        // cursor to its end (the second half's statements read the cursor as committed before
        // this batch, and hold only later settlements).
        let (one_done, two_done) = tokio::join!(
            async {
                // The inserts read the cursor to skip what is held: it moves only after them.
                insert(&tx1, &one.statements, first).await?;
                advance(&tx1, &one.statements, first_end).await
            },
            insert(&tx2, &two.statements, second),
        );
        one_done.map_err(pg)?;
        // The first half is whole: commit it, then move the cursor over the second. Dropping
        // `tx2` on an error rolls it back, leaving the first half and a cursor at its end.
        tx1.commit().await.map_err(pg)?;
        two_done.map_err(pg)?;
        advance(&tx2, &two.statements, second_end).await.map_err(pg)?;
        tx2.commit().await.map_err(pg)
    }
}

/// Inserts the rows of `batch` (after the cursor) in the transaction `tx`: one statement per
/// table, pipelined.
async fn insert(tx: &Transaction<'_>, st: &Statements, batch: &[Rows]) -> Result<(), tokio_postgres::Error> {
    // The latest settlement of an auction in the batch sets its phase.
    let latest: BTreeMap<&str, &Rows> = batch.iter().map(|r| (r.auction_id.as_str(), r)).collect();
    let a: Vec<&Rows> = latest.into_values().collect();
    let auctions = [
        col(a.iter().map(|r| r.auction_id.clone()).collect()),
        col(a.iter().map(|r| r.lot_id.clone()).collect()),
        col(a.iter().map(|r| r.pollutant).collect()),
        col(a.iter().map(|r| r.region.clone()).collect()),
        col(a.iter().map(|r| r.seller_code.clone()).collect()),
        col(a.iter().map(|r| r.format).collect()),
        col(a.iter().map(|r| r.spec.prices.benchmark.units()).collect()),
        col(a.iter().map(|r| r.spec.prices.floor.units()).collect()),
        col(a.iter().map(|r| r.spec.prices.cap.map(|c| c.units())).collect()),
        col(a.iter().map(|r| time(r.spec.opens_at)).collect()),
        col(a.iter().map(|r| time(r.spec.closes_at)).collect()),
        col(a.iter().map(|r| time(r.spec.created_at)).collect()),
        col(a.iter().map(|r| r.phase).collect()),
        col(a.iter().map(|r| r.sequence).collect()),
    ];
    let lots = [
        col(a.iter().map(|r| r.auction_id.clone()).collect()),
        col(a.iter().map(|r| r.lot_id.clone()).collect()),
        col(a.iter().map(|r| r.pollutant).collect()),
        col(a.iter().map(|r| r.region.clone()).collect()),
        col(a.iter().map(|r| r.seller_code.clone()).collect()),
        col(a.iter().map(|r| r.spec.lot.quantity.units()).collect()),
        col(a.iter().map(|r| r.spec.lot.fill_unit.units()).collect()),
        col(a.iter().map(|r| origin(&r.spec.lot.origin).0).collect()),
        col(a.iter().map(|r| origin(&r.spec.lot.origin).1.map(str::to_owned)).collect()),
        col(a.iter().map(|r| i32::from(r.spec.lot.vintage_year)).collect()),
        col(a.iter().map(|r| i32::from(r.spec.lot.valid_years)).collect()),
    ];
    let b = batch;
    let settlements = [
        col(b.iter().map(|r| r.sequence).collect()),
        col(b.iter().map(|r| r.auction_id.clone()).collect()),
        col(b.iter().map(|r| r.lot_id.clone()).collect()),
        col(b.iter().map(|r| r.pollutant).collect()),
        col(b.iter().map(|r| r.region.clone()).collect()),
        col(b.iter().map(|r| r.seller_code.clone()).collect()),
        col(b.iter().map(|r| r.format).collect()),
        col(b.iter().map(|r| status(r.s().status)).collect()),
        col(b.iter().map(|r| r.s().reason.map(|x| x.code())).collect()),
        col(b.iter().map(|r| r.s().note.clone()).collect()),
        col(b.iter().map(|r| r.s().clearing_price.map(|p| p.units())).collect()),
        col(b.iter().map(|r| r.s().floor.units()).collect()),
        col(b.iter().map(|r| r.s().cap.map(|c| c.units())).collect()),
        col(b.iter().map(|r| r.s().sold.units()).collect()),
        col(b.iter().map(|r| r.s().unsold.units()).collect()),
        col(b.iter().map(|r| r.s().total_amount.units()).collect()),
        col(b.iter().map(|r| r.s().total_buyer_fee.units()).collect()),
        col(b.iter().map(|r| r.s().total_seller_fee.units()).collect()),
        col(b.iter().map(|r| time(r.s().settled_at)).collect()),
        col(b.iter().map(|r| r.settlement.journal.seq as i64).collect()),
        col(b.iter().map(|r| r.settlement.journal.hash.clone()).collect()),
        col(b.iter().map(|r| r.tie_break.clone()).collect()),
        col(b.iter().map(|r| r.s().book_root.clone()).collect()),
    ];
    let al: Vec<(&Rows, i32, &crate::engine::Allocation)> =
        batch.iter().flat_map(|r| r.s().allocations.iter().enumerate().map(move |(i, a)| (r, i as i32, a))).collect();
    let allocations = [
        col(al.iter().map(|(r, _, _)| r.sequence).collect()),
        col(al.iter().map(|(_, i, _)| *i).collect()),
        col(al.iter().map(|(r, _, _)| r.auction_id.clone()).collect()),
        col(al.iter().map(|(_, _, a)| a.bid_id.to_string()).collect()),
        col(al.iter().map(|(_, _, a)| a.bidder.as_str().to_owned()).collect()),
        col(al.iter().map(|(r, _, _)| r.seller_code.clone()).collect()),
        col(al.iter().map(|(r, _, _)| r.pollutant).collect()),
        col(al.iter().map(|(r, _, _)| r.region.clone()).collect()),
        col(al.iter().map(|(_, _, a)| a.quantity.units()).collect()),
        col(al.iter().map(|(_, _, a)| a.unit_price.units()).collect()),
        col(al.iter().map(|(_, _, a)| a.amount.units()).collect()),
        col(al.iter().map(|(_, _, a)| a.buyer_fee.units()).collect()),
        col(al.iter().map(|(_, _, a)| a.seller_fee.units()).collect()),
    ];
    let books = [
        col(b.iter().map(|r| r.sequence).collect()),
        col(b.iter().map(|r| r.auction_id.clone()).collect()),
        col(b.iter().map(|r| r.book.clone()).collect()),
    ];
    let (auctions, lots, settlements, allocations, books) =
        (params(&auctions), params(&lots), params(&settlements), params(&allocations), params(&books));
    tokio::try_join!(
        tx.execute(&st.auctions, &auctions),
        tx.execute(&st.lots, &lots),
        tx.execute(&st.settlements, &settlements),
        tx.execute(&st.allocations, &allocations),
        tx.execute(&st.books, &books),
    )?;
    Ok(())
}

/// Moves the cursor forward to `last` in the transaction `tx`.
async fn advance(tx: &Transaction<'_>, st: &Statements, last: i64) -> Result<(), tokio_postgres::Error> {
    tx.execute(&st.cursor, &[&last]).await.map(drop)
}

/// A connection and its prepared statements.
struct Session {
    client: Client,
    statements: Statements,
}

struct Statements {
    auctions: Statement,
    lots: Statement,
    settlements: Statement,
    allocations: Statement,
    books: Statement,
    cursor: Statement,
}

/// One array parameter: a column of a multi-row insert.
type Column = Box<dyn ToSql + Sync + Send>;

fn col<T: ToSql + Sync + Send + 'static>(values: Vec<T>) -> Column {
    Box::new(values)
}

fn params(columns: &[Column]) -> Vec<&(dyn ToSql + Sync)> {
    columns.iter().map(|c| c.as_ref() as &(dyn ToSql + Sync)).collect()
}

/// The statements of a batch. Each is idempotent: a replayed settlement or allocation is at or
/// below the cursor (committed with it) and skipped, a lot by its key, an auction's phase moves
/// only to a later settlement's, and the cursor only forward.
const AUCTIONS: &str = "INSERT INTO {schema}.auctions (auction_id, lot_id, pollutant, region, seller_code, format,
        benchmark_fen, floor_fen, cap_fen, opens_at, closes_at, created_at, phase, last_sequence)
     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::int8[],
        $8::int8[], $9::int8[], $10::timestamptz[], $11::timestamptz[], $12::timestamptz[], $13::text[], $14::int8[])
     ON CONFLICT (auction_id) DO UPDATE SET phase = EXCLUDED.phase, last_sequence = EXCLUDED.last_sequence
        WHERE {schema}.auctions.last_sequence < EXCLUDED.last_sequence";

const LOTS: &str = "INSERT INTO {schema}.lots (auction_id, lot_id, pollutant, region, seller_code, quantity_kg,
        fill_unit_kg, origin, certificate_id, vintage_year, valid_years)
     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int8[], $7::int8[],
        $8::text[], $9::text[], $10::int4[], $11::int4[])
     ON CONFLICT (auction_id) DO NOTHING";

const SETTLEMENTS: &str = "INSERT INTO {schema}.settlements (sequence, auction_id, lot_id, pollutant, region,
        seller_code, format, status, reason, note, clearing_price_fen, floor_fen, cap_fen, sold_kg, unsold_kg,
        total_amount_fen, total_buyer_fee_fen, total_seller_fee_fen, settled_at, journal_seq, journal_hash,
        tie_break, book_root)
     SELECT q, a, l, p, r, sc, f, st, re, n, cp, fl, c, so, un, ta, tb, ts, sa, js, jh, tie::json, br
       FROM unnest($1::int8[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
            $9::text[], $10::text[], $11::int8[], $12::int8[], $13::int8[], $14::int8[], $15::int8[], $16::int8[],
            $17::int8[], $18::int8[], $19::timestamptz[], $20::int8[], $21::text[], $22::text[], $23::text[])
         AS u(q, a, l, p, r, sc, f, st, re, n, cp, fl, c, so, un, ta, tb, ts, sa, js, jh, tie, br)
      WHERE q > (SELECT sequence FROM {schema}.recorder_cursor WHERE id = 1)";

const ALLOCATIONS: &str = "INSERT INTO {schema}.allocations (sequence, position, auction_id, bid_id, bidder_code,
        seller_code, pollutant, region, quantity_kg, unit_price_fen, amount_fen, buyer_fee_fen, seller_fee_fen)
     SELECT * FROM unnest($1::int8[], $2::int4[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
        $8::text[], $9::int8[], $10::int8[], $11::int8[], $12::int8[], $13::int8[])
         AS u(q, i, a, b, bc, sc, p, r, qk, up, am, bf, sf)
      WHERE q > (SELECT sequence FROM {schema}.recorder_cursor WHERE id = 1)";

const BOOKS: &str = "INSERT INTO {schema}.books (sequence, auction_id, book)
     SELECT q, a, b::json FROM unnest($1::int8[], $2::text[], $3::text[]) AS u(q, a, b)
      WHERE q > (SELECT sequence FROM {schema}.recorder_cursor WHERE id = 1)";

const CURSOR: &str =
    "UPDATE {schema}.recorder_cursor SET sequence = GREATEST(sequence, $1::int8), updated_at = now() WHERE id = 1";

/// One settlement with what the tables need beside it, prepared before the transaction.
struct Rows {
    sequence: i64,
    settlement: Arc<RecordedSettlement>,
    spec: Arc<AuctionSpec>,
    auction_id: String,
    lot_id: String,
    pollutant: &'static str,
    region: String,
    seller_code: String,
    format: &'static str,
    phase: &'static str,
    tie_break: Option<String>,
    /// The auction's final book, in bid-id order, as a JSON array of [`BookBid`]s.
    book: String,
}

/// One bid of a final book as the `books` table holds it: bid id, bidder, pseudonym, price in
/// fen, quantity in kg, when its last version was taken (microseconds since the epoch), state.
type BookBid<'a> = (String, &'a str, Option<String>, i64, i64, i64, &'static str);

impl Rows {
    fn s(&self) -> &crate::engine::Settlement {
        &self.settlement.settlement
    }

    fn of(
        settlement: &Arc<RecordedSettlement>,
        spec: Arc<AuctionSpec>,
        book: &[BookEntry],
    ) -> Result<Rows, serde_json::Error> {
        let s = &settlement.settlement;
        Ok(Rows {
            sequence: settlement.sequence as i64,
            auction_id: s.auction_id.to_string(),
            lot_id: s.lot_id.to_string(),
            pollutant: s.pollutant.code(),
            region: spec.lot.region.to_string(),
            seller_code: spec.lot.seller.as_str().to_owned(),
            format: s.format.code(),
            phase: status(s.status),
            tie_break: s.tie_break.as_ref().map(serde_json::to_string).transpose()?,
            book: serde_json::to_string(
                &book
                    .iter()
                    .map(|(bid, pseudonym, _)| -> BookBid<'_> {
                        (
                            bid.id.to_string(),
                            bid.bidder.as_str(),
                            pseudonym.map(|n| format!("B{n:03}")),
                            bid.price.units(),
                            bid.quantity.units(),
                            bid.placed_at.as_micros(),
                            bid_state(bid.state),
                        )
                    })
                    .collect::<Vec<_>>(),
            )?,
            settlement: Arc::clone(settlement),
            spec,
        })
    }
}

fn status(status: SettlementStatus) -> &'static str {
    match status {
        SettlementStatus::Settled => "SETTLED",
        SettlementStatus::Failed => "FAILED",
        SettlementStatus::Cancelled => "CANCELLED",
    }
}

fn bid_state(state: BidState) -> &'static str {
    match state {
        BidState::Active => "ACTIVE",
        BidState::Withdrawn => "WITHDRAWN",
    }
}

fn origin(origin: &LotOrigin) -> (&'static str, Option<&str>) {
    match origin {
        LotOrigin::GovernmentReserve => ("GOVERNMENT_RESERVE", None),
        LotOrigin::ErcCertified { certificate_id } => ("ERC_CERTIFIED", Some(certificate_id.as_str())),
        LotOrigin::Allocated => ("ALLOCATED", None),
    }
}

fn time(at: Timestamp) -> SystemTime {
    let micros = at.as_micros();
    if micros >= 0 {
        UNIX_EPOCH + Duration::from_micros(micros as u64)
    } else {
        UNIX_EPOCH - Duration::from_micros(micros.unsigned_abs())
    }
}

/// Creates the schema and applies the migrations it has not seen, under an advisory lock so
/// that two servers starting at once do not race.
async fn migrate(client: &mut Client, schema: &str) -> Result<(), tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&format!("emission-auction:{schema}")]).await?;
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};
         CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
             version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
    ))
    .await?;
    let applied: i32 =
        tx.query_one(&format!("SELECT coalesce(max(version), 0) FROM {schema}.schema_migrations"), &[]).await?.get(0);
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > applied) {
        tx.batch_execute(&sql.replace("{schema}", schema)).await?;
        tx.execute(&format!("INSERT INTO {schema}.schema_migrations (version) VALUES ($1)"), &[version]).await?;
        tracing::info!(schema, version, "postgres recorder: schema migrated");
    }
    tx.commit().await
}

#[tonic::async_trait]
impl Recorder for PostgresRecorder {
    fn name(&self) -> &str {
        &self.name
    }

    async fn cursor(&self) -> Result<u64, RecorderError> {
        let schema = &self.schema;
        self.with_sessions(async |[slot, _]| {
            let row = self
                .connected(slot)
                .await?
                .client
                .query_one(&format!("SELECT sequence FROM {schema}.recorder_cursor WHERE id = 1"), &[])
                .await
                .map_err(|e| self.unavailable(e))?;
            let cursor: i64 = row.try_get(0).map_err(|e| self.unavailable(e))?;
            u64::try_from(cursor).map_err(|_| self.unavailable(format!("recorder_cursor holds {cursor}, below zero")))
        })
        .await
    }

    async fn record(&self, batch: &[Arc<RecordedSettlement>]) -> Result<(), RecorderError> {
        let mut rows = Vec::with_capacity(batch.len());
        for settlement in batch {
            let id = settlement.settlement.auction_id;
            let spec = self.directory.spec(id, &self.name).await?;
            let book = self.directory.book(id, &self.name).await?;
            rows.push(Rows::of(settlement, spec, &book).map_err(|e| self.unavailable(e))?);
        }
        self.with_sessions(async |slots| self.write(slots, &rows).await).await
    }
}
