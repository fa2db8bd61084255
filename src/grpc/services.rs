//! The three API services. Handlers are thin: authorize, convert and validate the request,
//! ask the [`Exchange`], convert the answer. No rule lives here.

use std::pin::Pin;
use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::auth::Role;
use crate::domain::{AuctionId, CreditCode, Reason};
use crate::engine::Command;
use crate::proto as pb;
use crate::service::feed::{AuctionUpdate, UpdateKind, Watch};
use crate::service::registry::RegistryChange;
use crate::service::{AuctionFilter, Exchange, Fingerprint, Origin, RecordedSettlement};

use super::auth::{admit_change, bidder, require};
use super::convert::{self, FieldError};
use super::status::status;

const ANY_ROLE: &[Role] = &[Role::Operator, Role::Bidder, Role::Auditor, Role::Observer];

pub struct OperatorService {
    pub exchange: Arc<Exchange>,
}

pub struct TradingService {
    pub exchange: Arc<Exchange>,
    /// Becomes true when the server begins to stop; auction watches then end.
    pub stopping: tokio::sync::watch::Receiver<bool>,
}

pub struct ResultsService {
    pub exchange: Arc<Exchange>,
    /// Becomes true when the server begins to stop; live subscriptions then end, so that
    /// graceful shutdown is not held open by subscribers.
    pub stopping: tokio::sync::watch::Receiver<bool>,
}

type Reply<T> = Result<Response<T>, Status>;

/// A request that changes something, and so carries a client request id.
pub trait Change: prost::Message + Clone {
    fn request_id(&self) -> &str;
    fn clear_request_id(&mut self);
}

macro_rules! change {
    ($($message:ty),*) => {$(
        impl Change for $message {
            fn request_id(&self) -> &str {
                &self.request_id
            }
            fn clear_request_id(&mut self) {
                self.request_id.clear();
            }
        }
    )*};
}

change!(
    pb::CreateAuctionRequest,
    pb::AuctionRef,
    pb::CancelAuctionRequest,
    pb::PlaceBidRequest,
    pb::ReviseBidRequest,
    pb::WithdrawBidRequest,
    pb::EnterpriseRequest,
    pb::SetEnterpriseStatusRequest,
    pb::RecordDepositRequest
);

/// Who sent a change (from authentication) under which request id, and a fingerprint of
/// everything else in it: the method and the message with its request id cleared.
fn origin<T: Change>(request: &Request<T>, method: &str) -> Result<Origin, Status> {
    let caller = admit_change(request, ANY_ROLE)?;
    origin_of(&caller.id.to_string(), request.get_ref(), method)
}

/// [`origin`] for one message of a stream, from its already admitted principal's stable id.
fn origin_of<T: Change>(principal: &str, message: &T, method: &str) -> Result<Origin, Status> {
    convert::request_id(message.request_id())?;
    let mut payload = message.clone();
    payload.clear_request_id();
    Ok(Origin {
        principal: principal.to_owned(),
        request_id: message.request_id().to_owned(),
        fingerprint: Fingerprint::of(method, &payload.encode_to_vec()),
    })
}

fn auction(exchange: &Exchange, id: AuctionId) -> Reply<pb::Auction> {
    Ok(Response::new(convert::pb_auction(&exchange.get(id)?)))
}

impl OperatorService {
    async fn operate(&self, request: Request<pb::AuctionRef>, method: &str, command: Command) -> Reply<pb::Auction> {
        require(&request, &[Role::Operator])?;
        let origin = origin(&request, method)?;
        let id = convert::auction_id(&request.get_ref().auction_id)?;
        let snapshot = self.exchange.operate(id, command, origin).await?;
        Ok(Response::new(convert::pb_auction(&snapshot)))
    }
}

#[tonic::async_trait]
impl pb::auction_operator_server::AuctionOperator for OperatorService {
    async fn create_auction(&self, request: Request<pb::CreateAuctionRequest>) -> Reply<pb::Auction> {
        require(&request, &[Role::Operator])?;
        let origin = origin(&request, "CreateAuction")?;
        let spec = convert::auction_request(request.get_ref())?;
        let snapshot = self.exchange.create_auction(spec, origin).await?;
        Ok(Response::new(convert::pb_auction(&snapshot)))
    }

