//! Recorders that write settlements to systems outside the data directory: PostgreSQL
//! ([`postgres::PostgresRecorder`]) and NATS JetStream ([`nats::NatsRecorder`]). Both implement
//! the service's [`Recorder`](crate::service::recorder::Recorder) contract: each knows its own
//! durable cursor, records batches idempotently by sequence, and reconnects by itself, so the
//! outbox can retry any failed batch after reading the cursor again.
//!
//! A settlement names its auction but not the lot's region or seller, which both recorders
//! need (NATS subjects are per pollutant and region; the database keys deals by enterprise).
//! They look the auction's terms up in a [`Directory`], which the server attaches to the
//! exchange once the exchange is built ([`Hooks::attach`]). Until then a batch waits.
//!
//! Invariant: no recorder is ever awaited by an auction task; they run only in the outbox's
//! delivery tasks (and the NATS phase follower, which only reads a broadcast).

pub mod nats;
pub mod postgres;

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::watch;

use crate::domain::AuctionId;
use crate::engine::AuctionSpec;
use crate::service::Exchange;
use crate::service::recorder::RecorderError;

/// How long a batch waits for the directory to be attached at start-up before it fails (and is
/// retried by the outbox).
const ATTACH_PATIENCE: Duration = Duration::from_secs(10);

/// Finds an auction's terms by its id.
pub type Lookup = Arc<dyn Fn(AuctionId) -> Option<Arc<AuctionSpec>> + Send + Sync>;

/// Where recorders find the terms (lot, region, seller) of the auction a settlement concluded.
/// Cheap to clone; every clone sees the same attachment.
#[derive(Clone)]
pub struct Directory {
    lookup: Arc<watch::Sender<Option<Lookup>>>,
}

impl Default for Directory {
    fn default() -> Self {
        Directory { lookup: Arc::new(watch::channel(None).0) }
    }
}

impl Directory {
    /// A directory answered by `lookup` from the start (tests and benchmarks).
    pub fn fixed(lookup: Lookup) -> Directory {
        let directory = Directory::default();
        directory.lookup.send_replace(Some(lookup));
        directory
    }

    /// Answers from `exchange`, which holds every auction, concluded ones included, from its
    /// start on. Holds it weakly: the exchange owns the recorders, not the other way round.
    pub fn attach(&self, exchange: &Arc<Exchange>) {
        let exchange: Weak<Exchange> = Arc::downgrade(exchange);
        let lookup: Lookup = Arc::new(move |id| exchange.upgrade()?.get(id).ok().map(|s| s.spec));
        self.lookup.send_replace(Some(lookup));
    }

    /// The terms of auction `id`, waiting a while for the directory to be attached.
    pub async fn spec(&self, id: AuctionId, recorder: &str) -> Result<Arc<AuctionSpec>, RecorderError> {
        let unavailable = |reason: String| RecorderError::Unavailable { recorder: recorder.to_owned(), reason };
        let lookup = {
            let mut attached = self.lookup.subscribe();
            let waited = tokio::time::timeout(ATTACH_PATIENCE, attached.wait_for(Option::is_some)).await;
            match waited {
                Ok(Ok(lookup)) => lookup.clone().expect("waited for Some"),
                _ => return Err(unavailable("the exchange has not started yet".into())),
            }
        };
        lookup(id).ok_or_else(|| unavailable(format!("the terms of auction {id} are not available")))
    }
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
