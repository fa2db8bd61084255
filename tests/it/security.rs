//! Security over the real server on 127.0.0.1:0: TLS and mutual TLS with certificates made
//! here (rcgen), principals removed, rotated and re-added while the server runs, the
//! per-principal rate limit under a flood, connection limits, malformed protobuf and the
//! bearer scheme.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use emission_auction::auth::{Principal, PrincipalStore, Principals, Role};
use emission_auction::cli::client::{ClientTls, Terminal};
use emission_auction::config::{Config, TlsFiles};
use emission_auction::domain::Timestamp;
use emission_auction::grpc::convert::to_timestamp;
use emission_auction::proto as pb;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use tokio::io::AsyncReadExt;
use tokio::sync::oneshot;
use tonic::Code;

use crate::grpc::{firm, reason, reserve_lot};

/// A certificate authority made for one test, and leaf certificates it signs.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        Ca { issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap() }
    }

    /// A certificate and key (PEM) for `names` (DNS names or IP addresses).
    fn leaf(&self, common_name: &str, names: &[&str]) -> (String, String) {
        let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(DnType::CommonName, common_name);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, self.issuer.pem()).unwrap();
        path
    }
}

fn write_pair(dir: &Path, name: &str, (cert, key): (String, String)) -> (PathBuf, PathBuf) {
    let (c, k) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")));
    std::fs::write(&c, cert).unwrap();
    std::fs::write(&k, key).unwrap();
    (c, k)
}

struct Server {
    addr: SocketAddr,
    dir: tempfile::TempDir,
    principals: Arc<PrincipalStore>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), emission_auction::server::ServerError>>,
}

