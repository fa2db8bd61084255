//! The command line as a user runs it: the built binary against a real server on 127.0.0.1:0
//! (wall clock, since the CLI sends times from now). Self-contained: its own server and
//! principals.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use emission_auction::auth::{Principal, Principals, Role};
use emission_auction::cli::client::{Terminal, request_id};
use emission_auction::cli::render;
use emission_auction::config::Config;
use emission_auction::domain::CreditCode;
use emission_auction::proto as pb;
use tokio::sync::oneshot;
use tonic::transport::Channel;

struct Server {
    url: String,
    operator: String,
    bidder: String,
    channel: Channel,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), emission_auction::server::ServerError>>,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.set_data_dir(dir.path().to_owned());
        crate::sealing::key_inside(&mut config, dir.path());
        let mut principals = Principals::default();
        let operator =
            principals.add(Principal { name: "operator".into(), role: Role::Operator, enterprise: None }).unwrap();
        let firm = CreditCode::with_check_digit("91140100MA0DEM001").unwrap();
        let bidder =
            principals.add(Principal { name: "b1".into(), role: Role::Bidder, enterprise: Some(firm) }).unwrap();
        principals.save(&config.principals_file).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let parts = emission_auction::server::assemble(&config).await.unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(emission_auction::server::run(parts, listener, async {
            let _ = stopped.await;
        }));
        let channel = Channel::from_shared(url.clone()).unwrap().connect().await.unwrap();
        Server { url, operator, bidder, channel, stop, task, _dir: dir }
    }

    fn as_(&self, token: &str) -> Terminal {
        Terminal::on(self.channel.clone(), token).unwrap()
    }

    fn cli(&self, token: &str, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_emission-auction"));
        command.args(args).env("EA_SERVER", &self.url).env("EA_TOKEN", token).env_remove("RUST_LOG");
        command
    }

    /// Runs the CLI to completion on a blocking thread.
    async fn run(&self, token: &str, args: &[&str]) -> Output {
        let mut command = self.cli(token, args);
        tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap()
    }

    async fn stop(self) {
        drop(self.channel);
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(5), self.task).await.unwrap().unwrap().unwrap();
    }
}

const LOT: &[&str] =
    &["--seller", "12140000MB0CENTRE8", "--origin", "reserve", "--region", "140100", "--vintage-year", "2025"];

fn create_args<'a>(lot_id: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["auction", "create", "--lot-id", lot_id, "--pollutant", "SO2", "--closes-in", "600"];
    args.extend_from_slice(LOT);
    args.extend_from_slice(extra);
    args
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The auction id on the first line of `auction create`'s output.
fn created_id(out: &Output) -> String {
    assert!(out.status.success(), "create failed: {}", text(&out.stderr));
    text(&out.stdout).split_whitespace().next().unwrap().to_owned()
}