    async fn open_auction(&self, request: Request<pb::AuctionRef>) -> Reply<pb::Auction> {
        self.operate(request, "OpenAuction", Command::Open).await
    }

    async fn advance_round(&self, request: Request<pb::AuctionRef>) -> Reply<pb::Auction> {
        self.operate(request, "AdvanceRound", Command::AdvanceRound).await
    }

    async fn close_auction(&self, request: Request<pb::AuctionRef>) -> Reply<pb::Auction> {
        self.operate(request, "CloseAuction", Command::Close).await
    }

    async fn cancel_auction(&self, request: Request<pb::CancelAuctionRequest>) -> Reply<pb::Auction> {
        require(&request, &[Role::Operator])?;
        let origin = origin(&request, "CancelAuction")?;
        let req = request.get_ref();
        let id = convert::auction_id(&req.auction_id)?;
        if req.reason.len() > 1000 {
            return Err(FieldError::new("reason", "must be at most 1000 bytes").into());
        }
        let note = (!req.reason.is_empty()).then(|| req.reason.clone());
        let snapshot = self.exchange.operate(id, Command::Cancel { note }, origin).await?;
        Ok(Response::new(convert::pb_auction(&snapshot)))
    }

    async fn get_auction(&self, request: Request<pb::GetAuctionRequest>) -> Reply<pb::Auction> {
        require(&request, &[Role::Operator, Role::Auditor])?;
        auction(&self.exchange, convert::auction_id(&request.get_ref().auction_id)?)
    }

    async fn get_status(&self, request: Request<pb::GetStatusRequest>) -> Reply<pb::ServerStatus> {
        require(&request, &[Role::Operator, Role::Auditor])?;
        let reason = self.exchange.health().borrow().clone();
        let recorders = self
            .exchange
            .recorders()
            .into_iter()
            .map(|r| pb::RecorderState {
                name: r.name,
                required: r.required,
                cursor: r.cursor.unwrap_or(0),
                answered: r.cursor.is_some(),
                lag: r.lag,
                last_error: r.last_error.unwrap_or_default(),
            })
            .collect();
        Ok(Response::new(pb::ServerStatus {
            serving: reason.is_none(),
            not_serving_reason: reason.unwrap_or_default(),
            last_settlement: self.exchange.last_settlement(),
            recorders,
        }))
    }

    async fn add_enterprise(&self, request: Request<pb::EnterpriseRequest>) -> Reply<pb::Enterprise> {
        require(&request, &[Role::Operator])?;
        let origin = origin(&request, "AddEnterprise")?;
        let record = convert::enterprise(request.get_ref().enterprise.as_ref())?;
        let record = self.exchange.change_registry(RegistryChange::Add(record), origin).await?;
        Ok(Response::new(convert::pb_enterprise(&record)))
    }

    async fn update_enterprise(&self, request: Request<pb::EnterpriseRequest>) -> Reply<pb::Enterprise> {
        require(&request, &[Role::Operator])?;
        let origin = origin(&request, "UpdateEnterprise")?;
        let record = convert::enterprise(request.get_ref().enterprise.as_ref())?;
        let record = self.exchange.change_registry(RegistryChange::Update(record), origin).await?;
        Ok(Response::new(convert::pb_enterprise(&record)))
    }

    async fn suspend_enterprise(&self, request: Request<pb::SetEnterpriseStatusRequest>) -> Reply<pb::Enterprise> {
        require(&request, &[Role::Operator])?;
        let origin = origin(&request, "SuspendEnterprise")?;
        let req = request.get_ref();
        let code = req.credit_code.parse::<CreditCode>().map_err(|e| FieldError::new("credit_code", e))?;
        let status = convert::enterprise_status("status", req.status, &req.reason)?
            .ok_or_else(|| FieldError::new("status", "is required"))?;
        let record = self.exchange.change_registry(RegistryChange::SetStatus { code, status }, origin).await?;
        Ok(Response::new(convert::pb_enterprise(&record)))
    }