impl Server {
    /// Starts a server on the wall clock over `dir` (its principals file must be written),
    /// with the config as `edit` leaves it.
    async fn start(dir: tempfile::TempDir, edit: impl FnOnce(&mut Config)) -> Server {
        let mut config = Config::default();
        config.set_data_dir(dir.path().to_owned());
        crate::sealing::key_inside(&mut config, dir.path());
        config.principals_poll = Duration::from_millis(50);
        edit(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let parts = emission_auction::server::assemble(&config).await.unwrap();
        let principals = Arc::clone(&parts.principals);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(emission_auction::server::run(parts, listener, async {
            let _ = stopped.await;
        }));
        Server { addr, dir, principals, stop: Some(stop), task }
    }

    fn principals_file(&self) -> PathBuf {
        self.dir.path().join("principals.json")
    }

    fn plain(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn https(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    /// Changes the principals file as the `principal` commands do.
    fn edit_principals<T>(&self, edit: impl FnOnce(&mut Principals) -> T) -> T {
        let mut principals = Principals::load(&self.principals_file()).unwrap();
        let out = edit(&mut principals);
        principals.save(&self.principals_file()).unwrap();
        out
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(10), self.task).await.expect("server stops in time").unwrap().unwrap();
    }
}

fn bidder(name: &str, n: u32) -> Principal {
    Principal { name: name.into(), role: Role::Bidder, enterprise: Some(firm(n)) }
}

fn operator() -> Principal {
    Principal { name: "operator".into(), role: Role::Operator, enterprise: None }
}

/// Creates and opens a uniform-price auction of 1,000 t in 1 t units; returns its id.
async fn open_auction(op: &mut Terminal, lot: &str) -> String {
    let now = Timestamp::from_micros(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as i64,
    );
    let hour = 3_600_000_000;
    let created = op
        .operator
        .create_auction(pb::CreateAuctionRequest {
            request_id: format!("create-{lot}"),
            lot: Some(reserve_lot(lot, "1000.000", "1.000")),
            format: pb::AuctionFormat::SealedPayAsBid as i32,
            opens_at: Some(to_timestamp(now.plus_micros(hour))),
            closes_at: Some(to_timestamp(now.plus_micros(2 * hour))),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    op.operator
        .open_auction(pb::AuctionRef { request_id: format!("open-{lot}"), auction_id: created.auction_id.clone() })
        .await
        .unwrap();
    created.auction_id
}

fn place(auction: &str, request_id: &str) -> pb::PlaceBidRequest {
    pb::PlaceBidRequest {
        request_id: request_id.into(),
        auction_id: auction.into(),
        price: "18000.00".into(),
        quantity: "1.000".into(),
    }
}

fn list() -> pb::ListAuctionsRequest {
    pb::ListAuctionsRequest::default()
}

/// Certificates for one TLS test: the server's (for localhost and 127.0.0.1), a client's
/// mapped to a principal, and a client certificate from a CA the server does not trust.
struct Pki {
    ca: PathBuf,
    server: (PathBuf, PathBuf),
    client: (PathBuf, PathBuf),
    stranger_ca: PathBuf,
    stranger: (PathBuf, PathBuf),
}

fn make_pki(dir: &Path) -> Pki {
    let ca = Ca::new("Test Trading Centre CA");
    let stranger_ca = Ca::new("Someone Else's CA");
    Pki {
        ca: ca.write(dir, "ca.pem"),
        server: write_pair(dir, "server", ca.leaf("auction.test", &["localhost", "127.0.0.1"])),
        client: write_pair(dir, "client", ca.leaf("taiyuan-steel terminal", &["terminal-1.test"])),
        stranger_ca: stranger_ca.write(dir, "stranger-ca.pem"),
        stranger: write_pair(dir, "stranger", stranger_ca.leaf("taiyuan-steel terminal", &["terminal-1.test"])),
    }
}

fn tls(ca: &Path, client: Option<&(PathBuf, PathBuf)>) -> ClientTls {
    ClientTls {
        ca: Some(ca.to_owned()),
        cert: client.map(|c| c.0.clone()),
        key: client.map(|c| c.1.clone()),
        domain: None,
    }
}

/// Connects and makes one call; the error of either, as text.
async fn try_list(addr: &str, token: Option<&str>, tls: &ClientTls) -> Result<pb::ListAuctionsResponse, String> {
    let mut t = Terminal::connect_with(addr, token, tls).await.map_err(|e| format!("connect: {e}"))?;
    t.trading.list_auctions(list()).await.map(|r| r.into_inner()).map_err(|s| format!("call: {s:?}"))
}

/// TLS: a token over TLS works, a client certificate maps to its principal with no token, a
/// server certificate from a wrong CA and a client certificate from an untrusted CA are both
/// refused, and a plain-text client gets nothing from a TLS server.
#[tokio::test]
async fn tls_and_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    let mut principals = Principals::default();
    let op_token = principals.add(operator()).unwrap();
    principals.add(bidder("taiyuan-steel", 1)).unwrap();
    principals.add(bidder("unmapped", 2)).unwrap();
    principals.set_client_cert("taiyuan-steel", &std::fs::read(&pki.client.0).unwrap()).unwrap();
    principals.save(&dir.path().join("principals.json")).unwrap();
    let files = TlsFiles {
        cert: pki.server.0.clone(),
        key: pki.server.1.clone(),
        client_ca: Some(pki.ca.clone()),
        require_client_cert: false,
    };
    let server = Server::start(dir, |c| c.tls = Some(files.clone())).await;

    // A token over TLS.
    try_list(&server.https(), Some(&op_token), &tls(&pki.ca, None)).await.unwrap();
    // Connecting by IP address: the server's certificate names 127.0.0.1 too.
    try_list(&format!("https://{}", server.addr), Some(&op_token), &tls(&pki.ca, None)).await.unwrap();

    // A client certificate and no token: the call is made as the principal it maps to.
    let mut terminal = Terminal::connect_with(&server.https(), None, &tls(&pki.ca, Some(&pki.client))).await.unwrap();
    terminal.trading.list_auctions(list()).await.unwrap();
    let refused = terminal
        .operator
        .cancel_auction(pb::CancelAuctionRequest {
            request_id: "r".into(),
            auction_id: "AUC-0001".into(),
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    let (code, metadata) = reason(&refused);
    assert_eq!((code.as_str(), metadata["role"].as_str()), ("ROLE_NOT_ALLOWED", "bidder"));

    // A certificate and a token of different principals: refused.
    let mixed = try_list(&server.https(), Some(&op_token), &tls(&pki.ca, Some(&pki.client))).await.unwrap_err();
    assert!(mixed.contains("Unauthenticated") && mixed.contains("different principals"), "{mixed}");

    // The client does not trust the server's CA: no connection.
    let wrong_ca = try_list(&server.https(), Some(&op_token), &tls(&pki.stranger_ca, None)).await.unwrap_err();
    assert!(wrong_ca.starts_with("connect"), "{wrong_ca}");
    // The server does not trust the client's CA: refused in the handshake.
    let stranger = try_list(&server.https(), None, &tls(&pki.ca, Some(&pki.stranger))).await.unwrap_err();
    assert!(!stranger.contains("Ok"), "{stranger}");
    // Plain text to a TLS server: nothing gets through.
    let plain = try_list(&server.plain(), Some(&op_token), &ClientTls::default()).await.unwrap_err();
    assert!(plain.starts_with("connect") || plain.contains("Unavailable") || plain.contains("Unknown"), "{plain}");
    server.stop().await;

    // A server that requires client certificates refuses a client without one.
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    let mut principals = Principals::default();
    let op_token = principals.add(operator()).unwrap();
    principals.save(&dir.path().join("principals.json")).unwrap();
    let files = TlsFiles {
        cert: pki.server.0.clone(),
        key: pki.server.1.clone(),
        client_ca: Some(pki.ca.clone()),
        require_client_cert: true,
    };
    let server = Server::start(dir, |c| c.tls = Some(files.clone())).await;
    try_list(&server.https(), Some(&op_token), &tls(&pki.ca, None)).await.unwrap_err();
    // With a trusted certificate that maps to no principal, the token still identifies the caller.
    try_list(&server.https(), Some(&op_token), &tls(&pki.ca, Some(&pki.client))).await.unwrap();
    let unmapped = try_list(&server.https(), None, &tls(&pki.ca, Some(&pki.client))).await.unwrap_err();
    assert!(unmapped.contains("Unauthenticated"), "{unmapped}");
    server.stop().await;
}

/// Plain text is refused on an address that is not loopback unless allowed.
#[tokio::test]
async fn plaintext_off_loopback_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.set_data_dir(dir.path().to_owned());
    crate::sealing::key_inside(&mut config, dir.path());
    let parts = emission_auction::server::assemble(&config).await.unwrap();
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let err = emission_auction::server::run(parts, listener, std::future::pending()).await.unwrap_err();
    assert!(err.to_string().contains("refusing to serve plain text"), "{err}");
}

/// Principals change while the server runs: a removed bidder's next call is refused, a
/// rotated token is revoked, a new principal under a removed one's name inherits none of its
/// request ids, and a reload of a broken file keeps the set in force.
#[tokio::test]
async fn principals_change_while_the_server_runs() {
    let dir = tempfile::tempdir().unwrap();
    let mut principals = Principals::default();
    let op_token = principals.add(operator()).unwrap();
    let old_b1 = principals.add(bidder("b1", 1)).unwrap();
    let old_b2 = principals.add(bidder("b2", 2)).unwrap();
    principals.save(&dir.path().join("principals.json")).unwrap();
    let server = Server::start(dir, |_| {}).await;
    let addr = server.plain();
    let mut op = Terminal::connect(&addr, &op_token).await.unwrap();
    let auction = open_auction(&mut op, "SEC-RELOAD").await;

    let mut b1 = Terminal::connect(&addr, &old_b1).await.unwrap();
    let first = b1.trading.place_bid(place(&auction, "r-1")).await.unwrap().into_inner();

    // Removed, and the server told at once (what SIGHUP does): the very next call is refused.
    server.edit_principals(|p| p.remove("b1").unwrap());
    server.principals.reload().unwrap();
    let refused = b1.trading.list_auctions(list()).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");

    // A new principal under the removed one's name, for another enterprise, retrying the old
    // request id with the same request: a new bid, nothing inherited.
    let new_b1 = server.edit_principals(|p| p.add(bidder("b1", 3)).unwrap());
    server.principals.reload().unwrap();
    let mut b1 = Terminal::connect(&addr, &new_b1).await.unwrap();
    let second = b1.trading.place_bid(place(&auction, "r-1")).await.unwrap().into_inner();
    assert_ne!(first.bid_id, second.bid_id, "the new principal got the removed principal's bid");
    let mine = b1.trading.list_my_bids(pb::ListMyBidsRequest { auction_id: auction.clone() }).await.unwrap();
    assert_eq!(mine.into_inner().bids.len(), 1, "the new b1 sees only its own bid");

    // Rotation through the file alone (the server polls it): the old token is refused, the
    // new one works.
    let mut b2 = Terminal::connect(&addr, &old_b2).await.unwrap();
    b2.trading.list_auctions(list()).await.unwrap();
    let rotated = server.edit_principals(|p| p.rotate("b2").unwrap());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match b2.trading.list_auctions(list()).await {
            Err(s) if s.code() == Code::Unauthenticated => break,
            Ok(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(20)).await,
            other => panic!("the old token still works after the file changed: {other:?}"),
        }
    }
    let mut b2 = Terminal::connect(&addr, &rotated).await.unwrap();
    b2.trading.list_auctions(list()).await.unwrap();

    // An expired token is refused and says so.
    server.edit_principals(|p| p.set_expiry("b2", Some(0)).unwrap());
    server.principals.reload().unwrap();
    let expired = b2.trading.list_auctions(list()).await.unwrap_err();
    assert!(expired.message().contains("expired"), "{expired:?}");

    // A hand edit that duplicates a name is refused at reload; the set in force stays.
    let text = std::fs::read_to_string(server.principals_file()).unwrap();
    std::fs::write(server.principals_file(), text.replace("\"name\": \"b2\"", "\"name\": \"b1\"")).unwrap();
    let err = server.principals.reload().unwrap_err().to_string();
    assert!(err.contains("line ") && err.contains("a second principal named \"b1\""), "{err}");
    b1.trading.list_auctions(list()).await.unwrap();
    op.trading.list_auctions(list()).await.unwrap();
    server.stop().await;
}

/// One bidder floods PlaceBid: it is refused with RESOURCE_EXHAUSTED and a retry-after, and
/// another bidder's calls meanwhile go through at normal latency.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_bidder_is_limited_and_others_are_not_slowed() {
    let dir = tempfile::tempdir().unwrap();
    let mut principals = Principals::default();
    let op_token = principals.add(operator()).unwrap();
    let flood_token = principals.add(bidder("flood", 1)).unwrap();
    let calm_token = principals.add(bidder("calm", 2)).unwrap();
    principals.save(&dir.path().join("principals.json")).unwrap();
    let server = Server::start(dir, |c| {
        c.journal_sync = emission_auction::journal::SyncPolicy::Never;
    })
    .await;
    let addr = server.plain();
    let mut op = Terminal::connect(&addr, &op_token).await.unwrap();
    let auction = open_auction(&mut op, "SEC-FLOOD").await;

    // The flood: 8 connections, 2,000 bids as fast as they go.
    let flooders: Vec<_> = (0..8)
        .map(|w| {
            let (addr, token, auction) = (addr.clone(), flood_token.clone(), auction.clone());
            tokio::spawn(async move {
                let mut t = Terminal::connect(&addr, &token).await.unwrap();
                let (mut ok, mut limited, mut retry_after) = (0, 0, None);
                for i in 0..250 {
                    match t.trading.place_bid(place(&auction, &format!("flood-{w}-{i}"))).await {
                        Ok(_) => ok += 1,
                        Err(s) => {
                            assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}");
                            let (code, metadata) = reason(&s);
                            assert_eq!(code, "RATE_LIMITED");
                            retry_after = Some(metadata["retry_after_ms"].parse::<u64>().unwrap());
                            limited += 1;
                        }
                    }
                }
                (ok, limited, retry_after)
            })
        })
        .collect();

    // Meanwhile a calm bidder bids every 50 ms.
    let mut calm = Terminal::connect(&addr, &calm_token).await.unwrap();
    let mut worst = Duration::ZERO;
    for i in 0..20 {
        let started = Instant::now();
        calm.trading.place_bid(place(&auction, &format!("calm-{i}"))).await.unwrap();
        worst = worst.max(started.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (mut ok, mut limited) = (0, 0);
    for f in flooders {
        let (o, l, retry_after) = f.await.unwrap();
        ok += o;
        limited += l;
        if let Some(ms) = retry_after {
            assert!((1..=1000).contains(&ms), "retry after {ms} ms");
        }
    }
    assert_eq!(ok + limited, 2000);
    assert!(limited > 1000, "only {limited} of 2,000 flooded bids were refused");
    // The burst (40) plus the rate (20/s) over the flood's duration at most.
    assert!(ok >= 40, "{ok} flooded bids went through; the burst should have");
    assert!(worst < Duration::from_millis(500), "the calm bidder waited {worst:?} for one bid");
    server.stop().await;
}

/// Connections: one left idle is closed after the idle timeout, and past the connection cap a
/// new one is closed at once.
#[tokio::test]
async fn idle_connections_are_closed_and_connections_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    Principals::default().save(&dir.path().join("principals.json")).unwrap();
    let server = Server::start(dir, |c| {
        c.limits.idle_timeout = Duration::from_millis(300);
        c.limits.max_connections = 2;
    })
    .await;
    let started = Instant::now();
    let mut first = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let _second = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut third = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    // The third is over the cap: closed without a byte.
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(2), third.read(&mut buf)).await.expect("closed at once");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    // The first, idle, is closed after the idle timeout (the server's settings frame first).
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match first.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "an idle connection stayed open");
    assert!(started.elapsed() >= Duration::from_millis(250), "closed before the idle timeout");
    server.stop().await;
}

