//! The load generator on small numbers: counts and a well-formed report, never speed. It runs
//! in-process through the library (`cli::loadgen::run`), with the command line parsed as a user
//! would type it.

use clap::Parser as _;
use emission_auction::auth::{Principal, Principals, Role};
use emission_auction::cli::loadgen::{self, LoadgenArgs, Report};
use emission_auction::cli::{Cli, Top};
use emission_auction::config::Config;
use emission_auction::domain::CreditCode;
use emission_auction::proto as pb;
use tokio::sync::oneshot;
use tonic::Request;

fn args(flags: &[&str]) -> LoadgenArgs {
    let argv = ["emission-auction", "loadgen"].iter().chain(flags);
    match Cli::try_parse_from(argv).expect("a valid command line").command {
        Top::Loadgen(args) => args,
        other => panic!("parsed as {other:?}"),
    }
}

/// Runs the generator, then reads back the JSON it wrote and checks it says what the report
/// says.
async fn run(flags: &[&str]) -> (Report, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let mut all = flags.to_vec();
    all.extend(["--warmup", "0", "--duration", "60", "--sync-seconds", "0.05", "--json", json.to_str().unwrap()]);
    let report = loadgen::run(&args(&all)).await.expect("loadgen runs");
    let value: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(value["bids"]["accepted"], report.bids.accepted);
    assert_eq!(value["config"]["in_flight"], report.config.in_flight);
    (report, value)
}

/// Every count of one load, and the latencies only of what was measured.
fn check_load(load: &serde_json::Value, requests: u64) {
    assert_eq!(load["sent"], requests, "{load}");
    assert_eq!(load["accepted"], requests, "{load}");
    assert_eq!(load["errors"], 0, "{load}");
    assert_eq!(load["error_kinds"], serde_json::json!({}), "{load}");
    assert_eq!(load["measured"], requests, "{load}");
    assert_eq!(load["latency_us"]["count"], requests, "{load}");
    let l = &load["latency_us"];
    let (p50, p99, p999, max) = (
        l["p50"].as_u64().unwrap(),
        l["p99"].as_u64().unwrap(),
        l["p999"].as_u64().unwrap(),
        l["max"].as_u64().unwrap(),
    );
    assert!(p50 >= 1 && p50 <= p99 && p99 <= p999 && p999 <= max, "{load}");
    assert!(load["seconds"].as_f64().unwrap() > 0.0, "{load}");
    assert!(load["per_second"].as_f64().unwrap() > 0.0, "{load}");
}

fn check_ceilings(value: &serde_json::Value, requests: u64) {
    check_load(&value["health_ceiling"], requests);
    assert_eq!(value["health_ceiling"]["name"], "Health/Check");
    let sync = &value["fdatasync_ceiling"];
    assert!(sync["syncs"].as_u64().unwrap() >= 1, "{sync}");
    assert_eq!(sync["write_bytes"], 4096);
    let bids = value["bids"]["per_second"].as_f64().unwrap();
    let health = value["health_ceiling"]["per_second"].as_f64().unwrap();
    let ratio = value["ratios"]["bids_to_health"].as_f64().unwrap();
    assert!((ratio - bids / health).abs() <= 1e-9 * ratio.max(1.0), "{value}");
    assert!(value["ratios"]["bids_per_fdatasync"].as_f64().unwrap() > 0.0);
    for key in ["date", "machine", "config"] {
        assert!(value.get(key).is_some(), "{key} missing from {value}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unary_closed_loop_on_its_own_server() {
    let (report, value) = run(&["--bidders", "2", "--requests", "200", "--in-flight", "8", "--connections", "2"]).await;
    check_load(&value["bids"], 200);
    assert_eq!(value["bids"]["name"], "Trading/PlaceBid");
    assert!(value["bids"]["service_time_us"].is_null(), "closed loop has no separate service time");
    check_ceilings(&value, 200);
    assert_eq!(value["config"]["journal_sync"], "every_batch");
    assert_eq!(report.config.auction_ids.len(), 1);
    assert!(loadgen::table(&report).contains("Trading/PlaceBid"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_on_its_own_server() {
    let (_, value) = run(&[
        "--rpc",
        "stream",
        "--streams",
        "2",
        "--bidders",
        "2",
        "--auctions",
        "2",
        "--requests",
        "200",
        "--in-flight",
        "16",
    ])
    .await;
    check_load(&value["bids"], 200);
    assert_eq!(value["bids"]["name"], "Trading/PlaceBids");
    assert_eq!(value["config"]["streams"], 2);
    assert_eq!(value["config"]["auction_ids"].as_array().unwrap().len(), 2);
    check_ceilings(&value, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_rate_reports_latency_from_the_intended_send() {
    for rpc in ["unary", "stream"] {
        let (_, value) = run(&[
            "--rpc",
            rpc,
            "--mode",
            "rate",
            "--rate",
            "2000",
            "--bidders",
            "2",
            "--requests",
            "100",
            "--no-ceiling",
        ])
        .await;
        check_load(&value["bids"], 100);
        let service = &value["bids"]["service_time_us"];
        assert_eq!(service["count"], 100, "{value}");
        // Measured from the intended send, a latency is never shorter than from the send.
        assert!(value["bids"]["latency_us"]["max"].as_u64() >= service["max"].as_u64(), "{value}");
        assert!(value["health_ceiling"].is_null());
        assert!(value["ratios"]["bids_to_health"].is_null());
    }
}

/// Against a server someone else runs: existing tokens, and the bids land in the book.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn against_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.set_data_dir(dir.path().join("data"));
    let mut principals = Principals::default();
    let operator = principals.add(Principal { name: "op".into(), role: Role::Operator, enterprise: None }).unwrap();
    let mut bidders = Vec::new();
    for i in 0..3 {
        let code = CreditCode::with_check_digit(&format!("9114010000000000{i}")).unwrap();
        bidders.push(
            principals.add(Principal { name: format!("b{i}"), role: Role::Bidder, enterprise: Some(code) }).unwrap(),
        );
    }
    principals.save(&config.principals_file).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let parts = emission_auction::server::assemble(&config).await.unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(emission_auction::server::run(parts, listener, async {
        let _ = stopped.await;
    }));
    let tokens = dir.path().join("bidders.txt");
    std::fs::write(&tokens, format!("# three bidders\n{}\n\n", bidders.join("\n"))).unwrap();

    let (report, value) = run(&[
        "--server",
        &url,
        "--operator-token",
        &operator,
        "--bidder-tokens",
        tokens.to_str().unwrap(),
        "--requests",
        "60",
        "--in-flight",
        "4",
        "--no-ceiling",
    ])
    .await;
    check_load(&value["bids"], 60);
    assert_eq!(value["config"]["server"], url.as_str());
    assert_eq!(value["config"]["bidders"], 3);
    assert!(value["config"]["journal_sync"].is_null(), "not this run's server");

    // Each of the three bidders holds a third of the bids.
    let channel = tonic::transport::Channel::from_shared(url.clone()).unwrap().connect().await.unwrap();
    let auction = report.config.auction_ids[0].clone();
    for token in &bidders {
        let mut request = Request::new(pb::ListMyBidsRequest { auction_id: auction.clone() });
        request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
        let mine = pb::trading_client::TradingClient::new(channel.clone()).list_my_bids(request).await.unwrap();
        assert_eq!(mine.into_inner().bids.len(), 20);
    }
    drop(channel);
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
