//! The command line: `serve`, `demo`, `principal add`, and client subcommands that let an
//! operator or a terminal make every RPC from a shell.

pub mod client;
pub mod demo;
pub mod render;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::auth::{Principal, Principals, Role};
use crate::config::Config;
use crate::domain::{CreditCode, Timestamp};
use crate::proto as pb;
use crate::service::DerivedSettlement;

use client::{Terminal, request_id};

#[derive(Debug, Parser)]
#[command(
    name = "emission-auction",
    version,
    about = "Electronic auction engine for emission-rights trading (排污权交易)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Top,
}

#[derive(Debug, Subcommand)]
pub enum Top {
    /// Run the server.
    Serve(ServeArgs),
    /// Start a server on a loopback port, run two sealed auctions and an open ascending one
    /// (watched live) from simulated terminals, print the settlements, and stop.
    Demo,
    /// Manage the principals file (who may call the API).
    #[command(subcommand)]
    Principal(PrincipalCommand),
    /// Operator calls: create, open, close, cancel, inspect auctions.
    Auction(ClientArgs<AuctionCommand>),
    /// Terminal calls: place, revise, withdraw and list your own bids.
    Bid(ClientArgs<BidCommand>),
    /// Results: settlements of concluded auctions.
    Settlement(ClientArgs<SettlementCommand>),
    /// The write-ahead journal.
    #[command(subcommand)]
    Journal(JournalCommand),
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
}

impl ServeArgs {
    pub fn config(&self) -> Result<Config, crate::config::ConfigError> {
        let mut config = Config::load(self.config.as_deref())?;
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        if let Some(dir) = &self.data_dir {
            config.set_data_dir(dir.clone());
        }
        Ok(config)
    }
}

