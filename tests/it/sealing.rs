//! Sealed bids at rest: before the close nothing in the data directory (journal segments,
//! anchor, settlements, principals) nor in the logs shows a sealed bid's price, quantity or
//! bidder; the server reads its own sealed entries back across a restart; after the close the
//! journal alone, replayed in a fresh process without the master key, derives the very bytes of
//! `settlements.jsonl`. Directories are 0700 and files 0600 whatever the umask.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use emission_auction::config::Config;
use emission_auction::domain::{AuctionId, Price, Quantity, Timestamp};
use emission_auction::engine::Command;
use emission_auction::grpc::convert::auction_request;
use emission_auction::proto as pb;
use emission_auction::service::clock::ManualClock;
use emission_auction::service::{Exchange, Fingerprint, Origin};

use crate::grpc::{create, firm, reserve_lot};

/// 2026-03-01T00:00:00Z.
const T0: i64 = 1_772_323_200_000_000;
const HOUR: i64 = 3_600_000_000;

fn origin(principal: &str, request: u64) -> Origin {
    Origin {
        principal: principal.to_owned(),
        // Bidders' request ids are secret too; an operator's are not.
        request_id: if principal.starts_with('b') {
            format!("canary-request-{request}")
        } else {
            format!("op-{request}")
        },
        fingerprint: Fingerprint::of("test", &request.to_le_bytes()),
    }
}

/// Names a master key file inside `dir` (writing one if missing), for tests whose data
/// directory is a temporary directory itself: the default key file beside it would outlive it.
pub fn key_inside(config: &mut Config, dir: &Path) {
    let path = dir.join("test-master.key");
    if !path.exists() {
        std::fs::write(&path, format!("{}\n", "5a".repeat(32))).unwrap();
    }
    config.master_key_file = Some(path);
}

/// Captured log output.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn start(config: &Config, at: i64) -> Arc<Exchange> {
    let clock = Arc::new(ManualClock::new(Timestamp::from_micros(at)));
    emission_auction::server::assemble_with_clock(config, clock).await.unwrap().exchange
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.push(path.clone());
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The canaries: each bidder's price, quantity and credit code, as text and as the journal
/// would encode them in clear.
fn canaries(bids: &[(u32, Price, Quantity)]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for (who, price, quantity) in bids {
        out.push((format!("price text {price}"), price.to_string().into_bytes()));
        out.push((format!("quantity text {quantity}"), quantity.to_string().into_bytes()));
        out.push((format!("price encoded {price}"), postcard::to_stdvec(price).unwrap()));
        out.push((format!("quantity encoded {quantity}"), postcard::to_stdvec(quantity).unwrap()));
        out.push((format!("bidder {}", firm(*who)), firm(*who).to_string().into_bytes()));
    }
    out.push(("request id".into(), b"canary-request".to_vec()));
    out
}

