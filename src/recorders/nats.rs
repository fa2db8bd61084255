//! The NATS JetStream recorder: every settlement as a message on
//! `<prefix>.settlements.<pollutant>.<region>` (e.g. `emission.settlements.so2.140100`), and
//! every durable auction phase change on `<prefix>.auctions.<pollutant>.<region>.<phase>` (e.g.
//! `emission.auctions.so2.140100.open`), so a website or a regulator's system can follow the
//! market without polling. Bodies are JSON: a settlement exactly as `settlements.jsonl` holds it
//! ([`RecordedSettlement`]), a phase change as [`PhaseMessage`].
//!
//! The stream (default `EMISSION`, subjects `<prefix>.>`, file storage) is created if missing.
//! Each settlement is published with `Nats-Msg-Id: S-<sequence>`, so the stream's duplicate
//! window drops a retried publish, and each publish's acknowledgement is awaited before the
//! next is sent, so the stream holds settlements in sequence order with no gap before one it
//! acknowledged.
//!
//! The cursor is the stream itself: the `sequence` field of the last message on
//! `<prefix>.settlements.>`. It survives restarts of either side and needs no second write.
//! Phase changes are best-effort and not part of the cursor: one that happens while NATS is
//! unreachable is logged and not sent again (message id `P-<auction>-<phase>`).

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, message::PublishMessage, stream};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use super::{Directory, phase_code, pollutant_token};
use crate::service::PhaseChange;
use crate::service::recorder::{RecordedSettlement, Recorder, RecorderError};

/// Longest a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest a JetStream request (a publish acknowledgement, a stream lookup) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the stream remembers message ids to drop duplicates (when it creates the stream).
const DUPLICATE_WINDOW: Duration = Duration::from_secs(10 * 60);

/// A phase change as published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseMessage {
    pub auction_id: String,
    pub lot_id: String,
    pub pollutant: String,
    pub region: String,
    pub seller_code: String,
    pub format: String,
    /// SCHEDULED, OPEN, SETTLED, FAILED or CANCELLED.
    pub phase: String,
    /// When the change happened (server time, RFC 3339).
    pub at: String,
    pub opens_at: String,
    pub closes_at: String,
}

impl PhaseMessage {
    pub fn of(change: &PhaseChange) -> PhaseMessage {
        let lot = &change.spec.lot;
        PhaseMessage {
            auction_id: change.auction.to_string(),
            lot_id: lot.id.to_string(),
            pollutant: lot.pollutant.code().to_owned(),
            region: lot.region.to_string(),
            seller_code: lot.seller.as_str().to_owned(),
            format: change.spec.format.code().to_owned(),
            phase: phase_code(change.phase).to_owned(),
            at: change.at.to_string(),
            opens_at: change.spec.opens_at.to_string(),
            closes_at: change.spec.closes_at.to_string(),
        }
    }
}

struct Connection {
    js: jetstream::Context,
    stream: stream::Stream,
}

pub struct NatsRecorder {
    name: String,
    url: String,
    stream: String,
    prefix: String,
    directory: Directory,
    /// The live connection, if any. The client reconnects by itself; after an error the
    /// connection is dropped and opened again on the next call.
    connection: tokio::sync::Mutex<Option<Arc<Connection>>>,
}

impl NatsRecorder {
    pub fn new(url: &str, stream: &str, prefix: &str, directory: Directory) -> NatsRecorder {
        NatsRecorder {
            name: format!("nats:{stream}"),
            url: url.to_owned(),
            stream: stream.to_owned(),
            prefix: prefix.to_owned(),
            directory,
            connection: tokio::sync::Mutex::new(None),
        }
    }

    /// The subject of settlements of `pollutant` in `region`.
    pub fn settlement_subject(
        prefix: &str,
        pollutant: crate::domain::Pollutant,
        region: crate::domain::RegionCode,
    ) -> String {
        format!("{prefix}.settlements.{}.{region}", pollutant_token(pollutant))
    }

    /// The subject of an auction's phase change.
    pub fn phase_subject(prefix: &str, change: &PhaseChange) -> String {
        let lot = &change.spec.lot;
        format!(
            "{prefix}.auctions.{}.{}.{}",
            pollutant_token(lot.pollutant),
            lot.region,
            phase_code(change.phase).to_ascii_lowercase()
        )
    }

    fn unavailable(&self, e: impl std::fmt::Display) -> RecorderError {
        RecorderError::Unavailable { recorder: self.name.clone(), reason: e.to_string() }
    }

