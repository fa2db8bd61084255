//! The results board, report and metrics on the real server: `/metrics` parsed with a
//! Prometheus text parser while bids flow (and no sealed price in it), the board and the
//! report in headless Chromium (skipped, with a notice, where Chromium is not installed), and
//! the offline report of a data directory.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use emission_auction::auth::{Principal, Principals, Role};
use emission_auction::cli::client::Terminal;
use emission_auction::config::Config;
use emission_auction::domain::Timestamp;
use emission_auction::proto as pb;
use emission_auction::service::clock::{Clock, SystemClock};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tonic::transport::Channel;

use super::cdp;
use super::grpc::{bid, create, erc_lot, firm, reserve_lot};

/// A server on the wall clock with the board on, and principals operator, observer, b1..b6.
struct BoardServer {
    channel: Channel,
    board: SocketAddr,
    tokens: HashMap<String, String>,
    dir: tempfile::TempDir,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), emission_auction::server::ServerError>>,
}

impl BoardServer {
    async fn start() -> BoardServer {
        let dir = tempfile::tempdir().unwrap();
        let mut principals = Principals::default();
        let mut tokens = HashMap::new();
        for (name, role) in [("operator", Role::Operator), ("observer", Role::Observer)] {
            tokens.insert(
                name.to_owned(),
                principals.add(Principal { name: name.into(), role, enterprise: None }).unwrap(),
            );
        }
        for n in 1..=6 {
            let principal = Principal { name: format!("b{n}"), role: Role::Bidder, enterprise: Some(firm(n)) };
            tokens.insert(format!("b{n}"), principals.add(principal).unwrap());
        }
        principals.save(&dir.path().join("principals.json")).unwrap();
        let mut config = Config::default();
        config.set_data_dir(dir.path().to_owned());
        crate::sealing::key_inside(&mut config, dir.path());
        let api = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let board = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (api_addr, board_addr) = (api.local_addr().unwrap(), board.local_addr().unwrap());
        let parts = emission_auction::server::assemble(&config).await.unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(emission_auction::server::run_with_board(parts, api, board, async {
            let _ = stopped.await;
        }));
        let channel = Channel::from_shared(format!("http://{api_addr}")).unwrap().connect().await.unwrap();
        BoardServer { channel, board: board_addr, tokens, dir, stop, task }
    }

    fn as_(&self, who: &str) -> Terminal {
        Terminal::on(self.channel.clone(), &self.tokens[who]).unwrap()
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.board)
    }

    async fn stop(self) -> tempfile::TempDir {
        drop(self.channel);
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(10), self.task).await.expect("server stops in time").unwrap().unwrap();
        self.dir
    }
}

/// A plain HTTP/1.1 GET; the body.
async fn get(addr: SocketAddr, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
    let mut text = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut text)).await.unwrap().unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "GET {path}: {head}");
    body.to_owned()
}

fn after(seconds: f64) -> Timestamp {
    Timestamp::from_micros(SystemClock.now().as_micros() + (seconds * 1e6) as i64)
}

