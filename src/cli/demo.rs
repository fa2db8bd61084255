//! `emission-auction demo`: a whole trading session in a few seconds, over real gRPC.
//!
//! It starts a server on a loopback port with a temporary data directory and eligibility
//! checks on, registers an operator, an auditor and six enterprises' terminals (and the
//! enterprises in the registry), and runs two auctions that the server's own timers close:
//! - a government-reserve SO2 lot sold by sealed uniform price, with a tie at the margin and a
//!   deposit (保证金) asked of every bidder: a logistics firm is refused as not in an admitted
//!   industry, and a bidder whose deposit does not cover its bid is told how much is missing;
//! - an enterprise NOx reduction credit sold by sealed first price, with the +20% band cap
//!   reached by two bidders.
//!
//! Then an open ascending auction (网络竞价) of a NOx credit runs live: a watcher prints every
//! price, pseudonym and countdown as terminals race, the free period ends, a bid in the timed
//! period restarts the countdown, and the countdown runs out.
//!
//! It then prints the settlements and where they were recorded, and stops by itself.
//!
//! The results board runs beside the API (its address is printed first): with `--serve` the
//! demo waits a few seconds for a browser to open it before the auctions start, and keeps
//! serving after the session until Ctrl-C.

use std::time::Duration;

use tokio::sync::oneshot;
use tonic::transport::Channel;

use crate::auth::{Principal, Principals, Role};
use crate::config::Config;
use crate::domain::{CreditCode, Timestamp};
use crate::grpc::convert::to_timestamp;
use crate::proto as pb;
use crate::service::clock::{Clock, SystemClock};

use super::client::{Terminal, request_id};
use super::render::{self, out};

/// How long bidding stays open in the demo.
const WINDOW: Duration = Duration::from_millis(2500);

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Keep serving the board (and the API) after the session, until Ctrl-C; and wait
    /// `--start-in` seconds before the auctions start, so a browser can open the board.
    #[arg(long)]
    pub serve: bool,
    /// Where the results board listens.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub board_listen: std::net::SocketAddr,
    /// Seconds to wait before the auctions start (default: 10 with --serve, else 0).
    #[arg(long)]
    pub start_in: Option<u64>,
}

struct Enterprise {
    name: &'static str,
    code: CreditCode,
    region: &'static str,
    /// GB/T 4754-2011 industry: sections B, C and D are admitted by default.
    industry: &'static str,
}

fn enterprises() -> Vec<Enterprise> {
    let make = |name, first17, region, industry| Enterprise {
        name,
        code: CreditCode::with_check_digit(first17).expect("demo code"),
        region,
        industry,
    };
    vec![
        make("Taiyuan Iron & Steel Works", "91140100MA0DEM001", "140100", "C3120"),
        make("Datong Thermal Power", "91140200MA0DEM002", "140200", "D4411"),
        make("Changzhi Coking Co.", "91140400MA0DEM003", "140400", "C2520"),
        make("Jincheng Cement Plant", "91140500MA0DEM004", "140500", "C3011"),
        make("Yangquan Aluminium", "91140300MA0DEM005", "140300", "C3216"),
        // Road freight (section G) emits no regulated pollutant: not admitted to buy.
        make("Xinzhou Freight Logistics", "91140900MA0DEM006", "140900", "G5430"),
    ]
}

/// Registers the demo's enterprises, each with a discharge permit valid through the session.
async fn register(operator: &mut Terminal, firms: &[Enterprise]) -> Result<(), Box<dyn std::error::Error>> {
    for (n, firm) in firms.iter().enumerate() {
        let record = pb::Enterprise {
            credit_code: firm.code.to_string(),
            name: firm.name.into(),
            region_code: firm.region.into(),
            industry_code: firm.industry.into(),
            permit_number: format!("{}{:03}P", &firm.code.as_str()[..8], n + 1),
            permit_valid_from: "2024-01-01".into(),
            permit_valid_until: "2035-12-31".into(),
            ..Default::default()
        };
        operator
            .operator
            .add_enterprise(pb::EnterpriseRequest { request_id: request_id(), enterprise: Some(record) })
            .await?;
    }
    Ok(())
}