#[test]
fn sealed_bids_stay_sealed_at_rest_and_the_journal_alone_derives_the_settlements_after_the_close() {
    // Whatever the umask: the widest one.
    let old = rustix::process::umask(rustix::fs::Mode::empty());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let mut config = Config::default();
    config.set_data_dir(data.clone());
    let key_file = root.path().join("data.key");

    // Canaries: prices and quantities of seven digits, so that their encodings are 4 bytes
    // or more and random ciphertext does not contain them by chance.
    let bids: Vec<(u32, Price, Quantity)> = vec![
        (71, Price::from_units(1_876_543).unwrap(), Quantity::from_units(4_321_987).unwrap()),
        (72, Price::from_units(1_854_321).unwrap(), Quantity::from_units(3_456_789).unwrap()),
        (73, Price::from_units(1_899_917).unwrap(), Quantity::from_units(2_345_671).unwrap()),
    ];
    let revised = (Price::from_units(1_887_719).unwrap(), Quantity::from_units(1_234_567).unwrap());
    let mut all = bids.clone();
    all.push((71, revised.0, revised.1));

    let id = AuctionId::new(1);
    runtime.block_on(async {
        let exchange = start(&config, T0).await;
        let t0 = Timestamp::from_micros(T0);
        let request = create(
            reserve_lot("SEAL-1", "9000.000", "0.001"),
            pb::AuctionFormat::SealedPayAsBid,
            t0,
            t0.plus_micros(HOUR),
        );
        let created = exchange.create_auction(auction_request(&request).unwrap(), origin("operator", 1)).await.unwrap();
        assert_eq!(created.spec.id, id);
        while exchange.get(id).unwrap().phase != emission_auction::engine::Phase::Open {
            tokio::task::yield_now().await;
        }
        let mut first = None;
        for (n, (who, price, quantity)) in bids.iter().enumerate() {
            let receipt = exchange
                .place_bid(id, firm(*who), Some(*price), Some(*quantity), origin(&format!("b{who}"), 10 + n as u64))
                .await
                .unwrap();
            first.get_or_insert(receipt.bid.id);
        }
        exchange
            .revise_bid(id, firm(71), first.unwrap(), Some(revised.0), Some(revised.1), origin("b71", 20))
            .await
            .unwrap();
        exchange.shutdown().await;
    });
    assert!(key_file.exists(), "the default master key is created beside the data directory");

    // A restart reads the sealed entries back with the master key: bids and request ids.
    runtime.block_on(async {
        let exchange = start(&config, T0 + 60_000_000).await;
        let mine = exchange.bids_of(id, firm(71)).await.unwrap();
        assert!(mine.iter().any(|b| b.price == revised.0 && b.quantity == revised.1), "{mine:?}");
        // The same request id again gets the original receipt, with nothing changed.
        let again =
            exchange.place_bid(id, firm(72), Some(bids[1].1), Some(bids[1].2), origin("b72", 11)).await.unwrap();
        assert_eq!(again.bid.price, bids[1].1);
        assert_eq!(exchange.bids_of(id, firm(72)).await.unwrap().len(), 1);
        exchange.shutdown().await;
    });

    // Before the close: no canary anywhere in the data directory or the logs.
    let mut paths = Vec::new();
    files_under(&data, &mut paths);
    assert!(paths.iter().any(|p| p.extension().is_some_and(|e| e == "anchor")), "{paths:?}");
    let logged = logs.0.lock().unwrap().clone();
    assert!(contains(&logged, b"auction created"), "logs were captured");
    for (what, needle) in canaries(&all) {
        for path in &paths {
            if path.is_file() {
                let bytes = std::fs::read(path).unwrap();
                assert!(!contains(&bytes, &needle), "{what} found in {} before the close", path.display());
            }
        }
        assert!(!contains(&logged, &needle), "{what} found in the logs before the close");
    }

    // Permissions, whatever the umask.
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700, "{}", data.display());
    assert_eq!(mode(&key_file), 0o600);
    for path in &paths {
        let want = if path.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode(path), want, "{}", path.display());
    }

    // The close, then an offline replay in a fresh process without the master key.
    runtime.block_on(async {
        let exchange = start(&config, T0 + 120_000_000).await;
        exchange.operate(id, Command::Close, origin("operator", 30)).await.unwrap();
        let settlement = exchange.settlement(id).await.unwrap();
        assert!(!settlement.settlement.allocations.is_empty());
        exchange.shutdown().await;
    });
    drop(guard);
    rustix::process::umask(old);
    let hidden = root.path().join("elsewhere.key");
    std::fs::rename(&key_file, &hidden).unwrap();
    let out = root.path().join("replayed.jsonl");
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_emission-auction"))
        .args(["journal", "replay", "--data-dir"])
        .arg(&data)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{report} {}", String::from_utf8_lossy(&run.stderr));
    assert!(report.contains("1 settlements derived"), "{report}");
    assert!(!key_file.exists(), "the replay had no master key");
    let replayed = std::fs::read(&out).unwrap();
    let recorded = std::fs::read(data.join("settlements.jsonl")).unwrap();
    assert!(!recorded.is_empty());
    assert!(replayed == recorded, "journal replay --out differs from settlements.jsonl");
    // The settlement is public after the close: the revised bid won at its price.
    assert!(contains(&recorded, firm(71).to_string().as_bytes()));
}

#[test]
fn a_configured_master_key_file_must_exist() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let root = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.set_data_dir(root.path().join("data"));
    config.master_key_file = Some(root.path().join("missing.key"));
    let clock = Arc::new(ManualClock::new(Timestamp::from_micros(T0)));
    let result = runtime.block_on(emission_auction::server::assemble_with_clock(&config, clock));
    let error = result.err().expect("a missing configured key refuses the start").to_string();
    assert!(error.contains("missing.key"), "{error}");
}

