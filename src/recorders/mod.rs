//! Recorders that write settlements to systems outside the data directory: PostgreSQL
//! ([`postgres::PostgresRecorder`]) and NATS JetStream ([`nats::NatsRecorder`]). Both implement
//! the service's [`Recorder`](crate::service::recorder::Recorder) contract: each knows its own
//! durable cursor, records batches idempotently by sequence, and reconnects by itself, so the
//! outbox can retry any failed batch after reading the cursor again.
//!
//! A settlement names its auction but not the lot's region or seller, which both recorders
//! need (NATS subjects are per pollutant and region; the database keys deals by enterprise),
//! nor the final bid book, which the database keeps for audit. They look both up in a
//! [`Directory`], which the server attaches to the exchange once the exchange is built
//! ([`Hooks::attach`]). Until then a batch waits.
//!
//! Invariant: no recorder is ever awaited by an auction task; they run only in the outbox's
//! delivery tasks (and the NATS phase follower, which only reads a broadcast).

pub mod nats;
pub mod postgres;

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::watch;

use crate::domain::AuctionId;
use crate::engine::{AuctionSpec, BidView};
use crate::service::Exchange;
use crate::service::recorder::RecorderError;

/// How long a batch waits for the directory to be attached at start-up before it fails (and is
/// retried by the outbox).
const ATTACH_PATIENCE: Duration = Duration::from_secs(10);

/// Finds an auction's terms by its id.
pub type Lookup = Arc<dyn Fn(AuctionId) -> Option<Arc<AuctionSpec>> + Send + Sync>;

/// One bid of a concluded auction's final book: its last version, its bidder's pseudonym
/// (English auctions), and its leaf in the book's tree.
pub type BookEntry = (BidView, Option<u32>, [u8; 32]);

/// Finds a concluded auction's final book by its id, in bid-id order (the tree's order).
pub type BookLookup =
    Arc<dyn Fn(AuctionId) -> Pin<Box<dyn Future<Output = Option<Vec<BookEntry>>> + Send>> + Send + Sync>;

/// Where the directory's answers come from.
#[derive(Clone)]
struct Sources {
    spec: Lookup,
    book: BookLookup,
}

/// Where recorders find the terms (lot, region, seller) and the final book of the auction a
/// settlement concluded. Cheap to clone; every clone sees the same attachment.
#[derive(Clone)]
pub struct Directory {
    sources: Arc<watch::Sender<Option<Sources>>>,
}

impl Default for Directory {
    fn default() -> Self {
        Directory { sources: Arc::new(watch::channel(None).0) }
    }
}

impl Directory {
    /// A directory answered by `spec` and `book` from the start (tests and benchmarks).
    pub fn fixed(spec: Lookup, book: BookLookup) -> Directory {
        let directory = Directory::default();
        directory.sources.send_replace(Some(Sources { spec, book }));
        directory
    }

    /// Answers from `exchange`, which holds every auction, concluded ones included, from its
    /// start on. Holds it weakly: the exchange owns the recorders, not the other way round.
    pub fn attach(&self, exchange: &Arc<Exchange>) {
        let weak: Weak<Exchange> = Arc::downgrade(exchange);
        let spec: Lookup = {
            let exchange = weak.clone();
            Arc::new(move |id| exchange.upgrade()?.get(id).ok().map(|s| s.spec))
        };
        let book: BookLookup = Arc::new(move |id| {
            let exchange = weak.clone();
            Box::pin(async move { exchange.upgrade()?.final_book(id).await.ok() })
        });
        self.sources.send_replace(Some(Sources { spec, book }));
    }

    /// Where answers come from, waiting a while for the directory to be attached.
    async fn sources(&self, recorder: &str) -> Result<Sources, RecorderError> {
        let mut attached = self.sources.subscribe();
        match tokio::time::timeout(ATTACH_PATIENCE, attached.wait_for(Option::is_some)).await {
            Ok(Ok(sources)) => sources.clone().ok_or_else(|| unavailable(recorder, "the exchange has not started yet")),
            _ => Err(unavailable(recorder, "the exchange has not started yet")),
        }
    }

    /// The terms of auction `id`.
    pub async fn spec(&self, id: AuctionId, recorder: &str) -> Result<Arc<AuctionSpec>, RecorderError> {
        let sources = self.sources(recorder).await?;
        (sources.spec)(id).ok_or_else(|| unavailable(recorder, &format!("the terms of auction {id} are not available")))
    }