    async fn list_enterprises(
        &self,
        request: Request<pb::ListEnterprisesRequest>,
    ) -> Reply<pb::ListEnterprisesResponse> {
        require(&request, &[Role::Operator, Role::Auditor])?;
        let enterprises = self.exchange.enterprises()?.iter().map(convert::pb_enterprise).collect();
        Ok(Response::new(pb::ListEnterprisesResponse { enterprises }))
    }

    async fn record_deposit(&self, request: Request<pb::RecordDepositRequest>) -> Reply<pb::Deposit> {
        require(&request, &[Role::Operator])?;
        let origin = origin(&request, "RecordDeposit")?;
        let req = request.get_ref();
        let id = convert::auction_id(&req.auction_id)?;
        let enterprise = req.enterprise.parse::<CreditCode>().map_err(|e| FieldError::new("enterprise", e))?;
        let amount = convert::amount("amount", &req.amount)?;
        let (deposit, required) = self.exchange.record_deposit(id, enterprise, amount, origin).await?;
        Ok(Response::new(pb::Deposit {
            auction_id: id.to_string(),
            enterprise: enterprise.to_string(),
            deposit: deposit.to_string(),
            required: required.map(|r| r.to_string()).unwrap_or_default(),
        }))
    }

    async fn list_bids(&self, request: Request<pb::ListBidsRequest>) -> Reply<pb::ListBidsResponse> {
        require(&request, &[Role::Operator, Role::Auditor])?;
        let id = convert::auction_id(&request.get_ref().auction_id)?;
        let bids = self.exchange.all_bids(id).await?;
        Ok(Response::new(pb::ListBidsResponse { bids: bids.iter().map(|b| convert::pb_bid(id, b)).collect() }))
    }
}

#[tonic::async_trait]
impl pb::trading_server::Trading for TradingService {
    async fn check_eligibility(
        &self,
        request: Request<pb::CheckEligibilityRequest>,
    ) -> Reply<pb::CheckEligibilityResponse> {
        let bidder = bidder(&request)?;
        let id = convert::auction_id(&request.get_ref().auction_id)?;
        let reasons: Vec<pb::BidRefusal> = self
            .exchange
            .check_eligibility(id, bidder)?
            .into_iter()
            .map(|e| refusal(&Status::from(crate::service::ServiceError::Engine(e))))
            .collect();
        Ok(Response::new(pb::CheckEligibilityResponse { eligible: reasons.is_empty(), reasons }))
    }

    async fn list_auctions(&self, request: Request<pb::ListAuctionsRequest>) -> Reply<pb::ListAuctionsResponse> {
        require(&request, ANY_ROLE)?;
        let req = request.get_ref();
        let filter = AuctionFilter {
            pollutant: convert::pollutant("pollutant", req.pollutant)?,
            region: if req.region_code.is_empty() {
                None
            } else {
                Some(convert::region("region_code", &req.region_code)?)
            },
            phase: convert::phase("phase", req.phase)?,
        };
        let auctions = self.exchange.list(&filter)?.iter().map(convert::pb_auction).collect();
        Ok(Response::new(pb::ListAuctionsResponse { auctions }))
    }

    async fn get_auction(&self, request: Request<pb::GetAuctionRequest>) -> Reply<pb::Auction> {
        require(&request, ANY_ROLE)?;
        auction(&self.exchange, convert::auction_id(&request.get_ref().auction_id)?)
    }

    async fn place_bid(&self, request: Request<pb::PlaceBidRequest>) -> Reply<pb::BidReceipt> {
        let bidder = bidder(&request)?;
        let origin = origin(&request, "PlaceBid")?;
        let req = request.get_ref();
        let id = convert::auction_id(&req.auction_id)?;
        let price = convert::bid_price("price", &req.price)?;
        let quantity = convert::bid_quantity("quantity", &req.quantity)?;
        let receipt = self.exchange.place_bid(id, bidder, price, quantity, origin).await?;
        Ok(Response::new(convert::pb_receipt(id, &receipt, self.exchange.receipt_signer())))
    }

