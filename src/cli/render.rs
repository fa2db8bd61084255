//! Plain-text views of auctions, bids, settlements, live auction updates and errors for people
//! at a terminal, and the one way commands write to standard output ([`out!`]).
//!
//! Standard output is often a pipe whose reader may go away (`... | head -1`). Nothing here
//! panics then: a write to a closed pipe is [`OutputError::Closed`], which the command
//! passes up with `?` and `main` treats as a normal, quiet end (exit status 0). This module
//! never writes to standard error; errors are the caller's to report.

use std::fmt::Write as _;
use std::io::{self, Write as _};

use tonic_types::StatusExt;

use crate::proto as pb;

/// Protobuf enums by their short proto names (SEALED_UNIFORM_PRICE, not
/// AUCTION_FORMAT_SEALED_UNIFORM_PRICE).
pub trait ProtoName: TryFrom<i32> {
    const PREFIX: &'static str;
    fn proto_name(&self) -> &'static str;
}

macro_rules! proto_name {
    ($($t:ty => $prefix:literal),* $(,)?) => {$(
        impl ProtoName for $t {
            const PREFIX: &'static str = $prefix;
            fn proto_name(&self) -> &'static str {
                self.as_str_name()
            }
        }
    )*};
}

proto_name!(
    pb::AuctionPhase => "AUCTION_PHASE_",
    pb::EnterpriseStatus => "ENTERPRISE_STATUS_",
    pb::AuctionFormat => "AUCTION_FORMAT_",
    pb::Pollutant => "POLLUTANT_",
    pb::LotOrigin => "LOT_ORIGIN_",
    pb::TieRule => "TIE_RULE_",
    pb::Undersubscription => "UNDERSUBSCRIPTION_",
    pb::BidRevision => "BID_REVISION_",
    pb::BidState => "BID_STATE_",
    pb::SettlementStatus => "SETTLEMENT_STATUS_",
    pb::AuctionEventKind => "AUCTION_EVENT_KIND_",
);

/// Why a command could not write its output.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The reader closed the pipe: nothing more is wanted, so the command ends quietly and
    /// successfully.
    #[error("standard output was closed")]
    Closed,
    #[error("cannot write to standard output: {0}")]
    Failed(#[source] io::Error),
}

impl OutputError {
    fn from_io(e: io::Error) -> OutputError {
        if e.kind() == io::ErrorKind::BrokenPipe { OutputError::Closed } else { OutputError::Failed(e) }
    }
}

/// Writes one line to standard output (what `out!` expands to). Standard output is line
/// buffered, so the line is flushed, and a closed pipe is noticed, here.
pub fn write_line(args: std::fmt::Arguments<'_>) -> Result<(), OutputError> {
    let mut stdout = io::stdout().lock();
    stdout.write_fmt(args).and_then(|()| stdout.write_all(b"\n")).map_err(OutputError::from_io)
}

/// Writes `bytes` to standard output as they are and flushes them.
pub fn write_raw(bytes: &[u8]) -> Result<(), OutputError> {
    let mut stdout = io::stdout().lock();
    stdout.write_all(bytes).and_then(|()| stdout.flush()).map_err(OutputError::from_io)
}

/// Whether `e`, or an error it was caused by, is a closed standard output: the command's
/// reader has all it wanted, so the process should exit successfully without a word.
pub fn stdout_closed(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(e) = next {
        if matches!(e.downcast_ref::<OutputError>(), Some(OutputError::Closed)) {
            return true;
        }
        next = e.source();
    }
    false
}

/// Resolves once the reader of standard output has gone, so that a command waiting on a stream
/// (`auction watch ... | head -1`) can end as soon as `head` has its line instead of at its
/// next write, which may be hours away. Where that cannot be told (standard output is a file,
/// or not on Unix) it never resolves, and the next write notices instead.
pub async fn stdout_gone() {
    #[cfg(unix)]
    {
        use std::os::fd::{AsRawFd, RawFd};
        use tokio::io::Interest;
        use tokio::io::unix::AsyncFd;

        /// Descriptor 1, borrowed: dropping this does not close it.
        struct Stdout;
        impl AsRawFd for Stdout {
            fn as_raw_fd(&self) -> RawFd {
                1
            }
        }
        // A pipe's write end reports an error once its read end is closed. epoll refuses
        // regular files; they have no reader to lose.
        // SAFETY: descriptor 1 stays open, on the same file description, for as long as the
        // process runs: nothing in it closes or replaces its standard output.
        if let Ok(fd) = unsafe { AsyncFd::register_with_interest(Stdout, Interest::ERROR) } {
            while let Ok(mut ready) = fd.ready(Interest::ERROR).await {
                if ready.ready().is_error() {
                    return;
                }
                ready.clear_ready();
            }
        }
    }
    std::future::pending().await
}