    /// The final book of concluded auction `id`, in bid-id order.
    pub async fn book(&self, id: AuctionId, recorder: &str) -> Result<Vec<BookEntry>, RecorderError> {
        let sources = self.sources(recorder).await?;
        (sources.book)(id)
            .await
            .ok_or_else(|| unavailable(recorder, &format!("the book of auction {id} is not available")))
    }
}

fn unavailable(recorder: &str, reason: &str) -> RecorderError {
    RecorderError::Unavailable { recorder: recorder.to_owned(), reason: reason.to_owned() }
}

/// What the server does with its recorders once the exchange is built: attach the directory
/// and start the NATS recorders' phase followers.
#[derive(Default)]
pub struct Hooks {
    pub directory: Directory,
    pub nats: Vec<Arc<nats::NatsRecorder>>,
}

impl Hooks {
    pub fn attach(&self, exchange: &Arc<Exchange>) {
        self.directory.attach(exchange);
        for recorder in &self.nats {
            tokio::spawn(Arc::clone(recorder).follow_phases(exchange.phase_changes()));
        }
    }
}

/// The pollutant's code as a subject token or column value (`so2`, `nh3_n`, ...).
pub(crate) fn pollutant_token(pollutant: crate::domain::Pollutant) -> String {
    pollutant.code().to_ascii_lowercase()
}

/// An auction phase as text (`SCHEDULED`, `OPEN`, `SETTLED`, `FAILED`, `CANCELLED`).
pub(crate) fn phase_code(phase: crate::engine::Phase) -> &'static str {
    use crate::engine::Phase;
    match phase {
        Phase::Scheduled => "SCHEDULED",
        Phase::Open => "OPEN",
        Phase::Settled => "SETTLED",
        Phase::Failed => "FAILED",
        Phase::Cancelled => "CANCELLED",
    }
}

/// Synthetic settlements and their auctions' terms, for the recorders' tests and benchmark.
pub mod sample {
    use std::sync::Arc;

    use super::{BookEntry, BookLookup, Directory, Lookup};
    use crate::domain::receipt::merkle_root;
    use crate::domain::{
        Amount, AuctionId, BidId, CreditCode, Pollutant, Price, PricePolicy, Quantity, Ratio, RegionCode, Timestamp,
    };
    use crate::engine::{
        Allocation, AuctionRequest, AuctionSpec, BidRevision, BidState, BidView, CapMode, CapRequest, Format,
        LotRequest, OriginKind, Settlement, SettlementStatus, TieRule, Undersubscription,
    };
    use crate::service::{JournalPosition, RecordedSettlement};

    /// 2026-01-01T00:00:00Z.
    const T0: i64 = 1_767_225_600_000_000;
    const REGIONS: [&str; 4] = ["140100", "140200", "140400", "140500"];

    fn pollutant_of(id: AuctionId) -> Pollutant {
        Pollutant::ALL[(id.get() % 6) as usize]
    }

    fn region_of(id: AuctionId) -> RegionCode {
        REGIONS[(id.get() / 6 % 4) as usize].parse().expect("a valid region")
    }

    /// The terms of auction `id`: a 10 t reserve lot, sealed pay-as-bid, of the pollutant and
    /// region the id picks.
    pub fn spec(id: AuctionId) -> AuctionSpec {
        let request = AuctionRequest {
            lot: LotRequest {
                id: format!("SAMPLE-{}", id.get()).parse().expect("a valid lot id"),
                pollutant: pollutant_of(id),
                quantity: Quantity::from_units(10_000).expect("10 t"),
                fill_unit: Some(Quantity::from_units(1_000).expect("1 t")),
                seller: CreditCode::with_check_digit("12140000MB0CENTRE").expect("a valid code"),
                origin: OriginKind::GovernmentReserve,
                certificate_id: None,
                region: region_of(id),
                vintage_year: 2025,
                valid_years: 5,
                project: Default::default(),
            },
            format: Format::SealedPayAsBid,
            tie_rule: TieRule::TimePriority,
            undersubscription: Undersubscription::SellAvailable,
            min_bidders: 0,
            per_bidder_cap: None,
            revision: BidRevision::Revisable,
            conversion_factor: Ratio::ONE,
            reserve_markup: None,
            cap: CapRequest { mode: CapMode::None, percent: None },
            opens_at: Timestamp::from_micros(T0),
            closes_at: Timestamp::from_micros(T0 + 3_600_000_000),
            ascending: None,
            clock: None,
            deposit: None,
            seller_section: None,
        };
        AuctionSpec::resolve(id, request, &PricePolicy::default(), Timestamp::from_micros(T0 - 1)).expect("valid terms")
    }