/// The value of one sample, by metric name and labels.
fn sample(scrape: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

async fn scrape(addr: SocketAddr) -> (String, prometheus_parse::Scrape) {
    let text = get(addr, "/metrics").await;
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let parsed = prometheus_parse::Scrape::parse(lines).expect("the exposition parses");
    (text, parsed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn board_metrics_count_bids_by_reason_and_never_show_a_sealed_price() {
    let server = BoardServer::start().await;
    let mut operator = server.as_("operator");
    let lot = reserve_lot("BOARD-METRICS-1", "20.000", "1.000");
    let auction = operator
        .operator
        .create_auction(create(lot, pb::AuctionFormat::SealedUniformPrice, after(0.0), after(3600.0)))
        .await
        .unwrap()
        .into_inner();
    let id = auction.auction_id;
    let (_, before) = scrape(server.board).await;
    let accepted =
        |s: &prometheus_parse::Scrape| sample(s, "emission_auction_bids_accepted_total", &[("rpc", "PlaceBid")]);
    let below_floor = |s: &prometheus_parse::Scrape| {
        sample(s, "emission_auction_bids_refused_total", &[("rpc", "PlaceBid"), ("reason", "BELOW_FLOOR")])
    };
    // The canary: a sealed price (and quantity) that must never reach the metrics or the board.
    const CANARY_PRICE: &str = "18765.43";
    for n in 1..=3 {
        server.as_(&format!("b{n}")).trading.place_bid(bid(&id, CANARY_PRICE, "3.000")).await.unwrap();
    }
    let refused = server.as_("b4").trading.place_bid(bid(&id, "17999.99", "1.000")).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);

    let (text, after_bids) = scrape(server.board).await;
    // Other tests in this binary bid concurrently into the same registry: at least ours.
    assert!(accepted(&after_bids) >= accepted(&before) + 3.0, "accepted bids counted");
    assert!(below_floor(&after_bids) >= below_floor(&before) + 1.0, "the refusal counted under its reason");
    assert!(sample(&after_bids, "emission_auction_grpc_request_duration_seconds_count", &[("rpc", "PlaceBid")]) >= 4.0);
    assert!(sample(&after_bids, "emission_auction_auctions", &[("phase", "open")]) >= 1.0);
    assert!(sample(&after_bids, "emission_auction_journal_batch_records_count", &[]) >= 1.0);
    assert!(text.contains("emission_auction_journal_fsync_seconds_bucket"));
    for secret in [CANARY_PRICE, "1876543", "3.000", firm(1).as_str(), firm(4).as_str()] {
        assert!(!text.contains(secret), "{secret} appears in /metrics");
    }
    for path in ["/", "/api/auctions", "/report"] {
        let page = get(server.board, path).await;
        assert!(path == "/report" || page.contains(&id), "{path} shows the auction");
        for secret in [CANARY_PRICE, firm(1).as_str()] {
            assert!(!page.contains(secret), "{secret} appears on {path}");
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn board_in_a_browser_counts_down_then_shows_the_settlement_live_and_the_report_has_charts() {
    let Some(chromium) = cdp::chromium() else {
        eprintln!("SKIPPED board browser test: `chromium` is not installed (apt-get install chromium)");
        return;
    };
    let server = BoardServer::start().await;
    let mut operator = server.as_("operator");
    let sealed = operator
        .operator
        .create_auction(create(
            reserve_lot("BOARD-SO2-1", "20.000", "1.000"),
            pb::AuctionFormat::SealedUniformPrice,
            after(0.0),
            after(9.0),
        ))
        .await
        .unwrap()
        .into_inner()
        .auction_id;
    let mut english = create(
        erc_lot("BOARD-NOX-1", pb::Pollutant::Nox, "2.500"),
        pb::AuctionFormat::AscendingEnglish,
        after(0.0),
        after(3600.0),
    );
    if let Some(lot) = english.lot.as_mut() {
        lot.project_investment = "1250000.00".into();
        lot.expected_annual_output = "8600000.00".into();
    }
    english.ascending =
        Some(pb::AscendingTerms { increment: "200.00".into(), countdown_seconds: 60, ..Default::default() });
    let english = operator.operator.create_auction(english).await.unwrap().into_inner().auction_id;
    let mut clock = create(
        reserve_lot("BOARD-SO2-2", "50.000", "1.000"),
        pb::AuctionFormat::AscendingClock,
        after(0.0),
        after(3600.0),
    );
    clock.clock = Some(pb::ClockTerms { increment: "100.00".into(), round_seconds: 600, ..Default::default() });
    operator.operator.create_auction(clock).await.unwrap();
    for (who, price, qty) in [("b1", "18800.00", "8.000"), ("b2", "18600.00", "7.000"), ("b3", "18300.00", "9.000")] {
        server.as_(who).trading.place_bid(bid(&sealed, price, qty)).await.unwrap();
    }
    server.as_("b4").trading.place_bid(bid(&english, "19000.00", "")).await.unwrap();
    server.as_("b5").trading.place_bid(bid(&english, "19400.00", "")).await.unwrap();

    let board_url = server.url("/");
    let report_url = server.url("/report");
    let shots = tokio::task::spawn_blocking(move || {
        let mut browser = cdp::Browser::launch(&chromium, 1200, 1500);
        browser.navigate(&board_url);
        // The script ran, the event stream is connected, and the sealed auction counts down.
        browser.wait_for("document.getElementById('live').classList.contains('on')", Duration::from_secs(10));
        let countdown = format!("document.querySelector('#run-{sealed} .remaining').textContent");
        browser.wait_for(&format!("/^\\d+:\\d\\d$/.test({countdown})"), Duration::from_secs(5));
        let first = browser.eval(&countdown);
        // The English auction shows its price and leading pseudonym; the sealed one no bids.
        let english_card = browser.eval(&format!("document.getElementById('run-{english}').textContent"));
        assert!(english_card.as_str().unwrap().contains("19400.00"), "{english_card}");
        assert!(english_card.as_str().unwrap().contains("B002"), "{english_card}");
        let sealed_card = browser.eval(&format!("document.getElementById('run-{sealed}').textContent"));
        assert!(!sealed_card.as_str().unwrap().contains("18800.00"), "a sealed price on the board");
        // Mark this page: if it were reloaded, the mark would be gone.
        browser.eval("window.__notReloaded = 42; true");
        browser.wait_for(&format!("{countdown} !== {first}"), Duration::from_secs(5));
        // The settlement arrives over the event stream, in the same page.
        browser.wait_for(&format!("document.getElementById('result-{sealed}') !== null"), Duration::from_secs(20));
        assert_eq!(browser.eval("window.__notReloaded"), serde_json::json!(42), "the page was reloaded");
        browser.wait_for(&format!("document.getElementById('run-{sealed}') === null"), Duration::from_secs(3));
        let result = browser.eval(&format!("document.getElementById('result-{sealed}').textContent"));
        assert!(result.as_str().unwrap().contains("18300.00"), "the clearing price is shown: {result}");
        // Let the "fresh" highlight fade before the picture.
        std::thread::sleep(Duration::from_millis(3200));
        let board_png = browser.screenshot(false);

        browser.navigate(&report_url);
        let charts = browser.eval("document.querySelectorAll('svg.chart rect, svg.chart circle').length");
        assert!(charts.as_u64().unwrap_or(0) > 0, "the report has chart elements: {charts}");
        let text = browser.eval("document.body.textContent").as_str().unwrap().to_owned();
        assert!(text.contains("1250000.00"), "the lot's project investment is reported");
        assert!(text.contains("not yet recorded"), "industry is not invented");
        let report_png = browser.screenshot(true);
        (board_png, report_png)
    })
    .await
    .unwrap();
    let dir = if std::env::var_os("UPDATE_SCREENSHOTS").is_some() {
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs")
    } else {
        std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
    };
    std::fs::write(dir.join("board.png"), &shots.0).unwrap();
    std::fs::write(dir.join("report.png"), &shots.1).unwrap();
    eprintln!("screenshots in {}", dir.display());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn board_report_of_a_data_directory_offline() {
    let server = BoardServer::start().await;
    let mut operator = server.as_("operator");
    let id = operator
        .operator
        .create_auction(create(
            reserve_lot("BOARD-OFFLINE-1", "10.000", "1.000"),
            pb::AuctionFormat::SealedPayAsBid,
            after(0.0),
            after(1.0),
        ))
        .await
        .unwrap()
        .into_inner()
        .auction_id;
    server.as_("b1").trading.place_bid(bid(&id, "18500.00", "4.000")).await.unwrap();
    server.as_("b2").trading.place_bid(bid(&id, "18200.00", "6.000")).await.unwrap();
    let failed = operator
        .operator
        .create_auction(create(
            reserve_lot("BOARD-OFFLINE-2", "5.000", "1.000"),
            pb::AuctionFormat::SealedUniformPrice,
            after(0.0),
            after(1.0),
        ))
        .await
        .unwrap()
        .into_inner()
        .auction_id;
    // Both close by the server's timers; wait for their settlements on the board.
    for _ in 0..100 {
        let page = get(server.board, "/").await;
        if page.contains(&format!("result-{id}")) && page.contains(&format!("result-{failed}")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let dir = server.stop().await;
    let mut config = Config::default();
    config.set_data_dir(dir.path().to_owned());
    crate::sealing::key_inside(&mut config, dir.path());
    let out = dir.path().join("report.html");
    emission_auction::board::report::run(&config, None, None, &out).unwrap();
    let html = std::fs::read_to_string(&out).unwrap();
    assert!(html.contains("<svg"), "charts are rendered on the server");
    assert!(html.contains(&id) && html.contains(&failed));
    assert!(html.contains("NO_BIDS"), "the failed auction is listed with its reason");
    // Pay-as-bid: 4 t at 18500 and 6 t at 18200, average 18320.00.
    assert!(html.contains("18320.00"), "the volume-weighted price of a pay-as-bid auction");
    // Two winners with 40% and 60%: HHI 1600 + 3600 = 5200.
    assert!(html.contains("<td>5200</td>"), "HHI per auction");
    // A period before anything happened holds nothing.
    emission_auction::board::report::run(&config, Some("2000-01-01"), Some("2000-01-31"), &out).unwrap();
    assert!(std::fs::read_to_string(&out).unwrap().contains("Nothing was sold in this period."));
}