/// `println!` for command output: writes a line to standard output and evaluates to
/// `Result<(), OutputError>` instead of panicking when the reader has gone.
macro_rules! out {
    () => {
        $crate::cli::render::write_line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::cli::render::write_line(format_args!($($arg)*))
    };
}
pub(crate) use out;

pub fn name_of<E: ProtoName>(raw: i32) -> String {
    E::try_from(raw).map_or_else(|_| raw.to_string(), |e| e.proto_name().trim_start_matches(E::PREFIX).to_owned())
}

pub fn time(ts: &Option<prost_types::Timestamp>) -> String {
    ts.as_ref().map_or("-".into(), |t| {
        crate::domain::Timestamp::from_micros(t.seconds * 1_000_000 + i64::from(t.nanos / 1000)).to_string()
    })
}

pub fn auction(a: &pb::Auction) -> String {
    let lot = a.lot.clone().unwrap_or_default();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}  {}  {}  {}",
        a.auction_id,
        name_of::<pb::AuctionPhase>(a.phase),
        name_of::<pb::AuctionFormat>(a.format),
        name_of::<pb::Pollutant>(lot.pollutant)
    );
    let _ = writeln!(
        out,
        "  lot        {} {} t (fill unit {} t), {} from {}, region {}",
        lot.lot_id,
        lot.quantity,
        lot.fill_unit,
        name_of::<pb::LotOrigin>(lot.origin),
        lot.seller,
        lot.region_code
    );
    let cap = if a.cap_price.is_empty() { "none".into() } else { a.cap_price.clone() };
    let _ =
        writeln!(out, "  prices     benchmark {}  floor {}  cap {}  (yuan/t)", a.benchmark_price, a.floor_price, cap);
    if !a.price_factors.is_empty() {
        let _ = writeln!(out, "  derived    {}", a.price_derivation);
    }
    let _ = writeln!(out, "  window     {} .. {}", time(&a.opens_at), time(&a.closes_at));
    let _ = write!(
        out,
        "  rules      ties {}, undersubscription {}, bids {}",
        name_of::<pb::TieRule>(a.tie_rule),
        name_of::<pb::Undersubscription>(a.undersubscription),
        name_of::<pb::BidRevision>(a.bid_revision)
    );
    if !a.per_bidder_cap_percent.is_empty() {
        let _ = write!(out, ", per-bidder cap {}%", a.per_bidder_cap_percent);
    }
    if a.min_bidders > 1 {
        let _ = write!(out, ", at least {} bidders", a.min_bidders);
    }
    if let Some(d) = &a.deposit {
        let rule = if d.fixed_amount.is_empty() {
            format!("{}% x benchmark x lot quantity x {} years", d.percent, d.years)
        } else {
            "fixed".to_owned()
        };
        let _ = write!(out, "\n  deposit    {} yuan ({rule}); bids within the deposit", a.deposit_required);
    }
    if !a.seed_hash.is_empty() {
        let _ = write!(out, "\n  seed hash  {}", a.seed_hash);
    }
    if let Some(t) = &a.ascending {
        let _ = write!(
            out,
            "\n  ascending  start {}, increment {}, countdown {} s after the free period",
            t.start_price, t.increment, t.countdown_seconds
        );
        if let Some(stop) = &t.hard_stop {
            let _ = write!(out, ", hard stop {}", time(&Some(*stop)));
        }
        if let Some(max) = t.max_extensions {
            let _ = write!(out, ", at most {max} extensions");
        }
        if t.timed_min_bidders > 1 {
            let _ = write!(out, ", timed period with at least {} bidders", t.timed_min_bidders);
        }
    }
    if let Some(live) = &a.live {
        let _ = write!(out, "\n  bidding    {}", live_state(live, &time));
    }
    if let Some(c) = &a.clock {
        let silent = if c.silent_keeps_demand { "keeps its demand" } else { "drops to zero" };
        let _ = write!(
            out,
            "\n  clock      start {}, +{} a round, rounds of {} s; a silent bidder {silent}",
            c.start_price, c.increment, c.round_seconds
        );
    }
    if let Some(c) = &a.clock_state {
        let _ = write!(out, "\n  round      {}", clock_state(c));
    }
    out
}

fn clock_state(c: &pb::ClockState) -> String {
    let mut out = format!("{} at {} until {}", c.round, c.clock_price, time(&c.round_ends_at));
    if !c.last_round_demand.is_empty() {
        let _ = write!(out, "; last round's demand {} t", c.last_round_demand);
    }
    out
}