/// Runs the built binary with `args`, against `url` with `token` when given.
fn cli(url: &str, token: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_emission-auction"))
        .args(args)
        .env("EA_SERVER", url)
        .env("EA_TOKEN", token)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_receipt_and_an_inclusion_proof_verify_with_the_command_line_and_a_tampered_one_fails() {
    use emission_auction::auth::{Principal, Principals, Role};
    use emission_auction::domain::CreditCode;

    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.set_data_dir(dir.path().join("data"));
    let mut principals = Principals::default();
    let operator =
        principals.add(Principal { name: "operator".into(), role: Role::Operator, enterprise: None }).unwrap();
    let mut bidders = Vec::new();
    for n in 1..=3u32 {
        let code = CreditCode::with_check_digit(&format!("91140100MA0RCPT0{n}")).unwrap();
        let role = Principal { name: format!("b{n}"), role: Role::Bidder, enterprise: Some(code) };
        bidders.push(principals.add(role).unwrap());
    }
    std::fs::create_dir_all(&config.data_dir).unwrap();
    principals.save(&config.principals_file).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let parts = emission_auction::server::assemble(&config).await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(emission_auction::server::run(parts, listener, async {
        let _ = stopped.await;
    }));
    let run = |token: String, args: Vec<String>| {
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            cli(&url, &token, &args)
        })
    };
    let strings = |args: &[&str]| args.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();

    let created = run(
        operator.clone(),
        strings(&[
            "auction",
            "create",
            "--lot-id",
            "RCPT-1",
            "--pollutant",
            "SO2",
            "--closes-in",
            "600",
            "--seller",
            "12140000MB0CENTRE8",
            "--origin",
            "reserve",
            "--region",
            "140100",
            "--vintage-year",
            "2025",
            "--quantity",
            "20.000",
            "--fill-unit",
            "1.000",
            "--format",
            "uniform-price",
        ]),
    )
    .await
    .unwrap();
    assert!(created.status.success(), "{}", text(&created.stderr));
    let id = text(&created.stdout).split_whitespace().next().unwrap().to_owned();

    // The server's key, by the command line.
    let key = run(bidders[0].clone(), strings(&["settlement", "server-key"])).await.unwrap();
    assert!(key.status.success(), "{}", text(&key.stderr));
    let key = text(&key.stdout).trim().to_owned();
    assert_eq!(key.len(), 64, "{key}");

    // Each bidder bids; the first keeps its receipt.
    let receipt = dir.path().join("receipt.json");
    for (n, token) in bidders.iter().enumerate() {
        let price = format!("{}.00", 18_100 + n * 100);
        let mut args = strings(&["bid", "place", &id, "--price", &price, "--quantity", "8.000"]);
        if n == 0 {
            args.extend(strings(&["--save-receipt", receipt.to_str().unwrap()]));
        }
        let placed = run(token.clone(), args).await.unwrap();
        assert!(placed.status.success(), "{}", text(&placed.stderr));
    }
    let verified =
        run(String::new(), strings(&["receipt", "verify", receipt.to_str().unwrap(), "--key", &key])).await.unwrap();
    assert!(verified.status.success(), "{} {}", text(&verified.stdout), text(&verified.stderr));
    assert!(text(&verified.stdout).contains("signature: valid"));

    // A tampered receipt (a lower price) fails.
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&receipt).unwrap()).unwrap();
    let mut tampered = saved.clone();
    tampered["price"] = "18000.00".into();
    let forged = dir.path().join("forged.json");
    std::fs::write(&forged, serde_json::to_vec(&tampered).unwrap()).unwrap();
    let refused =
        run(String::new(), strings(&["receipt", "verify", forged.to_str().unwrap(), "--key", &key])).await.unwrap();
    assert!(!refused.status.success(), "a tampered receipt verified");
    assert!(text(&refused.stderr).contains("does not verify"), "{}", text(&refused.stderr));

    // The close, then the proof against the settlement's root.
    let closed = run(operator.clone(), strings(&["auction", "close", &id])).await.unwrap();
    assert!(closed.status.success(), "{}", text(&closed.stderr));
    let mut root = String::new();
    for _ in 0..100 {
        let got = run(bidders[0].clone(), strings(&["settlement", "get", &id])).await.unwrap();
        if let Some(line) = text(&got.stdout).lines().find(|l| l.contains("book root:")) {
            root = line.split_whitespace().last().unwrap().to_owned();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(root.len(), 64, "the settlement carries the book's root");
    let bid = saved["bid_id"].as_str().unwrap().to_owned();
    let proof = dir.path().join("proof.json");
    let got =
        run(bidders[0].clone(), strings(&["bid", "proof", &id, &bid, "--out", proof.to_str().unwrap()])).await.unwrap();
    assert!(got.status.success(), "{}", text(&got.stderr));
    let checked =
        run(String::new(), strings(&["receipt", "verify", proof.to_str().unwrap(), "--key", &key, "--root", &root]))
            .await
            .unwrap();
    assert!(checked.status.success(), "{} {}", text(&checked.stdout), text(&checked.stderr));
    assert!(text(&checked.stdout).contains("inclusion: valid, leaf"), "{}", text(&checked.stdout));
    // Against another root, the proof fails.
    let other = "00".repeat(32);
    let wrong =
        run(String::new(), strings(&["receipt", "verify", proof.to_str().unwrap(), "--key", &key, "--root", &other]))
            .await
            .unwrap();
    assert!(!wrong.status.success());
    // Another bidder's bid is not found for this bidder.
    let theirs = run(bidders[1].clone(), strings(&["bid", "proof", &id, &bid, "--out", "/dev/null"])).await.unwrap();
    assert!(!theirs.status.success());
    assert!(text(&theirs.stderr).contains("BID_NOT_FOUND"), "{}", text(&theirs.stderr));

    let _ = stop.send(());
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), task).await;
}