pub async fn run(args: DemoArgs) -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let mut config = Config::default();
    // The data directory inside the temporary one, so that its master key (created beside it)
    // goes when the demo ends.
    config.set_data_dir(dir.path().join("data"));
    // Only registered enterprises, in admitted industries, with a valid permit, may bid.
    config.eligibility.enforce = true;

    // Principals, written to the principals file the server reads.
    let mut principals = Principals::default();
    let operator_token =
        principals.add(Principal { name: "centre-operator".into(), role: Role::Operator, enterprise: None })?;
    let auditor_token =
        principals.add(Principal { name: "provincial-auditor".into(), role: Role::Auditor, enterprise: None })?;
    let firms = enterprises();
    let mut firm_tokens = Vec::new();
    for firm in &firms {
        firm_tokens.push(principals.add(Principal {
            name: firm.name.into(),
            role: Role::Bidder,
            enterprise: Some(firm.code),
        })?);
    }
    principals.save(&config.principals_file)?;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let board = tokio::net::TcpListener::bind(args.board_listen).await?;
    let board_addr = board.local_addr()?;
    let parts = crate::server::assemble(&config).await?;
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(crate::server::run_with_board(parts, listener, board, async {
        let _ = stopped.await;
    }));

    out!("emission-auction demo: server on {addr}, data in {}", config.data_dir.display())?;
    out!("results board: http://{board_addr}/  (report: http://{board_addr}/report)\n")?;
    let start_in = args.start_in.unwrap_or(if args.serve { 10 } else { 0 });
    if start_in > 0 {
        out!("open the board in a browser; the auctions start in {start_in} s ...\n")?;
        tokio::time::sleep(Duration::from_secs(start_in)).await;
    }
    let channel = Channel::from_shared(format!("http://{addr}"))?.connect().await?;
    let mut operator = Terminal::on(channel.clone(), &operator_token)?;
    let mut auditor = Terminal::on(channel.clone(), &auditor_token)?;
    let terminals: Vec<Terminal> =
        firm_tokens.iter().map(|t| Terminal::on(channel.clone(), t)).collect::<Result<_, _>>()?;

    register(&mut operator, &firms).await?;
    out!("registered {} enterprises; bids are checked against the registry\n", firms.len())?;

    // Watch results from the start, as a downstream recorder would.
    let mut results =
        auditor.results.subscribe_settlements(pb::SubscribeSettlementsRequest { from_sequence: 1 }).await?.into_inner();

    let now = SystemClock.now();
    let closes = Timestamp::from_micros(now.as_micros() + WINDOW.as_micros() as i64);
    let mut so2_request = create(
        "SX-RES-2026-SO2-017",
        pb::Pollutant::So2,
        "20.000",
        "1.000",
        centre(),
        pb::AuctionFormat::SealedUniformPrice,
        now,
        closes,
    );
    // Every bidder posts at least 60000.00, and enough to cover its exposure (its largest
    // price x the quantity it bids at or above that price).
    so2_request.deposit = Some(pb::DepositRule { fixed_amount: "60000.00".into(), ..Default::default() });
    let so2 = operator.operator.create_auction(so2_request).await?.into_inner();
    let nox = operator
        .operator
        .create_auction(create(
            "SX-ERC-2026-NOX-042",
            pb::Pollutant::Nox,
            "4.048",
            "",
            firms[4].code,
            pb::AuctionFormat::SealedFirstPrice,
            now,
            closes,
        ))
        .await?
        .into_inner();
    out!("{}\n\n{}\n", render::auction(&so2), render::auction(&nox))?;

    // The operator records the deposits received for the SO2 lot. Yangquan Aluminium posted
    // only 50000.00, less than the 60000.00 required and its bid's 72400.00.
    out!("deposits received for the SO2 lot:")?;
    for (who, amount) in [(0, "120000.00"), (1, "100000.00"), (2, "100000.00"), (3, "120000.00"), (4, "50000.00")] {
        let request = pb::RecordDepositRequest {
            request_id: request_id(),
            auction_id: so2.auction_id.clone(),
            enterprise: firms[who].code.to_string(),
            amount: amount.into(),
        };
        let recorded = operator.operator.record_deposit(request).await?.into_inner();
        out!("  {:<28} {:>10} yuan", firms[who].name, recorded.deposit)?;
    }
    out!()?;

    // The terminals bid concurrently. SO2: 20 t; T1 and T2 take 11 t above the margin, T3 and
    // T4 tie at 18300.00 for the last 9 t, and time priority serves T3 first. T5's deposit
    // does not cover its bid, and T6 is not in an admitted industry: both are refused.
    let so2_bids = [
        (0, "18800.00", "6.000"),
        (1, "18600.00", "5.000"),
        (2, "18300.00", "5.000"),
        (3, "18300.00", "6.000"),
        (4, "18100.00", "4.000"),
        (5, "18200.00", "2.000"),
    ];
    let mut tasks = Vec::new();
    for (i, (who, price, qty)) in so2_bids.into_iter().enumerate() {
        // Staggered by a few milliseconds so that the tie is decided by a visible order.
        tasks.push(spawn_bid(&terminals, who, &so2.auction_id, price, qty, 20 * i as u64));
    }
    // NOx: the band cap is 19000 x 1.2 = 22800.00. One fen above is refused; T1 and T2 both bid
    // the cap and T1, first to reach it, wins. The quantity is left out: the whole lot.
    let nox_bids = [(0, "22800.01"), (0, "22800.00"), (1, "22800.00"), (2, "21000.00")];
    for (i, (who, price)) in nox_bids.into_iter().enumerate() {
        tasks.push(spawn_bid(&terminals, who, &nox.auction_id, price, "", 150 + 20 * i as u64));
    }
    out!("bids from {} terminals:", terminals.len())?;
    for task in tasks {
        let (who, price, qty, result) = task.await?;
        // A bid without a quantity is for the whole lot.
        let qty = if qty.is_empty() { "4.048" } else { qty };
        match result {
            Ok(receipt) => out!(
                "  {:<28} {:>9} t at {:>9}  accepted as {}",
                firms[who].name,
                receipt.quantity,
                price,
                receipt.bid_id
            )?,
            Err(status) => {
                out!("  {:<28} {:>9} t at {:>9}  refused: {}", firms[who].name, qty, price, render::status(&status))?
            }
        }
    }

    // Sealed means sealed: not even the operator sees the book before the close.
    match operator.operator.list_bids(pb::ListBidsRequest { auction_id: so2.auction_id.clone() }).await {
        Ok(_) => out!("\n  !! the operator could list sealed bids")?,
        Err(status) => out!("\noperator asks for the SO2 bids before the close: {}", render::status(&status))?,
    }
    let mine = terminals[3]
        .clone()
        .trading
        .list_my_bids(pb::ListMyBidsRequest { auction_id: so2.auction_id.clone() })
        .await?
        .into_inner();
    out!("{} sees only its own bid:\n{}", firms[3].name, render::bids(&mine.bids))?;

    out!("\nwaiting for the server's timers to close both auctions at {closes} ...\n")?;
    let mut settled = Vec::new();
    while settled.len() < 2 {
        let next = tokio::time::timeout(WINDOW + Duration::from_secs(5), results.message()).await;
        match next {
            Ok(Ok(Some(s))) => settled.push(s),
            Ok(Ok(None)) => return Err("settlement stream ended early".into()),
            Ok(Err(status)) => return Err(render::status(&status).into()),
            Err(_) => return Err("no settlement within the expected time".into()),
        }
    }
    let names =
        |code: &str| firms.iter().find(|f| f.code.as_str() == code).map_or(code.to_owned(), |f| f.name.to_owned());
    for s in &settled {
        out!("{}\n", render::settlement_named(s, &names))?;
    }

    let bids =
        auditor.operator.list_bids(pb::ListBidsRequest { auction_id: so2.auction_id.clone() }).await?.into_inner();
    out!("after the close the auditor may read all {} SO2 bids.\n", bids.bids.len())?;

    open_bidding(&mut operator, &terminals, &firms).await?;
    match tokio::time::timeout(Duration::from_secs(10), results.message()).await {
        Ok(Ok(Some(s))) => out!("{}\n", render::settlement_named(&s, &names))?,
        _ => return Err("no settlement of the ascending auction".into()),
    }

    let file = config.settlements_file();
    let lines = std::fs::read_to_string(&file)?.lines().count();
    out!("recorded: {lines} settlements in {} (one JSON object per line)", file.display())?;

    // Hang up before stopping: the server drains open connections on shutdown.
    drop((results, operator, auditor, terminals, channel));
    if args.serve {
        out!("\nthe board stays up at http://{board_addr}/ ; Ctrl-C to stop")?;
        let _ = tokio::signal::ctrl_c().await;
    }
    let _ = stop.send(());
    server.await??;

    // Every change above was journaled before it was acknowledged; check the journal as an
    // auditor would, without changing it.
    let journal = crate::journal::verify(&config.journal_dir())?;
    let head = journal.head.map_or("empty".into(), |h| format!("record {} hash {}", h.seq, hex::encode(h.hash)));
    out!("journaled: {} records in {}, verified; head {head}", journal.records.len(), config.journal_dir().display())?;
    // And re-derive the settlements from the journal alone, as `journal replay` does.
    let replayed = crate::service::replay(journal.entries())?;
    let recorded = crate::service::recorder::JsonLinesRecorder::read_all(&config.settlements_file())?;
    if replayed.settlements != recorded {
        return Err("the journal's replay does not derive the recorded settlements".into());
    }
    out!("replayed the journal offline: the same {} settlements, derived from the same records", recorded.len())?;
    Ok(())
}