#[derive(Debug, Subcommand)]
pub enum PrincipalCommand {
    /// Add a principal and print its token once.
    Add {
        #[arg(long)]
        name: String,
        #[arg(long)]
        role: Role,
        /// Bidders: the unified social credit code of the enterprise they bid for.
        #[arg(long)]
        enterprise: Option<CreditCode>,
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        data_dir: Option<PathBuf>,
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
    /// Bearer token (from `principal add`).
    #[arg(long, env = "EA_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    #[command(subcommand)]
    pub command: C,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FormatArg {
    FirstPrice,
    UniformPrice,
    PayAsBid,
    /// A reserve sale at the posted price (the floor).
    FixedPrice,
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
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Show one auction.
    Get { auction: String },
    /// List auctions, optionally filtered.
    List {
        #[arg(long)]
        pollutant: Option<String>,
        #[arg(long)]
        region: Option<String>,
    },
    /// List every bid of a concluded auction (operator, auditor).
    Bids { auction: String },
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
    #[arg(long, default_value = "")]
    pub fill_unit: String,
    /// Seller's unified social credit code.
    #[arg(long)]
    pub seller: String,
    #[arg(long, value_enum)]
    pub origin: OriginArg,
    #[arg(long, default_value = "")]
    pub certificate_id: String,
    /// GB/T 2260 region code, e.g. 140100.
    #[arg(long)]
    pub region: String,
    #[arg(long)]
    pub vintage_year: u32,
    #[arg(long, default_value_t = 5)]
    pub valid_years: u32,
    #[arg(long, value_enum)]
    pub format: FormatArg,
    #[arg(long, value_enum, default_value = "time")]
    pub tie: TieArg,
    #[arg(long, value_enum, default_value = "sell-available")]
    pub undersubscription: UnderArg,
    #[arg(long, default_value_t = 0)]
    pub min_bidders: u32,
    /// Percent of the lot one bidder may hold.
    #[arg(long, default_value = "")]
    pub per_bidder_cap: String,
    #[arg(long)]
    pub irrevocable: bool,
    #[arg(long, default_value = "")]
    pub conversion_factor: String,
    #[arg(long, default_value = "")]
    pub reserve_markup: String,
    /// Percent over the floor, or "none"; the policy default otherwise.
    #[arg(long)]
    pub cap: Option<String>,
    /// Seconds from now until the auction opens.
    #[arg(long, default_value_t = 0)]
    pub opens_in: u64,
    /// Seconds from now until the auction closes.
    #[arg(long)]
    pub closes_in: u64,
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
    },
    /// Replace one of your bids (it takes a new place in time priority).
    Revise {
        auction: String,
        bid: String,
        #[arg(long)]
        price: String,
        #[arg(long)]
        quantity: String,
    },
    /// Withdraw one of your bids.
    Withdraw { auction: String, bid: String },
    /// Your own bids in an auction.
    List { auction: String },
    /// One auction's public terms and phase.
    Auction { auction: String },
    /// Auctions you can bid in.
    Auctions {
        #[arg(long)]
        pollutant: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum SettlementCommand {
    Get {
        auction: String,
    },
    /// Print settlements as they are published, from a sequence number.
    Watch {
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
}

pub fn principal_add(command: PrincipalCommand) -> Result<(), Box<dyn std::error::Error>> {
    let PrincipalCommand::Add { name, role, enterprise, config, data_dir } = command;
    let serve = ServeArgs { config, listen: None, data_dir };
    let config = serve.config()?;
    let mut principals = Principals::load(&config.principals_file)?;
    let token = principals.add(Principal { name: name.clone(), role, enterprise })?;
    principals.save(&config.principals_file)?;
    eprintln!("added {role} {name:?} to {}; the token is shown only this once:", config.principals_file.display());
    println!("{token}");
    Ok(())
}

/// `journal verify` and `journal replay`: exit status 0 when every record checks out (a torn
/// tail is reported, since the server cuts it off on start), an error when synced data is
/// damaged or a record does not replay.
pub fn journal(command: JournalCommand) -> Result<(), Box<dyn std::error::Error>> {
    let (config, data_dir, out) = match command {
        JournalCommand::Verify { config, data_dir } => (config, data_dir, None),
        JournalCommand::Replay { config, data_dir, out } => (config, data_dir, Some(out)),
    };
    let config = ServeArgs { config, listen: None, data_dir }.config()?;
    let dir = config.journal_dir();
    let verified = crate::journal::verify(&dir)?;
    // Reports go to stderr when the settlements go to stdout.
    let to_stdout = out.as_deref() == Some(Path::new("-"));
    let report = |line: String| if to_stdout { eprintln!("{line}") } else { println!("{line}") };
    report(format!(
        "journal {}: {} records verified (CRC32C, sequence, hash chain)",
        dir.display(),
        verified.records.len()
    ));
    match verified.head {
        Some(head) => report(format!("head: record {} hash {}", head.seq, hex::encode(head.hash))),
        None => report("head: empty journal".into()),
    }
    if let Some((segment, offset, seq)) = &verified.truncated {
        report(format!(
            "torn tail: {} at offset {offset} (would-be record {seq}); the server cuts it off on start",
            segment.display()
        ));
    }
    let Some(out) = out else { return Ok(()) };
    let replayed = crate::service::replay(verified.entries())?;
    let mut text = String::new();
    for (journal, settlement) in replayed.settlements {
        text.push_str(&serde_json::to_string(&DerivedSettlement { journal, settlement })?);
        text.push('\n');
    }
    let lines = text.lines().count();
    if to_stdout {
        std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes())?;
    } else {
        std::fs::write(&out, text).map_err(|e| format!("{}: {e}", out.display()))?;
    }
    report(format!(
        "replayed: {} auctions, {lines} settlements derived{}",
        replayed.auctions.len(),
        if to_stdout { String::new() } else { format!(", written to {}", out.display()) }
    ));
    Ok(())
}

async fn terminal<C: Subcommand>(args: &ClientArgs<C>) -> Result<Terminal, ClientError> {
    let token =
        args.token.as_deref().ok_or_else(|| ClientError::Usage("no token: pass --token or set EA_TOKEN".into()))?;
    Ok(Terminal::connect(&args.server, token).await?)
}

fn pollutant_filter(text: Option<&str>) -> Result<i32, ClientError> {
    let Some(text) = text else { return Ok(0) };
    let p: crate::domain::Pollutant = text.parse().map_err(ClientError::Usage)?;
    let name = format!("POLLUTANT_{}", p.code());
    Ok(pb::Pollutant::from_str_name(&name).map_or(0, |p| p as i32))
}

fn from_now(seconds: u64) -> prost_types::Timestamp {
    let now = crate::service::clock::Clock::now(&crate::service::clock::SystemClock);
    crate::grpc::convert::to_timestamp(Timestamp::from_micros(now.as_micros() + seconds as i64 * 1_000_000))
}

pub async fn auction(args: ClientArgs<AuctionCommand>) -> Result<(), ClientError> {
    let mut t = terminal(&args).await?;
    let op = &mut t.operator;
    let reference = |auction: &str| pb::AuctionRef { request_id: request_id(), auction_id: auction.to_owned() };
    let shown = match &args.command {
        AuctionCommand::Create(c) => op.create_auction(create_request(c)?).await?.into_inner(),
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
        AuctionCommand::List { pollutant, region } => {
            let req = pb::ListAuctionsRequest {
                pollutant: pollutant_filter(pollutant.as_deref())?,
                region_code: region.clone().unwrap_or_default(),
                phase: 0,
            };
            for a in t.trading.list_auctions(req).await?.into_inner().auctions {
                println!("{}\n", render::auction(&a));
            }
            return Ok(());
        }
        AuctionCommand::Bids { auction } => {
            let bids = op.list_bids(pb::ListBidsRequest { auction_id: auction.clone() }).await?.into_inner().bids;
            println!("{}", render::bids(&bids));
            return Ok(());
        }
    };
    println!("{}", render::auction(&shown));
    Ok(())
}

fn create_request(c: &CreateArgs) -> Result<pb::CreateAuctionRequest, ClientError> {
    let pollutant = pollutant_filter(Some(&c.pollutant))?;
    let (cap_mode, cap_percent) = match c.cap.as_deref() {
        None => (pb::CapMode::Unspecified, String::new()),
        Some("none") => (pb::CapMode::None, String::new()),
        Some(pct) => (pb::CapMode::Percent, pct.to_owned()),
    };
    Ok(pb::CreateAuctionRequest {
        ascending: None,
        clock: None,
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
        }),
        format: match c.format {
            FormatArg::FirstPrice => pb::AuctionFormat::SealedFirstPrice,
            FormatArg::UniformPrice => pb::AuctionFormat::SealedUniformPrice,
            FormatArg::PayAsBid => pb::AuctionFormat::SealedPayAsBid,
            FormatArg::FixedPrice => pb::AuctionFormat::FixedPrice,
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
        opens_at: Some(from_now(c.opens_in)),
        closes_at: Some(from_now(c.closes_in)),
    })
}

pub async fn bid(args: ClientArgs<BidCommand>) -> Result<(), ClientError> {
    let mut t = terminal(&args).await?;
    let tr = &mut t.trading;
    let receipt = match &args.command {
        BidCommand::Place { auction, price, quantity } => tr
            .place_bid(pb::PlaceBidRequest {
                request_id: request_id(),
                auction_id: auction.clone(),
                price: price.clone(),
                quantity: quantity.clone(),
            })
            .await?
            .into_inner(),
        BidCommand::Revise { auction, bid, price, quantity } => tr
            .revise_bid(pb::ReviseBidRequest {
                request_id: request_id(),
                auction_id: auction.clone(),
                bid_id: bid.clone(),
                price: price.clone(),
                quantity: quantity.clone(),
            })
            .await?
            .into_inner(),
        BidCommand::Withdraw { auction, bid } => tr
            .withdraw_bid(pb::WithdrawBidRequest {
                request_id: request_id(),
                auction_id: auction.clone(),
                bid_id: bid.clone(),
            })
            .await?
            .into_inner(),
        BidCommand::List { auction } => {
            let bids = tr.list_my_bids(pb::ListMyBidsRequest { auction_id: auction.clone() }).await?.into_inner().bids;
            println!("{}", render::bids(&bids));
            return Ok(());
        }
        BidCommand::Auction { auction } => {
            let a = tr.get_auction(pb::GetAuctionRequest { auction_id: auction.clone() }).await?.into_inner();
            println!("{}", render::auction(&a));
            return Ok(());
        }
        BidCommand::Auctions { pollutant } => {
            let req =
                pb::ListAuctionsRequest { pollutant: pollutant_filter(pollutant.as_deref())?, ..Default::default() };
            for a in tr.list_auctions(req).await?.into_inner().auctions {
                println!("{}\n", render::auction(&a));
            }
            return Ok(());
        }
    };
    println!(
        "bid {} in {}: {} t at {} yuan/t, {}, received {}",
        receipt.bid_id,
        receipt.auction_id,
        receipt.quantity,
        receipt.price,
        render::name_of::<pb::BidState>(receipt.state),
        render::time(&receipt.received_at)
    );
    Ok(())
}

pub async fn settlement(args: ClientArgs<SettlementCommand>) -> Result<(), ClientError> {
    let mut t = terminal(&args).await?;
    match &args.command {
        SettlementCommand::Get { auction } => {
            let s =
                t.results.get_settlement(pb::GetSettlementRequest { auction_id: auction.clone() }).await?.into_inner();
            println!("{}", render::settlement(&s));
        }
        SettlementCommand::Watch { from, limit } => {
            let mut stream = t
                .results
                .subscribe_settlements(pb::SubscribeSettlementsRequest { from_sequence: *from })
                .await?
                .into_inner();
            let mut seen = 0;
            while let Some(s) = stream.message().await? {
                println!("{}\n", render::settlement(&s));
                seen += 1;
                if limit.is_some_and(|l| seen >= l) {
                    break;
                }
            }
        }
    }
    Ok(())
}