/// Where English bidding stands, with its deadline shown by `deadline`.
fn live_state(l: &pb::AscendingState, deadline: &dyn Fn(&Option<prost_types::Timestamp>) -> String) -> String {
    let price = if l.current_price.is_empty() {
        "no bid yet".to_owned()
    } else {
        format!("{} by {}", l.current_price, l.leader)
    };
    let next =
        if l.min_next_bid.is_empty() { "no further bid".to_owned() } else { format!("next >= {}", l.min_next_bid) };
    let period = if l.timed_period { "countdown ends" } else { "free period ends" };
    format!("{price}, {next}, {period} {}", deadline(&l.deadline))
}

fn micros(t: &prost_types::Timestamp) -> i64 {
    t.seconds * 1_000_000 + i64::from(t.nanos / 1000)
}

/// One line of `auction watch`: sequence, server time, kind and phase, then what the update
/// says: the English bidding (price, leader, next minimum, deadline and the time left from
/// this update to it), the clock round, or the conclusion.
pub fn auction_update(e: &pb::AuctionEvent) -> String {
    let left = |t: &Option<prost_types::Timestamp>| match (t, &e.at) {
        (Some(t), Some(at)) => format!("{} (in {:.1} s)", time(&Some(*t)), (micros(t) - micros(at)) as f64 / 1e6),
        _ => time(t),
    };
    let mut out = format!(
        "#{:<4} {}  {:<20} {:<9}",
        e.sequence,
        time(&e.at),
        name_of::<pb::AuctionEventKind>(e.kind),
        name_of::<pb::AuctionPhase>(e.phase)
    );
    if e.kind == pb::AuctionEventKind::Concluded as i32 {
        // The phase already says SETTLED, FAILED or CANCELLED; the status is shown only if
        // it says something else.
        let status = name_of::<pb::SettlementStatus>(e.settlement_status);
        if status != name_of::<pb::AuctionPhase>(e.phase) {
            let _ = write!(out, " {status}");
        }
        if !e.final_price.is_empty() {
            let _ = write!(out, " at {}", e.final_price);
        }
        if !e.winner.is_empty() {
            let _ = write!(out, ", winner {}", e.winner);
        }
    } else if let Some(c) = &e.clock {
        let _ = write!(out, " round {} at {} until {}", c.round, c.clock_price, left(&c.round_ends_at));
        if !c.last_round_demand.is_empty() {
            let _ = write!(out, "; last round's demand {} t", c.last_round_demand);
        }
    } else if let Some(l) = &e.live {
        let _ = write!(out, " {}", live_state(l, &left));
        if l.extensions > 0 {
            let _ = write!(out, ", extended {}x", l.extensions);
        }
        if l.bidders > 0 {
            let _ = write!(out, ", {} bidder{}", l.bidders, if l.bidders == 1 { "" } else { "s" });
        }
    }
    out.trim_end().to_owned()
}

/// One line of an auction's live feed; times as seconds since `start`.
pub fn auction_event(e: &pb::AuctionEvent, start: crate::domain::Timestamp) -> String {
    let since = |t: &Option<prost_types::Timestamp>| {
        t.as_ref()
            .map_or(0.0, |t| ((t.seconds * 1_000_000 + i64::from(t.nanos / 1000)) - start.as_micros()) as f64 / 1e6)
    };
    let mut out =
        format!("[{:>2}] +{:>5.2}s  {:<20}", e.sequence, since(&e.at), name_of::<pb::AuctionEventKind>(e.kind));
    if e.kind == pb::AuctionEventKind::Concluded as i32 {
        let _ = write!(out, " {}", name_of::<pb::SettlementStatus>(e.settlement_status));
        if !e.final_price.is_empty() {
            let _ = write!(out, " at {}", e.final_price);
        }
        if !e.winner.is_empty() {
            let _ = write!(out, ", winner {}", e.winner);
        }
    } else if let Some(c) = &e.clock {
        let _ = write!(out, " round {}", clock_state(c));
    } else if let Some(l) = &e.live {
        let _ = write!(out, " {}", live_state(l, &|d| format!("+{:.2}s", since(d))));
    }
    out
}

pub fn bids(bids: &[pb::Bid]) -> String {
    if bids.is_empty() {
        return "  (no bids)".into();
    }
    let mut out =
        format!("  {:<16}  {:<18}  {:>12}  {:>12}  {:<9}  placed at", "bid", "bidder", "price", "quantity", "state");
    for b in bids {
        let _ = write!(
            out,
            "\n  {:<16}  {:<18}  {:>12}  {:>12}  {:<9}  {}",
            b.bid_id,
            b.bidder,
            b.price,
            b.quantity,
            name_of::<pb::BidState>(b.state),
            time(&b.placed_at)
        );
    }
    out
}

pub fn settlement(s: &pb::Settlement) -> String {
    settlement_named(s, &|code| code.to_owned())
}