type BidOutcome = (usize, &'static str, &'static str, Result<pb::BidReceipt, tonic::Status>);

/// One terminal's bid, placed after `delay_ms`.
fn spawn_bid(
    terminals: &[Terminal],
    who: usize,
    auction: &str,
    price: &'static str,
    quantity: &'static str,
    delay_ms: u64,
) -> tokio::task::JoinHandle<BidOutcome> {
    let mut terminal = terminals[who].clone();
    let request = pb::PlaceBidRequest {
        request_id: request_id(),
        auction_id: auction.to_owned(),
        price: price.into(),
        quantity: quantity.into(),
    };
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        let result = terminal.trading.place_bid(request).await.map(tonic::Response::into_inner);
        (who, price, quantity, result)
    })
}

/// The ascending auction: a free period of 1.5 s, then a 1 s countdown restarted by each bid.
async fn open_bidding(
    operator: &mut Terminal,
    terminals: &[Terminal],
    firms: &[Enterprise],
) -> Result<(), Box<dyn std::error::Error>> {
    let now = SystemClock.now();
    let free_until = Timestamp::from_micros(now.as_micros() + 1_500_000);
    let mut request = create(
        "SX-ERC-2026-NOX-051",
        pb::Pollutant::Nox,
        "2.500",
        "",
        firms[3].code,
        pb::AuctionFormat::AscendingEnglish,
        now,
        free_until,
    );
    request.ascending = Some(pb::AscendingTerms {
        increment: "200.00".into(),
        countdown_seconds: 1,
        timed_min_bidders: 2,
        ..Default::default()
    });
    let auction = operator.operator.create_auction(request).await?.into_inner();
    let id = auction.auction_id.clone();
    out!(
        "{}
",
        render::auction(&auction)
    )?;

    // A watcher, as a trading terminal's screen: every public change, live.
    let mut watcher = terminals[4].clone();
    let mut stream = watcher
        .trading
        .watch_auction(pb::WatchAuctionRequest { auction_id: id.clone(), after_sequence: 0 })
        .await?
        .into_inner();
    let screen = tokio::spawn(async move {
        while let Ok(Some(event)) = stream.message().await {
            // The reader of standard output went away: the demo ends quietly at its next line.
            if out!("  {}", render::auction_event(&event, now)).is_err() {
                break;
            }
            if event.kind == pb::AuctionEventKind::Concluded as i32 {
                break;
            }
        }
    });

    // Free period: three terminals raise in turn; then two race for the same price.
    let mut pseudonyms = Vec::new();
    let bid = |who: usize, price: &'static str, delay_ms: u64| spawn_bid(terminals, who, &id, price, "", delay_ms);
    for (who, price, delay) in [(1, "19000.00", 100), (2, "19400.00", 250), (0, "19600.00", 400)] {
        let (_, _, _, result) = bid(who, price, delay).await?;
        pseudonyms.push((who, result?.pseudonym));
    }
    let racing = [bid(1, "19800.00", 550), bid(2, "19800.00", 550)];
    for task in racing {
        let (who, price, _, result) = task.await?;
        match result {
            Ok(receipt) => out!("  {} wins the race at {price} as {}", firms[who].name, receipt.pseudonym)?,
            Err(status) => out!("  {} loses the race at {price}: {}", firms[who].name, render::status(&status))?,
        }
    }
    // The timed period: one bid 0.6 s into the countdown restarts it; then nobody bids.
    let wait = free_until.as_micros() - SystemClock.now().as_micros() + 600_000;
    let (_, _, _, result) = bid(0, "20200.00", wait.max(0) as u64 / 1000).await?;
    let last = result?;
    out!("  {} bids {} in the timed period as {}", firms[0].name, last.price, last.pseudonym)?;
    screen.await?;
    out!()?;
    for (who, pseudonym) in pseudonyms {
        out!("  pseudonym {pseudonym} is {} (revealed with the settlement)", firms[who].name)?;
    }
    out!()?;
    Ok(())
}