/// A message that does not decode is INVALID_ARGUMENT with MALFORMED_MESSAGE, whatever is wrong
/// with it; and the bearer scheme is case-insensitive.
#[tokio::test]
async fn malformed_protobuf_is_invalid_argument_and_bearer_is_case_insensitive() {
    let dir = tempfile::tempdir().unwrap();
    let mut principals = Principals::default();
    let token = principals.add(operator()).unwrap();
    principals.save(&dir.path().join("principals.json")).unwrap();
    let server = Server::start(dir, |_| {}).await;
    let channel = tonic::transport::Channel::from_shared(server.plain()).unwrap().connect().await.unwrap();
    let call = |bytes: Vec<u8>, authorization: String, path: &'static str| {
        let channel = channel.clone();
        async move {
            let mut grpc = tonic::client::Grpc::new(channel);
            grpc.ready().await.unwrap();
            let mut request = tonic::Request::new(bytes);
            request.metadata_mut().insert("authorization", authorization.parse().unwrap());
            grpc.unary(request, http::uri::PathAndQuery::from_static(path), raw::RawCodec).await
        }
    };
    const LIST: &str = "/emission_auction.v1.Trading/ListAuctions";
    const PLACE: &str = "/emission_auction.v1.Trading/PlaceBid";
    let bearer = format!("Bearer {token}");
    let cases: [(&str, Vec<u8>, &str); 4] = [
        // region_code (field 2, a string) holding invalid UTF-8.
        ("invalid UTF-8", vec![0x12, 0x02, 0xff, 0xfe], LIST),
        // pollutant (field 1, an enum) sent as a length-delimited field.
        ("wrong wire type", vec![0x0a, 0x01, 0x00], LIST),
        // region_code announces 5 bytes and has 1.
        ("truncated", vec![0x12, 0x05, b'1'], LIST),
        // request_id (field 1) cut off inside its length varint.
        ("truncated varint", vec![0x0a, 0x80], PLACE),
    ];
    for (what, bytes, path) in cases {
        let status = call(bytes, bearer.clone(), path).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
        assert_eq!(reason(&status).0, "MALFORMED_MESSAGE", "{what}");
    }
    // A well-formed (empty) request with the scheme in lower and upper case.
    for scheme in ["bearer", "BEARER", "Bearer"] {
        call(Vec::new(), format!("{scheme} {token}"), LIST).await.unwrap();
    }
    let status = call(Vec::new(), format!("Basic {token}"), LIST).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    server.stop().await;
}

/// A codec that sends and receives bytes as they are, to send what a generated client cannot.
mod raw {
    use prost::bytes::{Buf, BufMut};
    use tonic::Status;
    use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

    pub struct RawCodec;

    impl Codec for RawCodec {
        type Encode = Vec<u8>;
        type Decode = Vec<u8>;
        type Encoder = RawCodec;
        type Decoder = RawCodec;

        fn encoder(&mut self) -> RawCodec {
            RawCodec
        }

        fn decoder(&mut self) -> RawCodec {
            RawCodec
        }
    }

    impl Encoder for RawCodec {
        type Item = Vec<u8>;
        type Error = Status;

        fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
            dst.put_slice(&item);
            Ok(())
        }
    }

    impl Decoder for RawCodec {
        type Item = Vec<u8>;
        type Error = Status;

        fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
            Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
        }
    }
}
