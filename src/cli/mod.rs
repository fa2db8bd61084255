//! The command line: `serve`, `demo`, `principal add|list|remove|rotate`, `journal verify|replay`, and client
//! subcommands that make every RPC of the API from a shell:
//!
//! - `auction` (AuctionOperator, plus `list` and `watch` from Trading): `create` in all six
//!   formats, with the English and clock terms as flags; `open`, `close`, `advance` (a clock
//!   round), `cancel --reason`, `get`, `list`, `bids` (after the close), and `watch`, which
//!   follows `Trading.WatchAuction` one line per public change;
//! - `bid` (Trading): `place`, `revise`, `withdraw`, `list` (your own bids), `auction`,
//!   `auctions`, and the same `watch`;
//! - `settlement` (Results): `get`, and `watch` over `SubscribeSettlements`.
//!
//! Flags that belong to another format than `--format` names are refused here, before anything
//! is sent; every other check is the server's, whose errors are shown with their reason code and
//! numbers. Results go to standard output through `render::out!` and never panic on a closed
//! pipe; a stream that ends early (a watcher too slow, a server stopping) says on standard
//! error how to resume it.

pub mod client;
pub mod demo;
pub mod enterprise;
pub mod loadgen;
pub mod render;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::auth::{Principal, Principals, Role};
use crate::config::{Config, TlsFiles};
use crate::domain::{CreditCode, Timestamp};
use crate::proto as pb;

use client::{Terminal, request_id};
use render::{OutputError, out};

#[derive(Debug, Parser)]
#[command(
    name = "emission-auction",
    version,
    about = "Electronic auction engine for emission-rights trading (排污权交易)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Top,
    /// Log lines on standard error: for people, or one JSON object per line for log shippers.
    #[arg(long, global = true, value_enum, default_value = "human")]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Top {
    /// Run the server.
    Serve(ServeCommand),
    /// Start a server on a loopback port, run two sealed auctions and an open ascending one
    /// (watched live) from simulated terminals, print the settlements, and stop.
    Demo(demo::DemoArgs),
    /// Write the statistics report (HTML, printable) of a data directory, replaying its
    /// journal offline; changes nothing there.
    Report(ReportArgs),
    /// Manage the principals file (who may call the API).
    #[command(subcommand)]
    Principal(PrincipalCommand),
    /// Operator calls: create, open, close, advance, cancel, inspect and watch auctions.
    Auction(ClientArgs<AuctionCommand>),
    /// Terminal calls: place, revise, withdraw and list your own bids; find and watch auctions.
    Bid(ClientArgs<BidCommand>),
    /// Results: settlements of concluded auctions, one or as they are published.
    Settlement(ClientArgs<SettlementCommand>),
    /// Operator calls: the enterprise registry (add, update, suspend, reinstate, list, import).
    Enterprise(ClientArgs<enterprise::EnterpriseCommand>),
    /// The write-ahead journal.
    #[command(subcommand)]
    Journal(JournalCommand),
    /// Load a server with bids (unary or streamed, closed loop or fixed rate) and measure it
    /// against the health-check and fdatasync ceilings of the same run.
    Loadgen(loadgen::LoadgenArgs),
    /// Signed receipts, offline.
    #[command(subcommand)]
    Receipt(ReceiptCommand),
}

