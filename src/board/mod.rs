//! The public results board (交易结果实时发布), served by the same process on its own HTTP port:
//! the auctions now running with live countdowns, results as they are published, the
//! statistics report, and Prometheus metrics.
//!
//! - `GET /`: the board. Server-rendered, so it reads without JavaScript; a small script
//!   follows `/events` and ticks the countdowns.
//! - `GET /events`: server-sent events. `hello` (the server's time, for the countdowns),
//!   `auctions` (the running auctions, as HTML, whenever they change) and `settlement` (one
//!   published result, as HTML). The browser never polls.
//! - `GET /report` (`?from=YYYY-MM-DD&to=YYYY-MM-DD`): the statistics report ([`report`]).
//! - `GET /settlements/{id}`: one published settlement as JSON, with the journal record and
//!   chain hash it was derived from.
//! - `GET /api/auctions`: the running auctions as JSON.
//! - `GET /metrics`: [`crate::metrics`], in the Prometheus text format.
//!
//! One task (the publisher) follows the settlement hub and, every 500 ms, diffs the exchange's
//! list of auctions; it renders each change once and broadcasts it to every event stream, so a
//! board with hundreds of viewers costs the exchange one subscriber and one list per tick.
//!
//! Invariant: the board reads only what anyone may see: auction snapshots (terms, phase, the
//! public views of open auctions) and published settlements. It never asks for bids before an
//! auction has concluded, and it changes nothing.

mod page;
pub mod report;
mod svg;
pub mod view;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, watch};
use tokio_stream::wrappers::ReceiverStream;

use crate::domain::AuctionId;
use crate::service::clock::{Clock, SystemClock};
use crate::service::{AuctionFilter, AuctionSnapshot, Exchange, RecordedSettlement};

/// How often the publisher looks for new auctions and changed public state.
const TICK: Duration = Duration::from_millis(500);
/// How many recent results the board shows and replays to a new event stream.
const RECENT: usize = 20;
/// How many events a slow viewer may lag before it is sent the whole state again.
const VIEWER_BUFFER: usize = 64;

/// One event for every viewer, rendered once.
#[derive(Debug, Clone)]
struct BoardEvent {
    kind: &'static str,
    data: Arc<str>,
}

/// What a new viewer needs: the running auctions and the recent results, rendered.
#[derive(Default)]
struct Current {
    auctions: Arc<str>,
    /// Newest last.
    results: VecDeque<Arc<str>>,
}

struct Board {
    exchange: Arc<Exchange>,
    /// A `std` mutex: held only to clone or replace a few `Arc`s, never across an await.
    current: Mutex<Current>,
    events: broadcast::Sender<BoardEvent>,
    stopping: watch::Receiver<bool>,
}

/// Serves the board on `listener` until `shutdown` resolves; event streams end then, so the
/// graceful shutdown is not held open by viewers.
pub async fn serve(
    listener: TcpListener,
    exchange: Arc<Exchange>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop, stopping) = watch::channel(false);
    let board = Arc::new(Board {
        exchange,
        current: Mutex::new(Current::default()),
        events: broadcast::channel(VIEWER_BUFFER).0,
        stopping,
    });
    // The first state is in place before the first page is served.
    let hub_feed = board.exchange.hub().subscribe(1);
    board.start(hub_feed.0).await;
    let publisher = tokio::spawn(Arc::clone(&board).publish(hub_feed.1));
    let router = Router::new()
        .route("/", get(index))
        .route("/events", get(events))
        .route("/report", get(live_report))
        .route("/settlements/{id}", get(settlement_json))
        .route("/api/auctions", get(auctions_json))
        .route("/metrics", get(metrics))
        .route("/assets/board.css", get(|| asset(page::CSS, "text/css; charset=utf-8")))
        .route("/assets/board.js", get(|| asset(page::JS, "text/javascript; charset=utf-8")))
        .with_state(Arc::clone(&board));
    tracing::info!(addr = ?listener.local_addr().ok(), "serving the results board");
    let served = axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = stop.send(true);
        })
        .await;
    publisher.abort();
    served
}

impl Board {
    fn running(&self) -> Vec<AuctionSnapshot> {
        let mut list = self.exchange.list(&AuctionFilter::default()).unwrap_or_default();
        list.retain(|s| !s.phase.is_terminal());
        list
    }

    async fn start(&self, history: Vec<Arc<RecordedSettlement>>) {
        let auctions: Arc<str> = page::running(&self.running()).into();
        let mut results = VecDeque::new();
        for recorded in history.iter().rev().take(RECENT).rev() {
            results.push_back(self.render_result(recorded).await.into());
        }
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Current { auctions, results };
    }

    /// A result card, with how many enterprises bid (public once the auction concluded).
    async fn render_result(&self, recorded: &RecordedSettlement) -> String {
        let id = recorded.settlement.auction_id;
        let snapshot = self.exchange.get(id).ok();
        let bidders = match &snapshot {
            Some(s) if s.phase.is_terminal() => self.exchange.all_bids(id).await.ok().map(|bids| {
                let mut who: Vec<_> = bids.iter().map(|b| b.bidder).collect();
                who.sort_unstable();
                who.dedup();
                who.len()
            }),
            _ => None,
        };
        page::result(recorded, snapshot.as_ref(), bidders)
    }

