//! Starting a server from a [`Config`]: data directory, principals, recorders, the exchange,
//! then the gRPC listener. `main`, the demo and the integration tests all come through here.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::auth::{AuthError, PrincipalStore};
use crate::config::RecorderKind;
use crate::config::{Config, TlsFiles};
use crate::grpc::ServeOptions;
use crate::journal::{Journal, JournalError, Options};
use crate::recorders::Hooks;
use crate::recorders::nats::NatsRecorder;
use crate::recorders::postgres::PostgresRecorder;
use crate::service::Exchange;
use crate::service::clock::{Clock, SystemClock};
use crate::service::outbox::Recording;
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
    #[error("TLS file {path}: {source}")]
    TlsFile { path: String, source: std::io::Error },
    #[error(
        "refusing to serve plain text on {0}, which is not a loopback address: configure [tls] cert and key, or set allow_plaintext = true behind a TLS-terminating proxy"
    )]
    Plaintext(std::net::SocketAddr),
    #[error("results board: {0}")]
    Board(std::io::Error),
    #[error(transparent)]
    Key(#[from] crate::service::seal::KeyError),
}

/// Everything a running server is made of, before it listens.
pub struct Parts {
    pub exchange: Arc<Exchange>,
    /// The principals file as the server sees it; reload it through this handle (SIGHUP).
    pub principals: Arc<PrincipalStore>,
    /// TLS (read from the configured files), limits and the message size.
    pub serve: ServeOptions,
    pub allow_plaintext: bool,
    /// How often the principals file is checked for changes.
    pub principals_poll: Duration,
}

/// The configured recorders, opened (a remote one that cannot be reached now is still
/// returned: it catches up from its cursor once it answers), and what they need once the
/// exchange is built.
async fn recorders(config: &Config) -> Result<(Vec<Recording>, Hooks), ServerError> {
    let mut out = Vec::new();
    let mut hooks = Hooks::default();
    for recorder in &config.recorders {
        let opened: Arc<dyn Recorder> = match &recorder.kind {
            RecorderKind::JsonLines { path } => {
                let path = path.clone().unwrap_or_else(|| config.settlements_file());
                Arc::new(JsonLinesRecorder::open(&path)?)
            }
            RecorderKind::Postgres { url, schema } => {
                Arc::new(PostgresRecorder::new(url, schema, hooks.directory.clone())?)
            }
            RecorderKind::Nats { url, stream, subject_prefix } => {
                let nats = Arc::new(NatsRecorder::new(url, stream, subject_prefix, hooks.directory.clone()));
                hooks.nats.push(Arc::clone(&nats));
                nats
            }
        };
        out.push(Recording { recorder: opened, required: recorder.required });
    }
    Ok((out, hooks))
}

/// Opens the data directory and builds the exchange with the wall clock.
pub async fn assemble(config: &Config) -> Result<Parts, ServerError> {
    assemble_with_clock(config, Arc::new(SystemClock)).await
}

pub async fn assemble_with_clock(config: &Config, clock: Arc<dyn Clock>) -> Result<Parts, ServerError> {
    crate::private::create_dir(&config.data_dir)
        .map_err(|source| ServerError::DataDir { path: config.data_dir.display().to_string(), source })?;
    let principals = Arc::new(PrincipalStore::open(&config.principals_file)?);
    if principals.current().is_empty() {
        tracing::warn!(file = %config.principals_file.display(), "no principals: every call will be refused; add one with `emission-auction principal add`");
    }
    let (recordings, hooks) = recorders(config).await?;

    // Replay the journal: every change acknowledged before the last stop comes back.
    let options = Options { sync: config.journal_sync, ..Options::default() };
    let (journal, recovered, _) = Journal::open(&config.journal_dir(), options)?;
    if let Some((segment, offset, seq)) = &recovered.truncated {
        tracing::warn!(segment = %segment.display(), offset, seq, "journal had a torn tail (a batch cut short by a crash); it was cut off");
    }
    let replayed = recovered.records.len();
    let master = master_key(config)?;
    let mut exchange =
        Exchange::recover_keyed(config.policy.clone(), clock, Arc::new(journal), recordings, &recovered, master)
            .await?;
    exchange.set_eligibility(config.eligibility.clone());
    let exchange = Arc::new(exchange);
    hooks.attach(&exchange);
    if replayed > 0 {
        tracing::info!(entries = replayed, head = ?recovered.head.map(|h| (h.seq, hex::encode(h.hash))), "journal replayed");
    }
    let serve = ServeOptions {
        max_message_bytes: config.max_message_bytes,
        tls: config.tls.as_ref().map(tls_config).transpose()?,
        limits: config.limits.clone(),
    };
    Ok(Parts {
        exchange,
        principals,
        serve,
        allow_plaintext: config.allow_plaintext,
        principals_poll: config.principals_poll,
    })
}

/// The master key that seals bids at rest: the configured file, or the default beside the data
/// directory, created (0600) when missing.
fn master_key(config: &Config) -> Result<crate::service::seal::MasterKey, ServerError> {
    let (path, default) = config.key_file();
    let (key, created) = crate::service::seal::MasterKey::load(&path, default)?;
    if created {
        tracing::warn!(file = %path.display(), "created a master key for sealed bids (mode 0600) beside the data directory; keep it out of the data directory's backups, and set master_key_file to keep it elsewhere");
    }
    Ok(key)
}

/// Reads the server's certificate, key and client CA.
fn tls_config(files: &TlsFiles) -> Result<ServerTlsConfig, ServerError> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|source| ServerError::TlsFile { path: path.display().to_string(), source })
    };
    let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(read(&files.cert)?, read(&files.key)?));
    if let Some(ca) = &files.client_ca {
        tls = tls.client_ca_root(Certificate::from_pem(read(ca)?)).client_auth_optional(!files.require_client_cert);
    }
    Ok(tls)
}

/// Serves on an already bound listener until `shutdown` resolves.
pub async fn run(
    parts: Parts,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    let addr = listener.local_addr().ok();
    match (&parts.serve.tls, addr) {
        (Some(_), _) => {}
        (None, Some(addr)) if !addr.ip().is_loopback() && !parts.allow_plaintext => {
            return Err(ServerError::Plaintext(addr));
        }
        (None, _) if parts.allow_plaintext => {
            tracing::warn!(
                ?addr,
                "serving plain text (allow_plaintext): tokens and sealed bids cross the network unencrypted unless a proxy terminates TLS"
            );
        }
        (None, _) => {
            tracing::warn!(
                ?addr,
                "serving plain text on loopback, for development only; configure [tls] to serve other hosts"
            );
        }
    }
    tracing::info!(
        ?addr,
        principals = parts.principals.current().len(),
        tls = parts.serve.tls.is_some(),
        "serving emission_auction.v1"
    );
    let exchange = Arc::clone(&parts.exchange);
    // The principals file is polled for changes while the server runs.
    let (stop_watch, watch_stopped) = tokio::sync::oneshot::channel::<()>();
    let watcher = tokio::spawn(Arc::clone(&parts.principals).watch(parts.principals_poll, async {
        let _ = watch_stopped.await;
    }));
    let served = crate::grpc::serve(listener, parts.exchange, parts.principals, parts.serve, shutdown).await;
    let _ = stop_watch.send(());
    let _ = watcher.await;
    served?;
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