/// The trading centre, seller of government reserve rights.
fn centre() -> CreditCode {
    CreditCode::with_check_digit("12140000MB0CENTRE").expect("centre code")
}

#[allow(clippy::too_many_arguments)]
fn create(
    lot_id: &str,
    pollutant: pb::Pollutant,
    quantity: &str,
    fill_unit: &str,
    seller: CreditCode,
    format: pb::AuctionFormat,
    opens: Timestamp,
    closes: Timestamp,
) -> pb::CreateAuctionRequest {
    let reserve = format == pb::AuctionFormat::SealedUniformPrice;
    pb::CreateAuctionRequest {
        request_id: request_id(),
        lot: Some(pb::Lot {
            lot_id: lot_id.into(),
            pollutant: pollutant as i32,
            quantity: quantity.into(),
            fill_unit: fill_unit.into(),
            seller: seller.to_string(),
            origin: if reserve { pb::LotOrigin::GovernmentReserve } else { pb::LotOrigin::ErcCertified } as i32,
            certificate_id: if reserve { String::new() } else { "SX-ERC-CERT-2025-0388".into() },
            region_code: "140100".into(),
            vintage_year: 2025,
            valid_years: 5,
            // Figures for the statistics report (yuan), as a seller would declare them.
            project_investment: if reserve { String::new() } else { "1250000.00".into() },
            expected_annual_output: if reserve { String::new() } else { "8600000.00".into() },
        }),
        format: format as i32,
        opens_at: Some(to_timestamp(opens)),
        closes_at: Some(to_timestamp(closes)),
        ..Default::default()
    }
}