    /// A lookup that knows every auction [`settlements`] makes.
    pub fn lookup() -> Lookup {
        Arc::new(|id| Some(Arc::new(spec(id))))
    }

    /// Bids in each sample auction's final book.
    pub const BOOK: u64 = 5;

    /// The final book of auction `id`: [`BOOK`] bids for the whole lot by bidders 0, 1, ...,
    /// bid ids `16 id + k`, at the floor plus k yuan (the winners of [`settlements`] are the
    /// first of them), in bid-id order with their leaves.
    pub fn book(id: AuctionId) -> Vec<BookEntry> {
        let spec = spec(id);
        (0..BOOK)
            .map(|k| {
                let bid = BidView {
                    id: BidId::new(id.get() * 16 + k),
                    bidder: bidder(k),
                    price: Price::from_units(spec.prices.floor.units() + 100 * k as i64).expect("a price"),
                    quantity: spec.lot.quantity,
                    placed_at: Timestamp::from_micros(T0 + 1 + k as i64),
                    state: BidState::Active,
                };
                let leaf = crate::engine::receipt_fields(id, &bid, None).leaf();
                (bid, None, leaf)
            })
            .collect()
    }

    /// A book lookup that knows every auction [`settlements`] makes.
    pub fn books() -> BookLookup {
        Arc::new(|id| Box::pin(std::future::ready(Some(book(id)))))
    }

    /// A directory that knows every auction [`settlements`] makes.
    pub fn directory() -> Directory {
        Directory::fixed(lookup(), books())
    }

    fn bidder(k: u64) -> CreditCode {
        CreditCode::with_check_digit(&format!("9114010{k:010}")).expect("a code")
    }

    /// `count` settlements numbered from `first`, the n-th concluding auction n, each selling
    /// its 10 t to `winners` bidders (at most 10) at prices above the floor.
    pub fn settlements(first: u64, count: u64, winners: u64) -> Vec<Arc<RecordedSettlement>> {
        let winners = winners.clamp(1, 10);
        (first..first + count)
            .map(|sequence| {
                let id = AuctionId::new(sequence);
                let spec = spec(id);
                let each = Quantity::from_units(10 / winners as i64 * 1_000).expect("whole tonnes");
                let allocations: Vec<Allocation> = (0..winners)
                    .map(|k| {
                        let unit_price =
                            Price::from_units(spec.prices.floor.units() + 100 * k as i64).expect("a price");
                        let amount = Amount::of(unit_price, each).expect("an amount");
                        Allocation {
                            bid_id: BidId::new(sequence * 16 + k),
                            bidder: bidder(k),
                            quantity: each,
                            unit_price,
                            amount,
                            buyer_fee: amount.times(spec.buyer_fee),
                            seller_fee: amount.times(spec.seller_fee),
                        }
                    })
                    .collect();
                let sum = |f: fn(&Allocation) -> i64| allocations.iter().map(f).sum::<i64>();
                let sold = Quantity::from_units(sum(|a| a.quantity.units())).expect("sold");
                let settlement = Settlement {
                    auction_id: id,
                    lot_id: spec.lot.id.clone(),
                    pollutant: spec.lot.pollutant,
                    format: spec.format,
                    status: SettlementStatus::Settled,
                    reason: None,
                    note: None,
                    clearing_price: None,
                    sold,
                    unsold: spec.lot.quantity.checked_sub(sold).expect("within the lot"),
                    total_amount: Amount::from_units(sum(|a| a.amount.units())).expect("total"),
                    total_buyer_fee: Amount::from_units(sum(|a| a.buyer_fee.units())).expect("total"),
                    total_seller_fee: Amount::from_units(sum(|a| a.seller_fee.units())).expect("total"),
                    allocations,
                    tie_break: None,
                    floor: spec.prices.floor,
                    cap: spec.prices.cap,
                    settled_at: spec.closes_at,
                    deposits: Vec::new(),
                    book_root: Some(hex::encode(merkle_root(
                        &book(id).iter().map(|(_, _, leaf)| *leaf).collect::<Vec<_>>(),
                    ))),
                };
                Arc::new(RecordedSettlement {
                    sequence,
                    journal: JournalPosition { seq: sequence * 3, hash: format!("{sequence:064x}") },
                    settlement,
                })
            })
            .collect()
    }
}