    async fn connection(&self) -> Result<Arc<Connection>, RecorderError> {
        let mut slot = self.connection.lock().await;
        if let Some(connection) = slot.as_ref() {
            return Ok(Arc::clone(connection));
        }
        let client = async_nats::ConnectOptions::new()
            .name("emission-auction recorder")
            .connection_timeout(CONNECT_TIMEOUT)
            .request_timeout(Some(REQUEST_TIMEOUT))
            .connect(self.url.as_str())
            .await
            .map_err(|e| self.unavailable(e))?;
        let mut js = jetstream::new(client);
        js.set_timeout(REQUEST_TIMEOUT);
        let stream = js
            .get_or_create_stream(stream::Config {
                name: self.stream.clone(),
                subjects: vec![format!("{}.>", self.prefix)],
                storage: stream::StorageType::File,
                duplicate_window: DUPLICATE_WINDOW,
                ..Default::default()
            })
            .await
            .map_err(|e| self.unavailable(format!("stream {}: {e}", self.stream)))?;
        let connection = Arc::new(Connection { js, stream });
        *slot = Some(Arc::clone(&connection));
        Ok(connection)
    }

    /// Forgets the connection after an error, so that the next call opens a fresh one.
    async fn reset(&self) {
        *self.connection.lock().await = None;
    }

    async fn last_recorded(&self, connection: &Connection) -> Result<u64, RecorderError> {
        use async_nats::jetstream::stream::LastRawMessageErrorKind;
        #[derive(Deserialize)]
        struct Sequence {
            sequence: u64,
        }
        let subject = format!("{}.settlements.>", self.prefix);
        match connection.stream.get_last_raw_message_by_subject(&subject).await {
            Ok(message) => serde_json::from_slice::<Sequence>(&message.payload)
                .map(|s| s.sequence)
                .map_err(|e| self.unavailable(format!("last message on {subject} has no settlement sequence: {e}"))),
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(0),
            Err(e) => Err(self.unavailable(format!("last message on {subject}: {e}"))),
        }
    }

    async fn publish(&self, connection: &Connection, settlement: &RecordedSettlement) -> Result<(), RecorderError> {
        let spec = self.directory.spec(settlement.settlement.auction_id, &self.name).await?;
        let subject = Self::settlement_subject(&self.prefix, spec.lot.pollutant, spec.lot.region);
        let body = serde_json::to_vec(settlement).map_err(|e| self.unavailable(e))?;
        let message = PublishMessage::build().payload(body.into()).message_id(format!("S-{}", settlement.sequence));
        let ack = connection.js.send_publish(subject, message).await.map_err(|e| self.unavailable(e))?;
        ack.await.map_err(|e| self.unavailable(e))?;
        Ok(())
    }

    /// Publishes every phase change from `changes` until the exchange goes away. Best-effort:
    /// a change that cannot be published is logged and dropped.
    pub async fn follow_phases(self: Arc<Self>, mut changes: broadcast::Receiver<PhaseChange>) {
        loop {
            let change = match changes.recv().await {
                Ok(change) => change,
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(recorder = %self.name, missed, "phase changes were missed (NATS too slow or down)");
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            };
            if let Err(e) = self.publish_phase(&change).await {
                tracing::warn!(recorder = %self.name, auction = %change.auction, error = %e, "phase change not published");
                self.reset().await;
            }
        }
    }

    async fn publish_phase(&self, change: &PhaseChange) -> Result<(), RecorderError> {
        let connection = self.connection().await?;
        let body = serde_json::to_vec(&PhaseMessage::of(change)).map_err(|e| self.unavailable(e))?;
        let message = PublishMessage::build().payload(body.into()).message_id(format!(
            "P-{}-{}",
            change.auction,
            phase_code(change.phase)
        ));
        let ack = connection
            .js
            .send_publish(Self::phase_subject(&self.prefix, change), message)
            .await
            .map_err(|e| self.unavailable(e))?;
        ack.await.map_err(|e| self.unavailable(e))?;
        Ok(())
    }
}

#[tonic::async_trait]
impl Recorder for NatsRecorder {
    fn name(&self) -> &str {
        &self.name
    }

    async fn cursor(&self) -> Result<u64, RecorderError> {
        let result = async {
            let connection = self.connection().await?;
            self.last_recorded(&connection).await
        }
        .await;
        if result.is_err() {
            self.reset().await;
        }
        result
    }

    async fn record(&self, batch: &[Arc<RecordedSettlement>]) -> Result<(), RecorderError> {
        let result = async {
            let connection = self.connection().await?;
            for settlement in batch {
                self.publish(&connection, settlement).await?;
            }
            Ok(())
        }
        .await;
        if result.is_err() {
            self.reset().await;
        }
        result
    }
}
