//! Starting a server from a [`Config`]: data directory, principals, recorders, the exchange,
//! then the gRPC listener. `main`, the demo and the integration tests all come through here.

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

use crate::auth::{AuthError, Principals};
use crate::config::Config;
use crate::journal::{Journal, JournalError, Options};
use crate::service::Exchange;
use crate::service::clock::{Clock, SystemClock};
use crate::service::hub::SettlementHub;
use crate::service::recorder::{JsonLinesRecorder, Recorder, RecorderError};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("data directory {path}: {source}")]
    DataDir { path: String, source: std::io::Error },
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Recorder(#[from] RecorderError),
    #[error("gRPC transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error(transparent)]
    Replay(#[from] crate::service::ReplayError),
    #[error("results board: {0}")]
    Board(std::io::Error),
}

/// Everything a running server is made of, before it listens.
pub struct Parts {
    pub exchange: Arc<Exchange>,
    pub principals: Principals,
    pub max_message_bytes: usize,
}

/// Opens the data directory and builds the exchange with the wall clock.
pub async fn assemble(config: &Config) -> Result<Parts, ServerError> {
    assemble_with_clock(config, Arc::new(SystemClock)).await
}

pub async fn assemble_with_clock(config: &Config, clock: Arc<dyn Clock>) -> Result<Parts, ServerError> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|source| ServerError::DataDir { path: config.data_dir.display().to_string(), source })?;
    let principals = Principals::load(&config.principals_file)?;
    if principals.is_empty() {
        tracing::warn!(file = %config.principals_file.display(), "no principals: every call will be refused; add one with `emission-auction principal add`");
    }
    let settlements = config.settlements_file();
    let history = JsonLinesRecorder::read_all(&settlements)?;
    let recorder: Arc<dyn Recorder> = Arc::new(JsonLinesRecorder::open(&settlements)?);
    let hub = Arc::new(SettlementHub::new(vec![recorder], history));

    // Replay the journal: every change acknowledged before the last stop comes back.
    let options = Options { sync: config.journal_sync, ..Options::default() };
    let (journal, recovered, _) = Journal::open(&config.journal_dir(), options)?;
    if let Some((segment, offset, seq)) = &recovered.truncated {
        tracing::warn!(segment = %segment.display(), offset, seq, "journal had a torn tail (a batch cut short by a crash); it was cut off");
    }
    let replayed = recovered.records.len();
    let exchange = Arc::new(Exchange::recover(config.policy.clone(), hub, clock, Arc::new(journal), &recovered).await?);
    if replayed > 0 {
        tracing::info!(entries = replayed, head = ?recovered.head.map(|h| (h.seq, hex::encode(h.hash))), "journal replayed");
    }
    Ok(Parts { exchange, principals, max_message_bytes: config.max_message_bytes })
}

/// Serves on an already bound listener until `shutdown` resolves.
pub async fn run(
    parts: Parts,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    let addr = listener.local_addr().ok();
    tracing::info!(?addr, principals = parts.principals.len(), "serving emission_auction.v1");
    let exchange = Arc::clone(&parts.exchange);
    crate::grpc::serve(listener, parts.exchange, parts.principals, parts.max_message_bytes, shutdown).await?;
    // Auction tasks stop before the journal closes: nothing is written after this returns.
    exchange.shutdown().await;
    drop(exchange);
    tracing::info!("server stopped");
    Ok(())
}

/// Serves the API on `listener` and the public results board ([`crate::board`]: the board, the
/// report and `/metrics`) on `board`, until `shutdown` resolves; both stop together.
pub async fn run_with_board(
    parts: Parts,
    listener: TcpListener,
    board: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut board_stopped = stopped.clone();
    // The board also stops if the API server ends on an error (the sender is dropped).
    let board = tokio::spawn(crate::board::serve(board, Arc::clone(&parts.exchange), async move {
        let _ = board_stopped.wait_for(|stop| *stop).await;
    }));
    let served = run(parts, listener, async move {
        shutdown.await;
        let _ = stop.send(true);
    })
    .await;
    drop(stopped);
    let board = board.await.map_err(|e| ServerError::Board(std::io::Error::other(e)))?;
    served?;
    board.map_err(ServerError::Board)
}