    async fn revise_bid(&self, request: Request<pb::ReviseBidRequest>) -> Reply<pb::BidReceipt> {
        let bidder = bidder(&request)?;
        let origin = origin(&request, "ReviseBid")?;
        let req = request.get_ref();
        let id = convert::auction_id(&req.auction_id)?;
        let bid_id = convert::bid_id(&req.bid_id)?;
        let price = convert::bid_price("price", &req.price)?;
        let quantity = convert::bid_quantity("quantity", &req.quantity)?;
        let receipt = self.exchange.revise_bid(id, bidder, bid_id, price, quantity, origin).await?;
        Ok(Response::new(convert::pb_receipt(id, &receipt, self.exchange.receipt_signer())))
    }

    async fn withdraw_bid(&self, request: Request<pb::WithdrawBidRequest>) -> Reply<pb::BidReceipt> {
        let bidder = bidder(&request)?;
        let origin = origin(&request, "WithdrawBid")?;
        let req = request.get_ref();
        let id = convert::auction_id(&req.auction_id)?;
        let bid_id = convert::bid_id(&req.bid_id)?;
        let receipt = self.exchange.withdraw_bid(id, bidder, bid_id, origin).await?;
        Ok(Response::new(convert::pb_receipt(id, &receipt, self.exchange.receipt_signer())))
    }

    type PlaceBidsStream = Stream<pb::PlaceBidsReply>;