    /// The publisher: results as the hub publishes them, running auctions when they change.
    async fn publish(self: Arc<Self>, mut settlements: broadcast::Receiver<Arc<RecordedSettlement>>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                received = settlements.recv() => match received {
                    Ok(recorded) => self.published(&recorded).await,
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        // Fell behind the hub: take the recent history again.
                        let (history, live) = self.exchange.hub().subscribe(1);
                        settlements = live;
                        self.start(history).await;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = tick.tick() => self.refresh_auctions(),
            }
        }
    }

    async fn published(&self, recorded: &RecordedSettlement) {
        let s = &recorded.settlement;
        let lag = SystemClock.now().as_micros().saturating_sub(s.settled_at.as_micros()).max(0);
        crate::metrics::settlement_published(s.status, Duration::from_micros(lag as u64));
        let html: Arc<str> = self.render_result(recorded).await.into();
        {
            let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
            if current.results.len() == RECENT {
                current.results.pop_front();
            }
            current.results.push_back(Arc::clone(&html));
        }
        let _ = self.events.send(BoardEvent { kind: "settlement", data: html });
        // The concluded auction leaves the running list at once, not at the next tick.
        self.refresh_auctions();
    }

    fn refresh_auctions(&self) {
        let html = page::running(&self.running());
        let changed = {
            let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
            if *current.auctions == *html {
                None
            } else {
                current.auctions = html.into();
                Some(Arc::clone(&current.auctions))
            }
        };
        if let Some(data) = changed {
            // No viewers is fine.
            let _ = self.events.send(BoardEvent { kind: "auctions", data });
        }
    }

    /// The events a viewer starts with: the server's time, the running auctions, the recent
    /// results (the page dedupes results it already shows).
    fn state_events(&self) -> Vec<BoardEvent> {
        let current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let now = view::millis(SystemClock.now());
        let mut out = vec![
            BoardEvent { kind: "hello", data: format!("{{\"now\":{now}}}").into() },
            BoardEvent { kind: "auctions", data: Arc::clone(&current.auctions) },
        ];
        out.extend(current.results.iter().map(|r| BoardEvent { kind: "settlement", data: Arc::clone(r) }));
        out
    }
}

async fn index(State(board): State<Arc<Board>>) -> Html<String> {
    // The running list is rendered now (one in-process list), not taken from the last tick,
    // so an auction created a moment ago is on the page.
    let auctions = page::running(&board.running());
    let results: Vec<Arc<str>> = {
        let current = board.current.lock().unwrap_or_else(|p| p.into_inner());
        current.results.iter().rev().cloned().collect()
    };
    Html(page::board(&auctions, &results, SystemClock.now()))
}

fn sse_event(e: &BoardEvent) -> Result<Event, Infallible> {
    Ok(Event::default().event(e.kind).data(&*e.data))
}

async fn events(State(board): State<Arc<Board>>) -> impl IntoResponse {
    // Subscribe before taking the state, so nothing falls between the two.
    let mut live = board.events.subscribe();
    let start = board.state_events();
    let mut stopping = board.stopping.clone();
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        let _watching = crate::metrics::Watching::new("board");
        for e in &start {
            if tx.send(sse_event(e)).await.is_err() {
                return;
            }
        }
        loop {
            let received = tokio::select! {
                received = live.recv() => received,
                () = tx.closed() => return,
                _ = stopping.wait_for(|stop| *stop) => return,
            };
            let batch = match received {
                Ok(e) => vec![e],
                // A slow viewer gets the whole state again instead of what it missed.
                Err(broadcast::error::RecvError::Lagged(_)) => board.state_events(),
                Err(broadcast::error::RecvError::Closed) => return,
            };
            for e in &batch {
                if tx.send(sse_event(e)).await.is_err() {
                    return;
                }
            }
        }
    });
    Sse::new(ReceiverStream::new(rx)).keep_alive(KeepAlive::default())
}

#[derive(Debug, serde::Deserialize)]
struct Period {
    from: Option<String>,
    to: Option<String>,
}

async fn live_report(State(board): State<Arc<Board>>, Query(period): Query<Period>) -> Response {
    let period = match report::Period::parse(period.from.as_deref(), period.to.as_deref()) {
        Ok(p) => p,
        Err(e) => return (StatusCode::BAD_REQUEST, e).into_response(),
    };
    let data = report::ReportData::from_exchange(&board.exchange).await;
    Html(report::render(&data, &period, SystemClock.now())).into_response()
}

async fn settlement_json(State(board): State<Arc<Board>>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.trim_end_matches(".json").parse::<AuctionId>() else {
        return (StatusCode::NOT_FOUND, "no such auction").into_response();
    };
    match board.exchange.hub().get(id) {
        Some(recorded) => {
            let snapshot = board.exchange.get(id).ok();
            json(&view::settlement(&recorded, snapshot.as_ref(), None))
        }
        None => (StatusCode::NOT_FOUND, "no published settlement for this auction").into_response(),
    }
}

async fn auctions_json(State(board): State<Arc<Board>>) -> Response {
    let list: Vec<_> = board.running().iter().map(view::auction).collect();
    json(&serde_json::json!({ "now": view::millis(SystemClock.now()), "auctions": list }))
}

fn json(value: &serde_json::Value) -> Response {
    let mut response = value.to_string().into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

async fn metrics(State(board): State<Arc<Board>>) -> Response {
    let mut response = crate::metrics::render(&board.exchange).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(crate::metrics::CONTENT_TYPE));
    response
}

async fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