#[derive(Debug, Subcommand)]
pub enum ReceiptCommand {
    /// Check a receipt's signature (a file from `bid place --save-receipt`) or an inclusion
    /// proof (a file from `bid proof`: the receipt's signature, then its path to the root).
    /// Exit status 0 only when everything checks out.
    Verify {
        /// The receipt or proof file (JSON).
        file: PathBuf,
        /// The server's public key, hex (`settlement server-key`).
        #[arg(long)]
        key: String,
        /// The settlement's book root, hex (`settlement get`): the proof must lead to it.
        #[arg(long)]
        root: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum JournalCommand {
    /// Check every record and the hash chain, change nothing, and print the head hash.
    Verify {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Verify the journal, replay it offline through the auction core, and write every
    /// settlement it derives, one JSON object per line in journal order, each with the journal
    /// record and hash it was derived from. Changes nothing in the data directory.
    Replay {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Where to write the settlements (JSON lines); `-` for standard output.
        #[arg(long)]
        out: PathBuf,
    },
}

/// `serve`: the server's configuration and the results board.
#[derive(Debug, Args)]
pub struct ServeCommand {
    #[command(flatten)]
    pub args: ServeArgs,
    /// Serve the public results board, the report and /metrics over HTTP on this address
    /// (e.g. 127.0.0.1:8080); off by default.
    #[arg(long)]
    pub board_listen: Option<SocketAddr>,
}

impl ServeCommand {
    pub fn config(&self) -> Result<Config, crate::config::ConfigError> {
        let mut config = self.args.config()?;
        if let Some(board) = self.board_listen {
            config.board_listen = Some(board);
        }
        Ok(config)
    }
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// First day to include, YYYY-MM-DD (UTC).
    #[arg(long)]
    pub from: Option<String>,
    /// Last day to include, YYYY-MM-DD (UTC).
    #[arg(long)]
    pub to: Option<String>,
    /// Where to write the HTML report.
    #[arg(long)]
    pub out: PathBuf,
}

/// `report`: the statistics report of a data directory.
pub fn report(args: ReportArgs) -> Result<(), Box<dyn std::error::Error>> {
    let config = ServeArgs::files(args.config, args.data_dir).config()?;
    crate::board::report::run(&config, args.from.as_deref(), args.to.as_deref(), &args.out)
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML configuration file; embedded defaults otherwise.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Address to listen on, e.g. 127.0.0.1:50051.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Directory for the principals file and settlements.jsonl.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The server's certificate chain (PEM); with --tls-key, serves TLS.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The server's private key (PEM).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// CA (PEM) whose client certificates are verified and may stand for a principal (mTLS).
    #[arg(long, requires = "tls_cert")]
    pub client_ca: Option<PathBuf>,
    /// Refuse connections without a client certificate signed by the client CA.
    #[arg(long, requires = "client_ca")]
    pub require_client_cert: bool,
    /// Serve plain text on an address that is not loopback (behind a TLS-terminating proxy).
    #[arg(long)]
    pub allow_plaintext: bool,
}

impl ServeArgs {
    /// Arguments that only locate the configuration and data directory.
    pub fn files(config: Option<PathBuf>, data_dir: Option<PathBuf>) -> ServeArgs {
        ServeArgs {
            config,
            listen: None,
            data_dir,
            tls_cert: None,
            tls_key: None,
            client_ca: None,
            require_client_cert: false,
            allow_plaintext: false,
        }
    }

    pub fn config(&self) -> Result<Config, crate::config::ConfigError> {
        let mut config = Config::load(self.config.as_deref())?;
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        if let Some(dir) = &self.data_dir {
            config.set_data_dir(dir.clone());
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            config.tls = Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: self.client_ca.clone(),
                require_client_cert: self.require_client_cert,
            });
        }
        if self.allow_plaintext {
            config.allow_plaintext = true;
        }
        Ok(config)
    }
}

/// Where the principals file is: the configuration file's `principals_file`, or
/// `<data-dir>/principals.json`.
#[derive(Debug, Args)]
pub struct PrincipalsFileArgs {
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// Commands that change the principals file. A running server picks the change up within a
/// second (it polls the file) or at once on SIGHUP.
#[derive(Debug, Subcommand)]
pub enum PrincipalCommand {
    /// Add a principal under a new id (never reused) and print its token once.
    Add {
        #[arg(long)]
        name: String,
        #[arg(long)]
        role: Role,
        /// Bidders: the unified social credit code of the enterprise they bid for.
        #[arg(long)]
        enterprise: Option<CreditCode>,
        /// The token is refused from this date on (YYYY-MM-DD, midnight UTC).
        #[arg(long)]
        expires: Option<String>,
        /// A client certificate (PEM) that also identifies this principal over mutual TLS.
        #[arg(long)]
        client_cert: Option<PathBuf>,
        #[command(flatten)]
        file: PrincipalsFileArgs,
    },
    /// List principals: id, name, role, enterprise, expiry, whether a client certificate maps.
    List {
        #[command(flatten)]
        file: PrincipalsFileArgs,
    },
    /// Remove a principal: its token and certificate are refused from the next call on, and its
    /// id is retired (a new principal of the same name gets a new id and inherits nothing).
    Remove {
        #[arg(long)]
        name: String,
        #[command(flatten)]
        file: PrincipalsFileArgs,
    },
    /// Give a principal a new token (printed once); the old one is refused from the next call on.
    Rotate {
        #[arg(long)]
        name: String,
        /// The new token is refused from this date on (YYYY-MM-DD); `never` clears an expiry.
        #[arg(long)]
        expires: Option<String>,
        /// Also map a new client certificate (PEM) to the principal.
        #[arg(long)]
        client_cert: Option<PathBuf>,
        #[command(flatten)]
        file: PrincipalsFileArgs,
    },
}

impl clap::builder::ValueParserFactory for Role {
    type Parser = clap::builder::ValueParser;
    fn value_parser() -> Self::Parser {
        clap::builder::ValueParser::new(|s: &str| s.parse::<Role>())
    }
}

impl clap::builder::ValueParserFactory for CreditCode {
    type Parser = clap::builder::ValueParser;
    fn value_parser() -> Self::Parser {
        clap::builder::ValueParser::new(|s: &str| s.parse::<CreditCode>().map_err(|e| format!("{s}: {e}")))
    }
}

#[derive(Debug, Args)]
pub struct ClientArgs<C: Subcommand> {
    /// Server URL.
    #[arg(long, env = "EA_SERVER", default_value = "http://127.0.0.1:50051", global = true)]
    pub server: String,
    /// Bearer token (from `principal add`); not needed when --cert maps to a principal.
    #[arg(long, env = "EA_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// CA certificate (PEM) that signed the server's certificate; needed for https:// servers.
    #[arg(long, env = "EA_CA", global = true)]
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS.
    #[arg(long, env = "EA_CERT", global = true, requires = "key")]
    pub cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, env = "EA_KEY", global = true, requires = "cert")]
    pub key: Option<PathBuf>,
    /// The name the server's certificate must carry, when it differs from the server URL's host.
    #[arg(long, env = "EA_TLS_DOMAIN", global = true)]
    pub tls_domain: Option<String>,
    #[command(subcommand)]
    pub command: C,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// Sealed bids on one indivisible lot; the highest pays its bid.
    FirstPrice,
    /// Sealed (price, quantity) bids; every winner pays the clearing price.
    UniformPrice,
    /// Sealed (price, quantity) bids; every winner pays its own bid.
    PayAsBid,
    /// A reserve sale at the posted price (the floor).
    FixedPrice,
    /// Open ascending bidding on one indivisible lot (网络竞价); needs --increment and
    /// --countdown-seconds.
    #[value(alias = "ascending-english")]
    English,
    /// Rounds at a rising clock price on a divisible lot; needs --increment and --round-seconds.
    #[value(alias = "ascending-clock")]
    Clock,
}

/// What a clock auction does with a bidder that states no demand in a round.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SilentArg {
    /// It keeps its last demand.
    Keep,
    /// Its demand drops to zero (the default).
    Drop,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PhaseArg {
    Scheduled,
    Open,
    Settled,
    Failed,
    Cancelled,
}