    async fn place_bids(
        &self,
        request: Request<tonic::Streaming<pb::PlaceBidRequest>>,
    ) -> Reply<Self::PlaceBidsStream> {
        let bidder = bidder(&request)?;
        // A stream is admitted once by the rate limit, as one changing call: it is the way
        // for gateways to send many bids.
        let principal = admit_change(&request, ANY_ROLE)?.id.to_string();
        let exchange = Arc::clone(&self.exchange);
        let mut incoming = request.into_inner();
        // The reader hands each bid to its auction in the order received and passes the
        // pending receipt on; the writer sends receipts in that same order as each becomes
        // durable. The bounded channel between them is the stream's window of bids in flight.
        let (submitted, mut pending) = tokio::sync::mpsc::channel::<(String, Pending<pb::BidReceipt>)>(STREAM_WINDOW);
        tokio::spawn(async move {
            while let Ok(Some(message)) = incoming.message().await {
                let request_id = message.request_id.clone();
                let receipt = submit_bid(&exchange, &principal, bidder, &message);
                if submitted.send((request_id, receipt)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(async_stream(move |tx| async move {
            while let Some((request_id, receipt)) = pending.recv().await {
                let result = match receipt.await {
                    Ok(receipt) => pb::place_bids_reply::Result::Receipt(receipt),
                    Err(status) => pb::place_bids_reply::Result::Refusal(refusal(&status)),
                };
                if tx.send(Ok(pb::PlaceBidsReply { request_id, result: Some(result) })).await.is_err() {
                    return;
                }
            }
        })))
    }

    type WatchAuctionStream = Stream<pb::AuctionEvent>;

    async fn watch_auction(&self, request: Request<pb::WatchAuctionRequest>) -> Reply<Stream<pb::AuctionEvent>> {
        require(&request, ANY_ROLE)?;
        let req = request.get_ref();
        let id = convert::auction_id(&req.auction_id)?;
        let Watch { backlog, live } = self.exchange.watch(id, req.after_sequence)?;
        let ends = Relay {
            next: req.after_sequence.saturating_add(1),
            sequence: |u: &AuctionUpdate| u.sequence,
            // The conclusion ends a watch; so does a state that shows the auction over.
            last: |u: &AuctionUpdate| u.kind == UpdateKind::Concluded || u.phase.is_terminal(),
            ended: |reason, why, next| resume_after(reason, why, next.saturating_sub(1)),
            too_slow: (Reason::WatcherTooSlow, "fell behind the auction's updates"),
        };
        let stream = relay(backlog, live, self.stopping.clone(), ends, move |u| convert::pb_auction_event(id, u));
        Ok(Response::new(stream))
    }

    async fn get_inclusion_proof(&self, request: Request<pb::GetInclusionProofRequest>) -> Reply<pb::InclusionProof> {
        let bidder = bidder(&request)?;
        let req = request.get_ref();
        let id = convert::auction_id(&req.auction_id)?;
        let bid = convert::bid_id(&req.bid_id)?;
        let (receipt, index, leaves) = self.exchange.inclusion(id, bidder, bid).await?;
        let path = crate::domain::receipt::merkle_proof(&leaves, index).unwrap_or_default();
        Ok(Response::new(pb::InclusionProof {
            receipt: Some(convert::pb_receipt(id, &receipt, self.exchange.receipt_signer())),
            path: path
                .into_iter()
                .map(|step| pb::ProofStep { sibling: hex::decode(step.sibling).unwrap_or_default(), left: step.left })
                .collect(),
            root: crate::domain::receipt::merkle_root(&leaves).to_vec(),
            leaf_index: index as u64,
            leaf_count: leaves.len() as u64,
        }))
    }

    async fn list_my_bids(&self, request: Request<pb::ListMyBidsRequest>) -> Reply<pb::ListMyBidsResponse> {
        let bidder = bidder(&request)?;
        let id = convert::auction_id(&request.get_ref().auction_id)?;
        let bids = self.exchange.bids_of(id, bidder).await?;
        Ok(Response::new(pb::ListMyBidsResponse { bids: bids.iter().map(|b| convert::pb_bid(id, b)).collect() }))
    }
}

/// How many bids one PlaceBids stream may have in flight (read, not yet acknowledged).
const STREAM_WINDOW: usize = 512;

/// A reply on its way.
type Pending<T> = Pin<Box<dyn std::future::Future<Output = Result<T, Status>> + Send>>;

/// Hands one bid of a stream to its auction now; the future resolves to its receipt.
fn submit_bid(
    exchange: &Exchange,
    principal: &str,
    bidder: crate::domain::BidderId,
    message: &pb::PlaceBidRequest,
) -> Pending<pb::BidReceipt> {
    let parsed = (|| {
        let origin = origin_of(principal, message, "PlaceBid")?;
        let id = convert::auction_id(&message.auction_id)?;
        let price = convert::bid_price("price", &message.price)?;
        let quantity = convert::bid_quantity("quantity", &message.quantity)?;
        Ok::<_, Status>((origin, id, price, quantity))
    })();
    match parsed {
        Ok((origin, id, price, quantity)) => {
            let receipt = exchange.submit_bid(id, bidder, price, quantity, origin);
            let signer = exchange.receipt_signer().clone();
            Box::pin(async move { Ok(convert::pb_receipt(id, &receipt.await?, &signer)) })
        }
        Err(status) => Box::pin(std::future::ready(Err(status))),
    }
}

/// A refused bid of a stream: what a unary PlaceBid would have answered.
fn refusal(status: &Status) -> pb::BidRefusal {
    use tonic_types::StatusExt;
    let info = status.get_details_error_info();
    let field = status
        .get_details_bad_request()
        .and_then(|bad| bad.field_violations.first().map(|v| v.field.clone()))
        .unwrap_or_default();
    pb::BidRefusal {
        code: super::status::code_name(status.code()).to_owned(),
        reason: info.as_ref().map(|i| i.reason.clone()).unwrap_or_default(),
        message: status.message().to_owned(),
        metadata: info.map(|i| i.metadata.into_iter().collect()).unwrap_or_default(),
        field,
    }
}

/// A server stream of `T`.
type Stream<T> = Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send>>;
type SettlementStream = Stream<pb::Settlement>;

#[tonic::async_trait]
impl pb::results_server::Results for ResultsService {
    async fn get_settlement(&self, request: Request<pb::GetSettlementRequest>) -> Reply<pb::Settlement> {
        require(&request, ANY_ROLE)?;
        let id = convert::auction_id(&request.get_ref().auction_id)?;
        let recorded = self.exchange.settlement(id).await?;
        Ok(Response::new(convert::pb_settlement(&recorded)))
    }

    async fn get_server_key(&self, request: Request<pb::GetServerKeyRequest>) -> Reply<pb::ServerKey> {
        require(&request, ANY_ROLE)?;
        let key = self.exchange.receipt_signer().public_key();
        Ok(Response::new(pb::ServerKey { public_key: key.to_vec(), algorithm: "ed25519".into() }))
    }

    type SubscribeSettlementsStream = SettlementStream;

    async fn subscribe_settlements(
        &self,
        request: Request<pb::SubscribeSettlementsRequest>,
    ) -> Reply<SettlementStream> {
        require(&request, ANY_ROLE)?;
        let from = request.get_ref().from_sequence.max(1);
        let (backlog, live) = self.exchange.hub().subscribe(from);
        let ends = Relay {
            next: from,
            sequence: |r: &RecordedSettlement| r.sequence,
            last: |_| false,
            ended: resume_from,
            too_slow: (Reason::SubscriberTooSlow, "fell behind the settlement stream"),
        };
        Ok(Response::new(relay(backlog, live, self.stopping.clone(), ends, convert::pb_settlement)))
    }
}

/// How a relayed stream orders its items, when it ends, and how it tells a client where to
/// pick it up.
struct Relay<T> {
    /// The first sequence number the client has not seen.
    next: u64,
    sequence: fn(&T) -> u64,
    /// Whether an item ends the stream (after it is sent).
    last: fn(&T) -> bool,
    /// The status that ends the stream early: reason, why, and the next sequence.
    ended: fn(Reason, &str, u64) -> Status,
    /// Reason and words for a client that fell behind.
    too_slow: (Reason, &'static str),
}

/// Sends `backlog`, then live items in sequence order (skipping what the backlog had), until
/// the client hangs up, an item is the last, the server stops (UNAVAILABLE) or the client falls
/// behind the bounded broadcast (RESOURCE_EXHAUSTED); the last two say where to resume.
fn relay<T, P>(
    backlog: Vec<Arc<T>>,
    mut live: tokio::sync::broadcast::Receiver<Arc<T>>,
    mut stopping: tokio::sync::watch::Receiver<bool>,
    ends: Relay<T>,
    to_pb: impl Fn(&T) -> P + Send + 'static,
) -> Stream<P>
where
    T: Send + Sync + 'static,
    P: Send + 'static,
{
    async_stream(move |tx| async move {
        let Relay { mut next, sequence, last, ended, too_slow } = ends;
        let _watching = crate::metrics::Watching::relay(too_slow.0);
        for item in backlog {
            next = sequence(&item).saturating_add(1);
            if tx.send(Ok(to_pb(&item))).await.is_err() || last(&item) {
                return;
            }
        }
        loop {
            let received = tokio::select! {
                received = live.recv() => received,
                () = tx.closed() => return,
                () = async { let _ = stopping.wait_for(|stop| *stop).await; } => {
                    let _ = tx.send(Err(ended(Reason::ShuttingDown, "the server is stopping", next))).await;
                    return;
                }
            };
            match received {
                // Already sent from the backlog.
                Ok(item) if sequence(&item) < next => continue,
                Ok(item) => {
                    next = sequence(&item).saturating_add(1);
                    if tx.send(Ok(to_pb(&item))).await.is_err() || last(&item) {
                        return;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    let (reason, why) = too_slow;
                    let _ = tx.send(Err(ended(reason, why, next))).await;
                    return;
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    })
}

/// Ends a settlement stream, telling the client where to pick it up again.
fn resume_from(reason: Reason, why: &str, next: u64) -> Status {
    status(reason, format!("{why}; resubscribe from sequence {next}"), vec![("resume_from", next.to_string())], None)
}

/// Ends an auction watch, telling the client which sequence to watch after.
fn resume_after(reason: Reason, why: &str, last: u64) -> Status {
    status(
        reason,
        format!("{why}; watch again with after_sequence {last}"),
        vec![("after_sequence", last.to_string())],
        None,
    )
}

/// A stream fed by a task through a small bounded channel; the task stops when the client
/// goes away.
fn async_stream<T: Send + 'static, F, Fut>(body: F) -> Stream<T>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<T, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(body(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}