async fn get(server: &Server, id: &str) -> pb::Auction {
    let mut operator = server.as_(&server.operator);
    operator.operator.get_auction(pb::GetAuctionRequest { auction_id: id.to_owned() }).await.unwrap().into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_creates_english_and_clock_auctions_with_their_terms_and_refuses_misplaced_terms() {
    let server = Server::start().await;
    let op = server.operator.clone();

    let english = create_args(
        "CLI-EN-1",
        &[
            "--quantity",
            "2.500",
            "--format",
            "english",
            "--start-price",
            "18500.00",
            "--increment",
            "200.00",
            "--countdown-seconds",
            "60",
            "--hard-stop-in",
            "1200",
            "--max-extensions",
            "5",
            "--timed-min-bidders",
            "2",
        ],
    );
    let id = created_id(&server.run(&op, &english).await);
    let a = get(&server, &id).await;
    assert_eq!(a.format, pb::AuctionFormat::AscendingEnglish as i32);
    let terms = a.ascending.unwrap();
    assert_eq!((terms.start_price.as_str(), terms.increment.as_str()), ("18500.00", "200.00"));
    assert_eq!((terms.countdown_seconds, terms.max_extensions, terms.timed_min_bidders), (60, Some(5), 2));
    // Both from the same "now": the hard stop 1200 s after it, the free period's end 600 s.
    assert_eq!(terms.hard_stop.unwrap().seconds - a.closes_at.unwrap().seconds, 600);

    let clock = create_args(
        "CLI-CL-1",
        &[
            "--quantity",
            "20.000",
            "--fill-unit",
            "1.000",
            "--format",
            "clock",
            "--increment",
            "100.00",
            "--round-seconds",
            "30",
            "--silent",
            "keep",
        ],
    );
    let id = created_id(&server.run(&op, &clock).await);
    let a = get(&server, &id).await;
    assert_eq!(a.format, pb::AuctionFormat::AscendingClock as i32);
    let terms = a.clock.unwrap();
    assert_eq!((terms.start_price.as_str(), terms.increment.as_str()), ("18000.00", "100.00"), "start at the floor");
    assert_eq!((terms.round_seconds, terms.silent_keeps_demand), (30, true));

    // Terms of another format are refused before anything is sent.
    for (extra, says) in [
        (&["--format", "first-price", "--round-seconds", "30"][..], "--round-seconds applies to --format clock only"),
        (
            &["--format", "clock", "--increment", "1.00", "--round-seconds", "3", "--countdown-seconds", "5"][..],
            "--countdown-seconds applies to --format english only",
        ),
        (&["--format", "english", "--increment", "1.00"][..], "--format english needs --countdown-seconds"),
    ] {
        let mut args = create_args("CLI-BAD", &["--quantity", "1.000"]);
        args.extend_from_slice(extra);
        let out = server.run(&op, &args).await;
        assert_eq!(out.status.code(), Some(1), "{extra:?}");
        assert!(text(&out.stderr).contains(says), "{extra:?}: {}", text(&out.stderr));
    }
    // The server's own refusal of English terms on a sealed auction, as the CLI shows it.
    let window = get(&server, &id).await;
    let mut operator = server.as_(&op);
    let refused = operator
        .operator
        .create_auction(pb::CreateAuctionRequest {
            request_id: request_id(),
            lot: Some(pb::Lot {
                lot_id: "CLI-BAD".into(),
                pollutant: pb::Pollutant::So2 as i32,
                quantity: "1.000".into(),
                seller: LOT[1].into(),
                origin: pb::LotOrigin::GovernmentReserve as i32,
                region_code: "140100".into(),
                vintage_year: 2025,
                valid_years: 5,
                ..Default::default()
            }),
            format: pb::AuctionFormat::SealedFirstPrice as i32,
            opens_at: window.opens_at,
            closes_at: window.closes_at,
            ascending: Some(pb::AscendingTerms {
                increment: "1.00".into(),
                countdown_seconds: 5,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    let shown = render::status(&refused);
    assert!(shown.starts_with("InvalidArgument: ") && shown.contains("[field=ascending]"), "{shown}");
    server.stop().await;
}

/// The next line of a watcher's output, within a few seconds.
async fn next_line(lines: &mut Option<BufReader<std::process::ChildStdout>>) -> String {
    let mut reader = lines.take().unwrap();
    let (reader, line) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            (reader, line)
        }),
    )
    .await
    .expect("a line within 10 s")
    .unwrap();
    *lines = Some(reader);
    line
}

async fn wait(mut child: Child) -> Output {
    tokio::time::timeout(
        Duration::from_secs(10),
        tokio::task::spawn_blocking(move || {
            let status = child.wait().unwrap();
            let mut stderr = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
            Output { status, stdout: Vec::new(), stderr: stderr.into_bytes() }
        }),
    )
    .await
    .expect("the CLI exits within 10 s")
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_watch_prints_each_update_and_ends_quietly_when_its_reader_goes() {
    let server = Server::start().await;
    let english = create_args(
        "CLI-EN-W",
        &["--quantity", "1.000", "--format", "english", "--increment", "100.00", "--countdown-seconds", "60"],
    );
    let id = created_id(&server.run(&server.operator, &english).await);
    let spawn_watch = || {
        server
            .cli(&server.bidder, &["bid", "watch", &id])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };

    // A reader that takes one line and goes (`| head -1`): the watcher exits 0 at once,
    // without waiting for the next update and without a word on stderr.
    let mut quitter = spawn_watch();
    let mut lines = Some(BufReader::new(quitter.stdout.take().unwrap()));
    assert!(next_line(&mut lines).await.contains("STATE"));
    drop(lines);
    let out = wait(quitter).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "");

    let mut watcher = spawn_watch();
    let mut lines = Some(BufReader::new(watcher.stdout.take().unwrap()));
    let state = next_line(&mut lines).await;
    assert!(state.starts_with("#1 ") && state.contains("STATE") && state.contains("no bid yet"), "{state}");
    let mut bidder = server.as_(&server.bidder);
    let receipt = bidder
        .trading
        .place_bid(pb::PlaceBidRequest {
            request_id: request_id(),
            auction_id: id.clone(),
            price: "18000.00".into(),
            quantity: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let bid = next_line(&mut lines).await;
    assert!(bid.starts_with("#2 ") && bid.contains("BID"), "{bid}");
    assert!(bid.contains(&format!("18000.00 by {}, next >= 18100.00", receipt.pseudonym)), "{bid}");
    let cancelled = server.run(&server.operator, &["auction", "cancel", &id, "--reason", "test over"]).await;
    assert!(cancelled.status.success(), "{}", text(&cancelled.stderr));
    let concluded = next_line(&mut lines).await;
    assert!(concluded.starts_with("#3 ") && concluded.contains("CONCLUDED") && concluded.contains("CANCELLED"));
    let out = wait(watcher).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    server.stop().await;
}

/// `enterprise import` twice is idempotent and a changed row updates; `enterprise suspend`,
/// `reinstate` and `list`; `auction deposit` records a deposit for an auction that asks for one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_keeps_the_registry_and_records_deposits() {
    let server = Server::start().await;
    let op = server.operator.clone();
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("firms.csv");
    let a = CreditCode::with_check_digit("91140100MA0DEM001").unwrap().to_string();
    let b = CreditCode::with_check_digit("91140100MA0DEM002").unwrap().to_string();
    let rows = |name_b: &str| {
        format!(
            "credit_code,name,region_code,industry_code,permit_number,permit_valid_from,permit_valid_until\n\
             {a},\"Taiyuan Steel, Ltd.\",140100,C3120,P-001,2025-01-01,2028-12-31\n\
             {b},{name_b},140181,D4411,,,\n"
        )
    };
    std::fs::write(&csv, rows("Gujiao Power")).unwrap();
    let import = ["enterprise", "import", "--csv", csv.to_str().unwrap()];
    let out = server.run(&op, &import).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("2 added, 0 updated, 0 refused"), "{}", text(&out.stdout));
    // The same file again: the same request ids, nothing changes.
    let out = server.run(&op, &import).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    // A changed row is an update.
    std::fs::write(&csv, rows("Gujiao Power Co.")).unwrap();
    let out = server.run(&op, &import).await;
    assert!(text(&out.stdout).contains("1 added, 1 updated, 0 refused"), "{}", text(&out.stdout));

    let out = server.run(&op, &["enterprise", "suspend", &b, "--reason", "late report"]).await;
    assert!(text(&out.stdout).contains("SUSPENDED"), "{}", text(&out.stdout));
    let out = server.run(&op, &["enterprise", "list"]).await;
    let listed = text(&out.stdout);
    assert!(listed.contains("Taiyuan Steel, Ltd.") && listed.contains("Gujiao Power Co."), "{listed}");
    assert!(listed.contains("(late report)"), "{listed}");
    let out = server.run(&op, &["enterprise", "reinstate", &b]).await;
    assert!(text(&out.stdout).contains("ACTIVE"), "{}", text(&out.stdout));
    let add = [
        "enterprise",
        "add",
        "--credit-code",
        "91140100MA0DEM003X",
        "--name",
        "x",
        "--region",
        "140100",
        "--industry",
        "C2511",
    ];
    let out = server.run(&op, &add).await;
    assert!(!out.status.success(), "a bad credit code is refused");

    let id = created_id(
        &server
            .run(
                &op,
                &create_args(
                    "CLI-DEP-1",
                    &["--quantity", "2.000", "--format", "uniform-price", "--deposit-amount", "50000.00"],
                ),
            )
            .await,
    );
    let out = server.run(&op, &["auction", "deposit", &id, "--enterprise", &a, "--amount", "30000.00"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("deposit 30000.00 yuan (the auction requires 50000.00)"),
        "{}",
        text(&out.stdout)
    );
    let out = server.run(&op, &["auction", "get", &id]).await;
    assert!(text(&out.stdout).contains("deposit    50000.00 yuan (fixed)"), "{}", text(&out.stdout));
    server.stop().await;
}