/// A settlement with bidders shown by `name` (an enterprise's name instead of its code).
pub fn settlement_named(s: &pb::Settlement, name: &dyn Fn(&str) -> String) -> String {
    let width = s.allocations.iter().map(|a| name(&a.bidder).chars().count()).max().unwrap_or(0).max(18);
    let mut out = String::new();
    let _ = write!(
        out,
        "#{} {}  {}  {}  {}",
        s.sequence,
        s.auction_id,
        name_of::<pb::Pollutant>(s.pollutant),
        name_of::<pb::AuctionFormat>(s.format),
        name_of::<pb::SettlementStatus>(s.status)
    );
    if !s.reason.is_empty() {
        let _ = write!(out, " ({})", s.reason);
    }
    if !s.clearing_price.is_empty() {
        let _ = write!(out, "  clearing price {} yuan/t", s.clearing_price);
    }
    let _ = write!(
        out,
        "\n  lot {}: sold {} t, unsold {} t, floor {}",
        s.lot_id, s.sold_quantity, s.unsold_quantity, s.floor_price
    );
    if !s.cap_price.is_empty() {
        let _ = write!(out, ", cap {}", s.cap_price);
    }
    if !s.allocations.is_empty() {
        let _ = write!(
            out,
            "\n  {:<width$}  {:>9}  {:>10}  {:>13}  {:>10}  {:>10}",
            "bidder", "t", "yuan/t", "amount", "buyer fee", "seller fee"
        );
        for a in &s.allocations {
            let who = name(&a.bidder);
            let _ = write!(
                out,
                "\n  {who:<width$}  {:>9}  {:>10}  {:>13}  {:>10}  {:>10}",
                a.quantity, a.unit_price, a.amount, a.buyer_fee, a.seller_fee
            );
        }
        let _ = write!(
            out,
            "\n  {:<width$}  {:>9}  {:>10}  {:>13}  {:>10}  {:>10}",
            "total", s.sold_quantity, "", s.total_amount, s.total_buyer_fee, s.total_seller_fee
        );
    }
    if let Some(t) = &s.tie_break {
        let _ = write!(out, "\n  tie-break {}", name_of::<pb::TieRule>(t.rule));
        if !t.marginal_price.is_empty() {
            let _ = write!(out, " at {}: served {}", t.marginal_price, t.order.join(", "));
        }
        if !t.seed.is_empty() {
            let _ = write!(out, "; seed {} (sha256 {})", t.seed, t.seed_hash);
        }
    }
    if !s.deposits.is_empty() {
        let _ =
            write!(out, "\n  {:<width$}  {:>13}  {:>13}  {:>13}", "deposit (保证金)", "posted", "applied", "released");
        for d in &s.deposits {
            let who = name(&d.enterprise);
            let _ = write!(out, "\n  {who:<width$}  {:>13}  {:>13}  {:>13}", d.deposit, d.applied, d.released);
        }
    }
    if !s.note.is_empty() {
        let _ = write!(out, "\n  note: {}", s.note);
    }
    if s.journal_seq > 0 {
        let _ = write!(out, "\n  derived from journal record {} (hash {})", s.journal_seq, s.journal_hash);
    }
    if !s.book_root.is_empty() {
        let _ = write!(out, "\n  book root: {}", s.book_root);
    }
    out
}

/// One registered enterprise on one line.
pub fn enterprise(e: &pb::Enterprise) -> String {
    let mut out = format!(
        "{}  {}  region {}  industry {}",
        e.credit_code,
        name_of::<pb::EnterpriseStatus>(e.status),
        e.region_code,
        e.industry_code
    );
    if e.permit_number.is_empty() {
        out.push_str("  no permit");
    } else {
        let _ = write!(out, "  permit {} {}..{}", e.permit_number, e.permit_valid_from, e.permit_valid_until);
    }
    if !e.affiliate_group.is_empty() {
        let _ = write!(out, "  group {}", e.affiliate_group);
    }
    if !e.status_reason.is_empty() {
        let _ = write!(out, "  ({})", e.status_reason);
    }
    let _ = write!(out, "  {}", e.name);
    out
}

/// A deposit as recorded.
pub fn deposit(d: &pb::Deposit) -> String {
    format!("{} {}: deposit {} yuan (the auction requires {})", d.auction_id, d.enterprise, d.deposit, d.required)
}

/// The reason code in a status's ErrorInfo, if it carries one.
pub fn reason_of(s: &tonic::Status) -> Option<String> {
    s.get_details_error_info().map(|info| info.reason)
}

/// A status as a person should read it: code, message, and the numbers in its ErrorInfo.
pub fn status(s: &tonic::Status) -> String {
    let mut out = format!("{:?}: {}", s.code(), s.message());
    if let Some(info) = s.get_details_error_info() {
        let mut pairs: Vec<_> = info.metadata.iter().collect();
        pairs.sort();
        for (k, v) in pairs {
            let _ = write!(out, " [{k}={v}]");
        }
    }
    out
}