impl PhaseArg {
    fn proto(self) -> pb::AuctionPhase {
        match self {
            PhaseArg::Scheduled => pb::AuctionPhase::Scheduled,
            PhaseArg::Open => pb::AuctionPhase::Open,
            PhaseArg::Settled => pb::AuctionPhase::Settled,
            PhaseArg::Failed => pb::AuctionPhase::Failed,
            PhaseArg::Cancelled => pb::AuctionPhase::Cancelled,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OriginArg {
    Reserve,
    Erc,
    Allocated,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum TieArg {
    Time,
    ProRata,
    Seeded,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum UnderArg {
    SellAvailable,
    Cancel,
    ClearAtFloor,
}

#[derive(Debug, Subcommand)]
pub enum AuctionCommand {
    /// Create an auction (operator).
    Create(Box<CreateArgs>),
    /// Open a scheduled auction now.
    Open { auction: String },
    /// Close an open auction now and settle it.
    Close { auction: String },
    /// End a clock auction's running round now.
    Advance { auction: String },
    /// Cancel an auction that has not concluded.
    Cancel {
        auction: String,
        /// The operator's words, kept in the settlement's note.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Show one auction.
    Get { auction: String },
    /// List auctions, optionally filtered.
    List(ListArgs),
    /// List every bid of a concluded auction (operator, auditor).
    Bids { auction: String },
    /// Follow an auction's public changes, one line each, until it concludes.
    Watch(WatchArgs),
    /// Record a deposit (保证金) received from an enterprise for an auction that asks for one.
    Deposit {
        auction: String,
        /// The enterprise's credit code.
        #[arg(long)]
        enterprise: String,
        /// Yuan received; it adds to what the enterprise posted before.
        #[arg(long, value_name = "YUAN")]
        amount: String,
    },
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// SO2, NOX, COD, NH3_N, SMOKE_DUST or INDUSTRIAL_DUST.
    #[arg(long)]
    pub pollutant: Option<String>,
    /// GB/T 2260 region code, e.g. 140100.
    #[arg(long)]
    pub region: Option<String>,
    #[arg(long, value_enum)]
    pub phase: Option<PhaseArg>,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    pub auction: String,
    /// The last sequence number already seen: resume after it. Without it, the watch starts
    /// from the auction's current state.
    #[arg(long, default_value_t = 0)]
    pub after: u64,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    #[arg(long)]
    pub lot_id: String,
    /// SO2, NOX, COD, NH3_N, SMOKE_DUST or INDUSTRIAL_DUST.
    #[arg(long)]
    pub pollutant: String,
    /// Tonnes, up to three decimals.
    #[arg(long)]
    pub quantity: String,
    /// Divisible lots: every bid and allocation is a multiple of it (tonnes).
    #[arg(long, default_value = "")]
    pub fill_unit: String,
    /// Seller's unified social credit code.
    #[arg(long)]
    pub seller: String,
    #[arg(long, value_enum)]
    pub origin: OriginArg,
    /// Required for --origin erc.
    #[arg(long, default_value = "")]
    pub certificate_id: String,
    /// GB/T 2260 region code, e.g. 140100.
    #[arg(long)]
    pub region: String,
    /// The year the right was certified.
    #[arg(long)]
    pub vintage_year: u32,
    #[arg(long, default_value_t = 5)]
    pub valid_years: u32,
    /// The investment in the project behind the right, in yuan (statistics only).
    #[arg(long)]
    pub project_investment: Option<String>,
    /// The project's expected annual output value, in yuan (statistics only).
    #[arg(long)]
    pub expected_annual_output: Option<String>,
    #[arg(long, value_enum)]
    pub format: FormatArg,
    /// Ties at the margin (English: at the cap; clock: leftover supply; seeded is not for clock).
    #[arg(long, value_enum, default_value = "time")]
    pub tie: TieArg,
    #[arg(long, value_enum, default_value = "sell-available")]
    pub undersubscription: UnderArg,
    /// Fewer bidders than this and the auction fails; 0 or 1: any single bidder may win.
    #[arg(long, default_value_t = 0)]
    pub min_bidders: u32,
    /// Percent of the lot one bidder may hold.
    #[arg(long, default_value = "")]
    pub per_bidder_cap: String,
    /// A placed bid stands: no revision or withdrawal.
    #[arg(long)]
    pub irrevocable: bool,
    /// Price conversion factor (价格折算因子) applied to the benchmark; 1 by default.
    #[arg(long, default_value = "")]
    pub conversion_factor: String,
    /// Reserve lots: the floor's multiplier over the benchmark; the policy default otherwise.
    #[arg(long, default_value = "")]
    pub reserve_markup: String,
    /// Percent over the floor, or "none"; the policy default otherwise.
    #[arg(long)]
    pub cap: Option<String>,
    /// Seconds from now until the auction opens.
    #[arg(long, value_name = "SECONDS", default_value_t = 0)]
    pub opens_in: u64,
    /// Seconds from now until the auction closes. English: the end of the free-bidding
    /// period, after which the timed period runs; clock: a hard stop.
    #[arg(long, value_name = "SECONDS")]
    pub closes_in: u64,
    /// English: the first bid's minimum; clock: round 1's clock price. The floor if omitted.
    #[arg(long, value_name = "PRICE", help_heading = "English and clock terms")]
    pub start_price: Option<String>,
    /// English: each later bid is at least the current price plus this; clock: the clock
    /// price's rise from one round to the next (yuan/t).
    #[arg(long, value_name = "PRICE", help_heading = "English and clock terms")]
    pub increment: Option<String>,
    /// The timed period's countdown; each bid in it restarts it.
    #[arg(long, value_name = "SECONDS", help_heading = "English terms")]
    pub countdown_seconds: Option<u32>,
    /// Seconds from now to a hard stop: no bid counts at or after it, whatever the countdown.
    /// Must be later than --closes-in.
    #[arg(long, value_name = "SECONDS", help_heading = "English terms")]
    pub hard_stop_in: Option<u64>,
    /// At most this many restarts of the countdown; no limit if omitted.
    #[arg(long, value_name = "N", help_heading = "English terms")]
    pub max_extensions: Option<u32>,
    /// Fewer bidders than this by the end of the free period: no timed period, it ends then.
    #[arg(long, value_name = "N", help_heading = "English terms")]
    pub timed_min_bidders: Option<u32>,
    /// How long each round lasts unless the operator advances it (`auction advance`).
    #[arg(long, value_name = "SECONDS", help_heading = "Clock terms")]
    pub round_seconds: Option<u32>,
    /// What a bidder silent in a round demands: keep its last demand, or drop to zero (the
    /// default).
    #[arg(long, value_enum, value_name = "KEEP_OR_DROP", help_heading = "Clock terms")]
    pub silent: Option<SilentArg>,
    /// A fixed deposit (保证金) every bidder posts, in yuan.
    #[arg(long, value_name = "YUAN", help_heading = "Deposit", conflicts_with = "deposit_percent")]
    pub deposit_amount: Option<String>,
    /// A deposit of this percent x benchmark x lot quantity x --deposit-years.
    #[arg(long, value_name = "PCT", help_heading = "Deposit", requires = "deposit_years")]
    pub deposit_percent: Option<String>,
    #[arg(long, value_name = "N", help_heading = "Deposit", requires = "deposit_percent")]
    pub deposit_years: Option<u32>,
}

#[derive(Debug, Subcommand)]
pub enum BidCommand {
    /// Place a bid as the enterprise of your token.
    Place {
        auction: String,
        /// Omit in a fixed-price sale to request at the posted price.
        #[arg(long, default_value = "")]
        price: String,
        /// Omit in a single-lot auction to bid for the whole lot.
        #[arg(long, default_value = "")]
        quantity: String,
        /// Also write the signed receipt (JSON) here, for `receipt verify`.
        #[arg(long)]
        save_receipt: Option<PathBuf>,
    },
    /// Replace one of your bids (it takes a new place in time priority).
    Revise {
        auction: String,
        bid: String,
        #[arg(long)]
        price: String,
        #[arg(long)]
        quantity: String,
        #[arg(long)]
        save_receipt: Option<PathBuf>,
    },
    /// Withdraw one of your bids.
    Withdraw {
        auction: String,
        bid: String,
        #[arg(long)]
        save_receipt: Option<PathBuf>,
    },
    /// Once the auction concluded: the proof that your bid was in the final book unchanged
    /// (JSON, for `receipt verify`).
    Proof {
        auction: String,
        bid: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Your own bids in an auction.
    List { auction: String },
    /// One auction's public terms and phase.
    Auction { auction: String },
    /// Auctions you can bid in.
    Auctions(ListArgs),
    /// Follow an auction's public changes, one line each, until it concludes.
    Watch(WatchArgs),
}

#[derive(Debug, Subcommand)]
pub enum SettlementCommand {
    /// The settlement of one concluded auction.
    Get { auction: String },
    /// The server's Ed25519 public key, which signs every receipt (hex).
    ServerKey,
    /// Print settlements as they are published, from a sequence number.
    Watch {
        /// The first settlement sequence number to print (1: from the start).
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// Stop after this many.
        #[arg(long)]
        limit: Option<usize>,
    },
}

/// What a client command failed with.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Connect(#[from] client::ConnectError),
    #[error("{}", render::status(.0))]
    Rpc(#[from] tonic::Status),
    #[error("{0}")]
    Usage(String),
    /// A stream ended before its natural end; `resume` is the command that picks it up.
    #[error("{why}\nresume with: {resume}")]
    Ended { why: String, resume: String },
    #[error("{0}")]
    Output(#[from] OutputError),
}

/// `principal add|list|remove|rotate`, on the principals file.
pub fn principal(command: PrincipalCommand) -> Result<(), Box<dyn std::error::Error>> {
    let file = match &command {
        PrincipalCommand::Add { file, .. }
        | PrincipalCommand::List { file }
        | PrincipalCommand::Remove { file, .. }
        | PrincipalCommand::Rotate { file, .. } => file,
    };
    let config = ServeArgs::files(file.config.clone(), file.data_dir.clone()).config()?;
    let path = &config.principals_file;
    let mut principals = Principals::load(path)?;
    let expiry = |text: &Option<String>| -> Result<Option<Option<i64>>, ClientError> {
        match text.as_deref() {
            None => Ok(None),
            Some("never") => Ok(Some(None)),
            Some(date) => crate::config::parse_date(date)
                .map(|t| Some(Some(t.as_micros() / 1_000_000)))
                .ok_or_else(|| ClientError::Usage(format!("--expires {date:?}: expected YYYY-MM-DD or never"))),
        }
    };
    let read_cert = |path: &Path| std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()));
    let reload_note = "a running server picks this up within a second, or at once on SIGHUP";
    match &command {
        PrincipalCommand::Add { name, role, enterprise, expires, client_cert, .. } => {
            let expires = expiry(expires)?;
            let token = principals.add(Principal { name: name.clone(), role: *role, enterprise: *enterprise })?;
            if let Some(expires) = expires {
                principals.set_expiry(name, expires)?;
            }
            if let Some(cert) = client_cert {
                principals.set_client_cert(name, &read_cert(cert)?)?;
            }
            principals.save(path)?;
            let id = principals.list().into_iter().find(|p| &p.principal.name == name).map(|p| p.id);
            let id = id.map_or_else(String::new, |id| format!(" as {id}"));
            eprintln!("added {role} {name:?}{id} to {}; the token is shown only this once:", path.display());
            out!("{token}")?;
        }
        PrincipalCommand::List { .. } => {
            if principals.legacy_count() > 0 {
                // Store the ids given at load, so that they stay what they are now.
                principals.save(path)?;
                eprintln!(
                    "{} principals had no id; their ids are now stored in {}",
                    principals.legacy_count(),
                    path.display()
                );
            }
            for p in principals.list() {
                let expires = p.expires_at_unix.map_or_else(
                    || "-".to_owned(),
                    |s| Timestamp::from_micros(s.saturating_mul(1_000_000)).to_string(),
                );
                out!(
                    "{}\t{}\t{}\t{}\texpires={}\tclient_cert={}",
                    p.id,
                    p.principal.name,
                    p.principal.role,
                    p.principal.enterprise.map_or_else(|| "-".to_owned(), |e| e.to_string()),
                    expires,
                    if p.client_cert { "yes" } else { "no" }
                )?;
            }
        }
        PrincipalCommand::Remove { name, .. } => {
            let id = principals.remove(name)?;
            principals.save(path)?;
            eprintln!("removed {name:?} ({id}) from {}; {reload_note}", path.display());
        }
        PrincipalCommand::Rotate { name, expires, client_cert, .. } => {
            let expires = expiry(expires)?;
            let token = principals.rotate(name)?;
            if let Some(expires) = expires {
                principals.set_expiry(name, expires)?;
            }
            if let Some(cert) = client_cert {
                principals.set_client_cert(name, &read_cert(cert)?)?;
            }
            principals.save(path)?;
            eprintln!(
                "rotated {name:?} in {}: the old token is revoked ({reload_note}); the new one is shown only this once:",
                path.display()
            );
            out!("{token}")?;
        }
    }
    Ok(())
}

/// `journal verify` and `journal replay`: exit status 0 when every record checks out (a torn
/// tail is reported, since the server cuts it off on start), an error when synced data is
/// damaged or missing (fewer records than the anchor names) or a record does not replay.
pub fn journal(command: JournalCommand) -> Result<(), Box<dyn std::error::Error>> {
    let (config, data_dir, out) = match command {
        JournalCommand::Verify { config, data_dir } => (config, data_dir, None),
        JournalCommand::Replay { config, data_dir, out } => (config, data_dir, Some(out)),
    };
    let config = ServeArgs::files(config, data_dir).config()?;
    let dir = config.journal_dir();
    let verified = crate::journal::verify(&dir)?;
    // Reports go to stderr when the settlements go to stdout.
    let to_stdout = out.as_deref() == Some(Path::new("-"));
    let report = |line: String| -> Result<(), OutputError> {
        if to_stdout {
            eprintln!("{line}");
            Ok(())
        } else {
            out!("{line}")
        }
    };
    report(format!(
        "journal {}: {} records verified (CRC32C, sequence, hash chain)",
        dir.display(),
        verified.records.len()
    ))?;
    match verified.head {
        Some(head) => report(format!("head: record {} hash {}", head.seq, hex::encode(head.hash)))?,
        None => report("head: empty journal".into())?,
    }
    // `verify` refused already if the journal holds less than its anchor names.
    match verified.anchor {
        Some(a) => {
            report(format!("anchor: record {} hash {} present (segment {})", a.seq, hex::encode(a.hash), a.segment))?
        }
        None => report(format!(
            "anchor: none at {} (a journal from before anchors; the server writes one on start)",
            crate::journal::anchor_path(&dir).display()
        ))?,
    }
    if let Some((segment, offset, seq)) = &verified.truncated {
        report(format!(
            "torn tail: {} at offset {offset} (would-be record {seq}); the server cuts it off on start",
            segment.display()
        ))?;
    }
    let Some(out) = out else { return Ok(()) };
    let replayed = crate::service::replay(verified.entries())?;
    // The very bytes the JSON-lines recorder writes for each settlement.
    let mut text = Vec::new();
    for settlement in &replayed.settlements {
        text.extend_from_slice(&crate::service::recorder::JsonLinesRecorder::line(settlement)?);
    }
    let lines = replayed.settlements.len();
    if to_stdout {
        render::write_raw(&text)?;
    } else {
        std::fs::write(&out, text).map_err(|e| format!("{}: {e}", out.display()))?;
    }
    if !replayed.still_sealed.is_empty() {
        let waiting: usize = replayed.still_sealed.values().sum();
        report(format!(
            "sealed: {waiting} bid entries of {} auctions not concluded yet stay sealed (their keys are journaled at their close)",
            replayed.still_sealed.len()
        ))?;
    }
    report(format!(
        "replayed: {} auctions, {lines} settlements derived{}",
        replayed.auctions.len(),
        if to_stdout { String::new() } else { format!(", written to {}", out.display()) }
    ))?;
    Ok(())
}

pub(crate) async fn terminal<C: Subcommand>(args: &ClientArgs<C>) -> Result<Terminal, ClientError> {
    if args.token.is_none() && args.cert.is_none() {
        return Err(ClientError::Usage(
            "no token: pass --token or set EA_TOKEN (or a client certificate with --cert)".into(),
        ));
    }
    let tls = client::ClientTls {
        ca: args.ca.clone(),
        cert: args.cert.clone(),
        key: args.key.clone(),
        domain: args.tls_domain.clone(),
    };
    Ok(Terminal::connect_with(&args.server, args.token.as_deref(), &tls).await?)
}

fn pollutant_filter(text: Option<&str>) -> Result<i32, ClientError> {
    let Some(text) = text else { return Ok(0) };
    let p: crate::domain::Pollutant = text.parse().map_err(ClientError::Usage)?;
    let name = format!("POLLUTANT_{}", p.code());
    Ok(pb::Pollutant::from_str_name(&name).map_or(0, |p| p as i32))
}

fn list_request(l: &ListArgs) -> Result<pb::ListAuctionsRequest, ClientError> {
    Ok(pb::ListAuctionsRequest {
        pollutant: pollutant_filter(l.pollutant.as_deref())?,
        region_code: l.region.clone().unwrap_or_default(),
        phase: l.phase.map_or(0, |p| p.proto() as i32),
    })
}

/// `seconds` after `now`, as the API's timestamp.
fn after(now: Timestamp, seconds: u64) -> prost_types::Timestamp {
    crate::grpc::convert::to_timestamp(Timestamp::from_micros(now.as_micros() + seconds as i64 * 1_000_000))
}

pub async fn auction(args: ClientArgs<AuctionCommand>) -> Result<(), ClientError> {
    // Checked before connecting: a mistyped command needs no server to be refused.
    let create = match &args.command {
        AuctionCommand::Create(c) => Some(create_request(c)?),
        _ => None,
    };
    let mut t = terminal(&args).await?;
    let op = &mut t.operator;
    let reference = |auction: &str| pb::AuctionRef { request_id: request_id(), auction_id: auction.to_owned() };
    let shown = match &args.command {
        AuctionCommand::Create(_) => op.create_auction(create.expect("built above")).await?.into_inner(),
        AuctionCommand::Open { auction } => op.open_auction(reference(auction)).await?.into_inner(),
        AuctionCommand::Close { auction } => op.close_auction(reference(auction)).await?.into_inner(),
        AuctionCommand::Advance { auction } => op.advance_round(reference(auction)).await?.into_inner(),
        AuctionCommand::Cancel { auction, reason } => op
            .cancel_auction(pb::CancelAuctionRequest {
                request_id: request_id(),
                auction_id: auction.clone(),
                reason: reason.clone(),
            })
            .await?
            .into_inner(),
        AuctionCommand::Get { auction } => {
            op.get_auction(pb::GetAuctionRequest { auction_id: auction.clone() }).await?.into_inner()
        }
        AuctionCommand::List(l) => {
            for a in t.trading.list_auctions(list_request(l)?).await?.into_inner().auctions {
                out!("{}\n", render::auction(&a))?;
            }
            return Ok(());
        }
        AuctionCommand::Bids { auction } => {
            let bids = op.list_bids(pb::ListBidsRequest { auction_id: auction.clone() }).await?.into_inner().bids;
            out!("{}", render::bids(&bids))?;
            return Ok(());
        }
        AuctionCommand::Watch(w) => return watch(&mut t, w, "auction").await,
        AuctionCommand::Deposit { auction, enterprise, amount } => {
            let request = pb::RecordDepositRequest {
                request_id: request_id(),
                auction_id: auction.clone(),
                enterprise: enterprise.clone(),
                amount: amount.clone(),
            };
            out!("{}\n", render::deposit(&op.record_deposit(request).await?.into_inner()))?;
            return Ok(());
        }
    };
    out!("{}", render::auction(&shown))?;
    Ok(())
}

/// The terms only one format takes: English (`ascending`) or clock (`clock`). Flags for
/// another format than the one named are refused rather than silently dropped.
fn format_terms(
    c: &CreateArgs,
    now: Timestamp,
) -> Result<(Option<pb::AscendingTerms>, Option<pb::ClockTerms>), ClientError> {
    let shared = [("--start-price", c.start_price.is_some()), ("--increment", c.increment.is_some())];
    let english = [
        ("--countdown-seconds", c.countdown_seconds.is_some()),
        ("--hard-stop-in", c.hard_stop_in.is_some()),
        ("--max-extensions", c.max_extensions.is_some()),
        ("--timed-min-bidders", c.timed_min_bidders.is_some()),
    ];
    let clock = [("--round-seconds", c.round_seconds.is_some()), ("--silent", c.silent.is_some())];
    let refuse = |flags: &[(&str, bool)], belongs: &str| match flags.iter().find(|(_, given)| *given) {
        Some((flag, _)) => Err(ClientError::Usage(format!("{flag} applies to --format {belongs} only"))),
        None => Ok(()),
    };
    let needs = |flag: &str| {
        ClientError::Usage(format!("--format {} needs {flag}", c.format.to_possible_value().expect("named").get_name()))
    };
    match c.format {
        FormatArg::English => {
            refuse(&clock, "clock")?;
            Ok((
                Some(pb::AscendingTerms {
                    start_price: c.start_price.clone().unwrap_or_default(),
                    increment: c.increment.clone().ok_or_else(|| needs("--increment"))?,
                    countdown_seconds: c.countdown_seconds.ok_or_else(|| needs("--countdown-seconds"))?,
                    hard_stop: c.hard_stop_in.map(|s| after(now, s)),
                    max_extensions: c.max_extensions,
                    timed_min_bidders: c.timed_min_bidders.unwrap_or(0),
                }),
                None,
            ))
        }
        FormatArg::Clock => {
            refuse(&english, "english")?;
            Ok((
                None,
                Some(pb::ClockTerms {
                    start_price: c.start_price.clone().unwrap_or_default(),
                    increment: c.increment.clone().ok_or_else(|| needs("--increment"))?,
                    round_seconds: c.round_seconds.ok_or_else(|| needs("--round-seconds"))?,
                    silent_keeps_demand: matches!(c.silent, Some(SilentArg::Keep)),
                }),
            ))
        }
        FormatArg::FirstPrice | FormatArg::UniformPrice | FormatArg::PayAsBid | FormatArg::FixedPrice => {
            refuse(&shared, "english or clock")?;
            refuse(&english, "english")?;
            refuse(&clock, "clock")?;
            Ok((None, None))
        }
    }
}

fn create_request(c: &CreateArgs) -> Result<pb::CreateAuctionRequest, ClientError> {
    let now = crate::service::clock::Clock::now(&crate::service::clock::SystemClock);
    let (ascending, clock) = format_terms(c, now)?;
    let pollutant = pollutant_filter(Some(&c.pollutant))?;
    let (cap_mode, cap_percent) = match c.cap.as_deref() {
        None => (pb::CapMode::Unspecified, String::new()),
        Some("none") => (pb::CapMode::None, String::new()),
        Some(pct) => (pb::CapMode::Percent, pct.to_owned()),
    };
    Ok(pb::CreateAuctionRequest {
        ascending,
        clock,
        request_id: request_id(),
        lot: Some(pb::Lot {
            lot_id: c.lot_id.clone(),
            pollutant,
            quantity: c.quantity.clone(),
            fill_unit: c.fill_unit.clone(),
            seller: c.seller.clone(),
            origin: match c.origin {
                OriginArg::Reserve => pb::LotOrigin::GovernmentReserve,
                OriginArg::Erc => pb::LotOrigin::ErcCertified,
                OriginArg::Allocated => pb::LotOrigin::Allocated,
            } as i32,
            certificate_id: c.certificate_id.clone(),
            region_code: c.region.clone(),
            vintage_year: c.vintage_year,
            valid_years: c.valid_years,
            project_investment: c.project_investment.clone().unwrap_or_default(),
            expected_annual_output: c.expected_annual_output.clone().unwrap_or_default(),
        }),
        format: match c.format {
            FormatArg::FirstPrice => pb::AuctionFormat::SealedFirstPrice,
            FormatArg::UniformPrice => pb::AuctionFormat::SealedUniformPrice,
            FormatArg::PayAsBid => pb::AuctionFormat::SealedPayAsBid,
            FormatArg::FixedPrice => pb::AuctionFormat::FixedPrice,
            FormatArg::English => pb::AuctionFormat::AscendingEnglish,
            FormatArg::Clock => pb::AuctionFormat::AscendingClock,
        } as i32,
        tie_rule: match c.tie {
            TieArg::Time => pb::TieRule::TimePriority,
            TieArg::ProRata => pb::TieRule::ProRata,
            TieArg::Seeded => pb::TieRule::SeededRandom,
        } as i32,
        undersubscription: match c.undersubscription {
            UnderArg::SellAvailable => pb::Undersubscription::SellAvailable,
            UnderArg::Cancel => pb::Undersubscription::Cancel,
            UnderArg::ClearAtFloor => pb::Undersubscription::ClearAtFloor,
        } as i32,
        min_bidders: c.min_bidders,
        per_bidder_cap_percent: c.per_bidder_cap.clone(),
        bid_revision: if c.irrevocable { pb::BidRevision::Irrevocable } else { pb::BidRevision::Revisable } as i32,
        conversion_factor: c.conversion_factor.clone(),
        reserve_markup: c.reserve_markup.clone(),
        cap_mode: cap_mode as i32,
        cap_percent,
        opens_at: Some(after(now, c.opens_in)),
        closes_at: Some(after(now, c.closes_in)),
        deposit: match (&c.deposit_amount, &c.deposit_percent) {
            (Some(amount), _) => Some(pb::DepositRule { fixed_amount: amount.clone(), ..Default::default() }),
            (None, Some(pct)) => Some(pb::DepositRule {
                percent: pct.clone(),
                years: c.deposit_years.unwrap_or_default(),
                ..Default::default()
            }),
            (None, None) => None,
        },
    })
}

/// A number the server put in a status's ErrorInfo, e.g. where to resume a stream.
fn status_number(status: &tonic::Status, key: &str) -> Option<u64> {
    use tonic_types::StatusExt;
    status.get_details_error_info()?.metadata.get(key)?.parse().ok()
}

/// `auction watch` and `bid watch`: prints every update of the auction until the stream ends
/// after its conclusion. A stream that ends earlier (the watcher fell behind, the server is
/// stopping, the connection broke) is an error that says how to resume without a gap.
async fn watch(t: &mut Terminal, w: &WatchArgs, command: &str) -> Result<(), ClientError> {
    let request = pb::WatchAuctionRequest { auction_id: w.auction.clone(), after_sequence: w.after };
    let mut stream = t.trading.watch_auction(request).await?.into_inner();
    let mut last = w.after;
    let resume = |after: u64| format!("emission-auction {command} watch {} --after {after}", w.auction);
    let gone = render::stdout_gone();
    tokio::pin!(gone);
    loop {
        let message = tokio::select! {
            message = stream.message() => message,
            () = &mut gone => return Err(OutputError::Closed.into()),
        };
        match message {
            Ok(Some(update)) => {
                out!("{}", render::auction_update(&update))?;
                last = last.max(update.sequence);
                let over = update.kind == pb::AuctionEventKind::Concluded as i32
                    || [pb::AuctionPhase::Settled, pb::AuctionPhase::Failed, pb::AuctionPhase::Cancelled]
                        .iter()
                        .any(|p| *p as i32 == update.phase);
                if over {
                    return Ok(());
                }
            }
            Ok(None) => {
                return Err(ClientError::Ended {
                    why: "the server ended the watch before the auction concluded".into(),
                    resume: resume(last),
                });
            }
            Err(status) => {
                let after = status_number(&status, "after_sequence").unwrap_or(last);
                return Err(ClientError::Ended { why: render::status(&status), resume: resume(after) });
            }
        }
    }
}

pub async fn bid(args: ClientArgs<BidCommand>) -> Result<(), ClientError> {
    let mut t = terminal(&args).await?;
    let tr = &mut t.trading;
    let receipt = match &args.command {
        BidCommand::Place { auction, price, quantity, .. } => tr
            .place_bid(pb::PlaceBidRequest {
                request_id: request_id(),
                auction_id: auction.clone(),
                price: price.clone(),
                quantity: quantity.clone(),
            })
            .await?
            .into_inner(),
        BidCommand::Revise { auction, bid, price, quantity, .. } => tr
            .revise_bid(pb::ReviseBidRequest {
                request_id: request_id(),
                auction_id: auction.clone(),
                bid_id: bid.clone(),
                price: price.clone(),
                quantity: quantity.clone(),
            })
            .await?
            .into_inner(),
        BidCommand::Withdraw { auction, bid, .. } => tr
            .withdraw_bid(pb::WithdrawBidRequest {
                request_id: request_id(),
                auction_id: auction.clone(),
                bid_id: bid.clone(),
            })
            .await?
            .into_inner(),
        BidCommand::List { auction } => {
            let bids = tr.list_my_bids(pb::ListMyBidsRequest { auction_id: auction.clone() }).await?.into_inner().bids;
            out!("{}", render::bids(&bids))?;
            return Ok(());
        }
        BidCommand::Auction { auction } => {
            let a = tr.get_auction(pb::GetAuctionRequest { auction_id: auction.clone() }).await?.into_inner();
            out!("{}", render::auction(&a))?;
            return Ok(());
        }
        BidCommand::Auctions(l) => {
            for a in tr.list_auctions(list_request(l)?).await?.into_inner().auctions {
                out!("{}\n", render::auction(&a))?;
            }
            return Ok(());
        }
        BidCommand::Watch(w) => return watch(&mut t, w, "bid").await,
        BidCommand::Proof { auction, bid, out } => {
            let proof = tr
                .get_inclusion_proof(pb::GetInclusionProofRequest { auction_id: auction.clone(), bid_id: bid.clone() })
                .await?
                .into_inner();
            let file = crate::domain::receipt::ProofFile {
                receipt: signed_receipt(&proof.receipt.unwrap_or_default()),
                path: proof
                    .path
                    .iter()
                    .map(|s| crate::domain::receipt::ProofStep { sibling: hex::encode(&s.sibling), left: s.left })
                    .collect(),
                root: hex::encode(&proof.root),
                leaf_index: proof.leaf_index,
                leaf_count: proof.leaf_count,
            };
            write_json(out, &file)?;
            out!(
                "proof of bid {bid} in {auction}: leaf {} of {}, root {}",
                file.leaf_index,
                file.leaf_count,
                file.root
            )?;
            return Ok(());
        }
    };
    if let BidCommand::Place { save_receipt: Some(path), .. }
    | BidCommand::Revise { save_receipt: Some(path), .. }
    | BidCommand::Withdraw { save_receipt: Some(path), .. } = &args.command
    {
        write_json(path, &signed_receipt(&receipt))?;
    }
    let pseudonym = if receipt.pseudonym.is_empty() { String::new() } else { format!(" as {}", receipt.pseudonym) };
    out!(
        "bid {} in {}{pseudonym}: {} t at {} yuan/t, {}, received {}",
        receipt.bid_id,
        receipt.auction_id,
        receipt.quantity,
        receipt.price,
        render::name_of::<pb::BidState>(receipt.state),
        render::time(&receipt.received_at)
    )?;
    Ok(())
}

/// A receipt as `receipt verify` reads it.
fn signed_receipt(r: &pb::BidReceipt) -> crate::domain::receipt::SignedReceipt {
    crate::domain::receipt::SignedReceipt {
        fields: crate::domain::receipt::ReceiptFields {
            auction_id: r.auction_id.clone(),
            bid_id: r.bid_id.clone(),
            bidder: r.bidder.clone(),
            price: r.price.clone(),
            quantity: r.quantity.clone(),
            received_at: r.received_at_micros,
            state: render::name_of::<pb::BidState>(r.state),
            pseudonym: r.pseudonym.clone(),
        },
        signature: hex::encode(&r.signature),
    }
}

fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<(), ClientError> {
    let mut text = serde_json::to_vec_pretty(value).map_err(|e| ClientError::Usage(e.to_string()))?;
    text.push(b'\n');
    std::fs::write(path, text).map_err(|e| ClientError::Usage(format!("{}: {e}", path.display())))
}

/// `receipt verify`: exit status 0 only when the signature (and the proof) check out.
pub fn receipt(command: ReceiptCommand) -> Result<(), Box<dyn std::error::Error>> {
    use crate::domain::receipt::{ProofFile, SignedReceipt, root_from};
    let ReceiptCommand::Verify { file, key, root } = command;
    let text = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
    let (receipt, proof) = if value.get("receipt").is_some() {
        let proof: ProofFile = serde_json::from_value(value).map_err(|e| format!("{}: {e}", file.display()))?;
        (proof.receipt.clone(), Some(proof))
    } else {
        (serde_json::from_value::<SignedReceipt>(value).map_err(|e| format!("{}: {e}", file.display()))?, None)
    };
    let key: [u8; 32] = hex::decode(key.trim())
        .ok()
        .and_then(|k| k.try_into().ok())
        .ok_or("--key is not 32 hex bytes (an Ed25519 public key)")?;
    let signature: [u8; 64] = hex::decode(&receipt.signature)
        .ok()
        .and_then(|s| s.try_into().ok())
        .ok_or("the signature is not 64 hex bytes")?;
    if !crate::service::seal::verify_receipt(&key, &receipt.fields, &signature) {
        return Err(format!(
            "receipt of bid {} in {}: the signature does not verify with this key (changed, or another server's)",
            receipt.fields.bid_id, receipt.fields.auction_id
        )
        .into());
    }
    out!("signature: valid (bid {} in {})", receipt.fields.bid_id, receipt.fields.auction_id)?;
    let Some(proof) = proof else { return Ok(()) };
    let reached = root_from(receipt.fields.leaf(), &proof.path).ok_or("a proof step is not 32 hex bytes")?;
    let want = root.unwrap_or_else(|| proof.root.clone());
    if hex::encode(reached) != want.trim().to_ascii_lowercase() {
        return Err(
            format!("inclusion: the bid's path leads to {}, not to the root {want}", hex::encode(reached)).into()
        );
    }
    out!("inclusion: valid, leaf {} of {} leads to root {want}", proof.leaf_index, proof.leaf_count)?;
    Ok(())
}

pub async fn settlement(args: ClientArgs<SettlementCommand>) -> Result<(), ClientError> {
    let mut t = terminal(&args).await?;
    match &args.command {
        SettlementCommand::ServerKey => {
            let key = t.results.get_server_key(pb::GetServerKeyRequest {}).await?.into_inner();
            out!("{}", hex::encode(key.public_key))?;
        }
        SettlementCommand::Get { auction } => {
            let s =
                t.results.get_settlement(pb::GetSettlementRequest { auction_id: auction.clone() }).await?.into_inner();
            out!("{}", render::settlement(&s))?;
        }
        SettlementCommand::Watch { from, limit } => {
            let mut stream = t
                .results
                .subscribe_settlements(pb::SubscribeSettlementsRequest { from_sequence: *from })
                .await?
                .into_inner();
            let mut next = *from;
            let mut seen = 0;
            let gone = render::stdout_gone();
            tokio::pin!(gone);
            loop {
                let message = tokio::select! {
                    message = stream.message() => message,
                    () = &mut gone => return Err(OutputError::Closed.into()),
                };
                let s = match message {
                    Ok(Some(s)) => s,
                    // The server ends the subscription only when it stops, with a status; a
                    // plain end means the connection went away.
                    Ok(None) => {
                        return Err(ClientError::Ended {
                            why: "the server ended the subscription".into(),
                            resume: format!("emission-auction settlement watch --from {next}"),
                        });
                    }
                    Err(status) => {
                        let from = status_number(&status, "resume_from").unwrap_or(next);
                        return Err(ClientError::Ended {
                            why: render::status(&status),
                            resume: format!("emission-auction settlement watch --from {from}"),
                        });
                    }
                };
                out!("{}\n", render::settlement(&s))?;
                next = next.max(s.sequence + 1);
                seen += 1;
                if limit.is_some_and(|l| seen >= l) {
                    return Ok(());
                }
            }
        }
    }
    Ok(())
}
