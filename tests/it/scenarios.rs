//! Data-driven clearing tests. Each file in `tests/scenarios/` is a sequence of blocks:
//!
//! ```text
//! # a comment
//! bid A 18500.00 4.000 t=3
//! ----
//! ok id=1
//! ```
//!
//! A command line, `----`, then the expected output up to a blank line. One [`check`] runs every
//! file against the pure core, so an API change touches only this module.
//!
//! Commands (times `t=` are whole seconds after a fixed epoch; by default each command comes one
//! second after the previous one, starting at t=1):
//! - `auction key=value ...`: format=first|uniform|pay-as-bid|fixed, pollutant=SO2..., origin=reserve|
//!   erc|allocated, quantity, fill, tie=time|pro-rata|seeded, under=sell|cancel|floor,
//!   min_bidders, bidder_cap (percent), irrevocable=yes, factor, markup, cap=default|none|PCT,
//!   opens, closes (seconds), seed (one hex byte, repeated 32 times), max_bids (the server's
//!   limit on bids per bidder), lot (the lot id; by default
//!   each `auction` line offers a lot of its own). A later `auction` line starts the next
//!   auction; naming the lot of the one before offers that lot again.
//! - `bid BIDDER PRICE QTY [id=N]` (ids count up from 1 by default), `revise BIDDER ID PRICE QTY`;
//!   a price or quantity of `-` (or left off) is left empty for the auction to resolve,
//!   `withdraw BIDDER ID`, `open`, `close`, `cancel`, `tick`, `mybids BIDDER`, `allbids`,
//!   `advance` (end a clock round), `state` (an ascending or clock auction's public state).
//! - Ascending auctions (format=english): start, increment, countdown (s), hard_stop (s),
//!   max_ext, timed_min. Clock auctions (format=clock): start, increment, round (s),
//!   silent=keep|zero.
//!
//! - Registry and eligibility: `enterprise A region=140100 industry=C2511
//!   permit=2026-01-01..2027-12-31|none status=active|suspended|blacklisted group=G1` registers
//!   or replaces A's record (from the first such line on, every bid and revision carries the
//!   eligibility facts gathered from this registry, as the service does);
//!   `policy sections=BCD`, `restrict REGION scope=own_region|same_city|same_basin
//!   from=YYYY-MM-DD`, `area REGION city=X basin=Y` set the eligibility policy; an auction's
//!   `region=` is its lot's region (default 140100); `eligible BIDDER` lists every refusal.
//!
//! - Deposits (保证金): an auction's `deposit=AMOUNT` (a fixed deposit, e.g. `deposit=90000.00`)
//!   or `deposit=PCT%xYEARS` (PCT x benchmark x lot quantity x YEARS, e.g. `deposit=10%x5`);
//!   `deposit A AMOUNT` records a deposit received from A (it adds to what A posted).
//!   Settlements list each deposit as `deposit A posted=.. applied=.. released=..`.
//!
//! - Price policy: `factor region=140100|section=C from=YYYY-MM-DD value=1.10` adds a dated
//!   conversion factor (价格折算因子) to the policy later `auction` lines are created under; an
//!   auction's `seller_section=C` is its seller's industry section (the service takes it from
//!   the registry); `prices` prints how the floor and cap were derived.
//!
//! Bidders are single letters mapped to valid credit codes; bid ids print as plain numbers.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use emission_auction::config::parse_date;
use emission_auction::domain::{
    AuctionId, BidId, BidderId, CreditCode, EligibilityPolicy, Enterprise, EnterpriseStatus, FactorScope, Permit,
    Pollutant, Price, PriceFactor, PricePolicy, Quantity, Ratio, Reference, RegionAreas, RestrictedRegion, Timestamp,
};
use emission_auction::engine::{
    AscendingRequest, Auction, AuctionRequest, BidRevision, BidView, CapMode, CapRequest, ClockRequest, Command,
    DepositRule, EngineError, Event, Format, LotRequest, OriginKind, Settlement, TieRule, Undersubscription,
    lot_offerable,
};
use emission_auction::engine::{Eligibility, eligibility};
use sha2::{Digest, Sha256};

/// 2026-01-01T00:00:00Z: scenario time zero.
const EPOCH: i64 = 1_767_225_600_000_000;

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_micros(EPOCH + seconds * 1_000_000)
}

pub fn bidder(letter: &str) -> BidderId {
    let n = letter.bytes().next().expect("bidder letter") - b'A';
    CreditCode::with_check_digit(&format!("91140100MA0000{:03}", n)).unwrap()
}

fn letter(code: BidderId) -> String {
    let n: u8 = code.as_str()[14..17].parse().unwrap();
    ((b'A' + n) as char).to_string()
}

struct Run {
    auction: Option<Auction>,
    /// How many `auction` lines came so far; each offers its own lot unless it names one.
    auctions: u32,
    next_id: u64,
    now: i64,
    /// `None` until the first `enterprise` line: bids then carry no eligibility facts.
    registry: Option<BTreeMap<String, Enterprise>>,
    policy: EligibilityPolicy,
    prices: PricePolicy,
}

impl Run {
    fn auction(&mut self) -> &mut Auction {
        self.auction.as_mut().expect("`auction` must come first")
    }

    fn exec(&mut self, line: &str) -> String {
        let mut words: Vec<&str> = line.split_whitespace().collect();
        let mut opts = BTreeMap::new();
        words.retain(|w| match w.split_once('=') {
            Some((k, v)) => {
                opts.insert(k.to_owned(), v.to_owned());
                false
            }
            None => true,
        });
        self.now = opts.get("t").map_or(self.now + 1, |t| t.parse().unwrap());
        let now = at(self.now);
        let (verb, args) = (words[0], &words[1..]);
        if verb == "auction" {
            return self.create(&opts);
        }
        if verb == "factor" {
            let scope = match (opts.get("region"), opts.get("section")) {
                (Some(r), None) => FactorScope::Region(r.parse().unwrap()),
                (None, Some(s)) => FactorScope::IndustrySection(s.chars().next().unwrap()),
                _ => panic!("factor needs region= or section="),
            };
            let from = parse_date(opts.get("from").map_or("2026-01-01", String::as_str)).unwrap();
            let factor = Ratio::parse_factor(&opts["value"]).unwrap();
            self.prices.factors.push(PriceFactor { scope, from, factor });
            return "ok".into();
        }
        if verb == "prices" {
            return emission_auction::grpc::convert::price_derivation(self.auction().spec());
        }
        if let Some(out) = self.registry_command(verb, args, &opts) {
            return out;
        }
        let result = match verb {
            "bid" => {
                let id = opts.get("id").map_or(self.next_id, |i| i.parse().unwrap());
                let (p, q) = (optional(args.get(1), price), optional(args.get(2), qty));
                let eligibility = self.facts(args[0]);
                let result = self.auction().apply(
                    now,
                    Command::PlaceBid {
                        bidder: bidder(args[0]),
                        bid: BidId::new(id),
                        price: p,
                        quantity: q,
                        eligibility,
                    },
                );
                if result.is_ok() {
                    self.next_id = id + 1;
                }
                result
            }
            "revise" => {
                let (b, id) = (bidder(args[0]), BidId::new(args[1].parse().unwrap()));
                let (p, q) = (optional(args.get(2), price), optional(args.get(3), qty));
                let eligibility = self.facts(args[0]);
                self.auction().apply(now, Command::ReviseBid { bidder: b, bid: id, price: p, quantity: q, eligibility })
            }
            "withdraw" => {
                let (b, id) = (bidder(args[0]), BidId::new(args[1].parse().unwrap()));
                self.auction().apply(now, Command::WithdrawBid { bidder: b, bid: id })
            }
            "deposit" => {
                let amount = args[1].parse().unwrap_or_else(|e| panic!("scenario deposit {}: {e}", args[1]));
                self.auction().apply(now, Command::RecordDeposit { enterprise: bidder(args[0]), amount })
            }
            "open" => self.auction().apply(now, Command::Open),
            "close" => self.auction().apply(now, Command::Close),
            "cancel" => self.auction().apply(now, Command::Cancel { note: None }),
            "tick" => Ok(self.auction().tick(now)),
            "advance" => self.auction().apply(now, Command::AdvanceRound),
            "state" if self.auction().clock_view().is_some() => {
                let v = self.auction().clock_view().expect("checked");
                return format!(
                    "round={} price={} ends={} last_demand={}",
                    v.round,
                    v.price,
                    seconds(v.round_ends_at),
                    v.last_round_demand.map_or("-".to_owned(), |q| q.to_string())
                );
            }
            "state" => {
                let auction = self.auction();
                let Some(v) = auction.ascending_view() else { return "not ascending".into() };
                let who = |n: u32| {
                    (b'A'..=b'Z')
                        .map(|c| (c as char).to_string())
                        .find(|l| auction.pseudonym_of(bidder(l)) == Some(n))
                        .unwrap_or_default()
                };
                let show = |p: Option<Price>| p.map_or("-".to_owned(), |p| p.to_string());
                return format!(
                    "price={} leader={} next={} period={} deadline={} extensions={} bidders={}",
                    show(v.current_price),
                    v.leader.map_or("-".to_owned(), |n| format!("{}#{n}", who(n))),
                    show(v.min_next),
                    if v.timed { "timed" } else { "free" },
                    seconds(v.deadline),
                    v.extensions,
                    v.bidders
                );
            }
            "mybids" => {
                let bids = self.auction().bids_of(bidder(args[0]));
                return render_bids(&bids);
            }
            "allbids" => {
                return match self.auction().all_bids() {
                    Ok(bids) => render_bids(&bids),
                    Err(e) => render_error(&e),
                };
            }
            other => panic!("unknown command {other:?}"),
        };
        self.auction().check_invariants();
        match result {
            Ok(events) => render_events(&events, self.auction().spec().lot.quantity),
            Err(e) => render_error(&e),
        }
    }

    /// The eligibility facts a bid by `who` carries, as the service gathers them.
    fn facts(&self, who: &str) -> Option<Box<Eligibility>> {
        let registry = self.registry.as_ref()?;
        let spec = self.auction.as_ref().expect("`auction` must come first").spec();
        Some(Box::new(Eligibility::gather(bidder(who), registry.values(), spec, &self.policy)))
    }

    fn registry_command(&mut self, verb: &str, args: &[&str], o: &BTreeMap<String, String>) -> Option<String> {
        let date = |d: &str| parse_date(d).unwrap_or_else(|| panic!("scenario date {d}"));
        match verb {
            "enterprise" => {
                let permit = match o.get("permit").map(String::as_str) {
                    None | Some("none") => None,
                    Some(range) => {
                        let (from, until) = range.split_once("..").expect("permit=FROM..UNTIL");
                        Some(Permit {
                            number: format!("PERMIT-{}", args[0]),
                            valid_from: date(from),
                            valid_until: date(until),
                        })
                    }
                };
                let status = match o.get("status").map_or("active", String::as_str) {
                    "active" => EnterpriseStatus::Active,
                    "suspended" => EnterpriseStatus::Suspended { reason: o.get("reason").cloned().unwrap_or_default() },
                    "blacklisted" => {
                        EnterpriseStatus::Blacklisted { reason: o.get("reason").cloned().unwrap_or_default() }
                    }
                    s => panic!("status {s}"),
                };
                let record = Enterprise {
                    code: bidder(args[0]),
                    name: format!("enterprise {}", args[0]),
                    region: o.get("region").map_or("140100", String::as_str).parse().unwrap(),
                    industry: o.get("industry").map_or("C2511", String::as_str).parse().unwrap(),
                    permit,
                    status,
                    group: o.get("group").cloned(),
                };
                self.registry.get_or_insert_default().insert(args[0].to_owned(), record);
                Some("ok".into())
            }
            "policy" => {
                if let Some(sections) = o.get("sections") {
                    self.policy.admitted_sections = sections.clone();
                }
                Some("ok".into())
            }
            "restrict" => {
                self.policy.restricted_regions.push(RestrictedRegion {
                    region: args[0].parse().unwrap(),
                    from: date(o.get("from").map_or("2026-01-01", String::as_str)),
                    scope: o.get("scope").map_or("own_region", String::as_str).parse().unwrap(),
                });
                Some("ok".into())
            }
            "area" => {
                let areas = RegionAreas { city: o.get("city").cloned(), basin: o.get("basin").cloned() };
                self.policy.regions.insert(args[0].parse().unwrap(), areas);
                Some("ok".into())
            }
            "eligible" => {
                let facts = self.facts(args[0]).expect("`enterprise` lines must come first");
                let now = at(self.now);
                let refusals = eligibility::check_all(self.auction().spec(), &facts, now);
                if refusals.is_empty() {
                    return Some("eligible".into());
                }
                Some(refusals.iter().map(render_error).collect::<Vec<_>>().join("\n"))
            }
            _ => None,
        }
    }

    fn create(&mut self, o: &BTreeMap<String, String>) -> String {
        let get = |k: &str, d: &str| o.get(k).cloned().unwrap_or_else(|| d.to_owned());
        let format = match get("format", "uniform").as_str() {
            "first" => Format::SealedFirstPrice,
            "uniform" => Format::SealedUniformPrice,
            "pay-as-bid" => Format::SealedPayAsBid,
            "fixed" => Format::FixedPrice,
            "english" => Format::AscendingEnglish,
            "clock" => Format::AscendingClock,
            f => panic!("format {f}"),
        };
        let quantity = qty(&get("quantity", "10.000"));
        let fill_default = if format.is_divisible() { "1.000".into() } else { quantity.to_string() };
        let clock = (format == Format::AscendingClock).then(|| ClockRequest {
            start_price: o.get("start").map(|p| price(p)),
            increment: price(&get("increment", "500.00")),
            round_seconds: get("round", "60").parse().unwrap(),
            silent_keeps_demand: get("silent", "keep") == "keep",
        });
        let english = format == Format::AscendingEnglish;
        let ascending = (english || (o.contains_key("increment") && clock.is_none())).then(|| AscendingRequest {
            start_price: o.get("start").map(|p| price(p)),
            increment: price(&get("increment", "500.00")),
            countdown_seconds: get("countdown", "30").parse().unwrap(),
            hard_stop: o.get("hard_stop").map(|s| at(s.parse().unwrap())),
            max_extensions: o.get("max_ext").map(|m| m.parse().unwrap()),
            timed_min_bidders: get("timed_min", "0").parse().unwrap(),
        });
        let origin = match get("origin", "erc").as_str() {
            "reserve" => OriginKind::GovernmentReserve,
            "erc" => OriginKind::ErcCertified,
            "allocated" => OriginKind::Allocated,
            x => panic!("origin {x}"),
        };
        let seed_byte = u8::from_str_radix(&get("seed", "07"), 16).unwrap();
        let request = AuctionRequest {
            lot: LotRequest {
                id: o
                    .get("lot")
                    .cloned()
                    .unwrap_or_else(|| format!("LOT-{}", self.auctions + 1))
                    .parse::<Reference>()
                    .unwrap(),
                pollutant: get("pollutant", "SO2").parse::<Pollutant>().unwrap(),
                quantity,
                fill_unit: Some(qty(&get("fill", &fill_default))),
                seller: bidder("S"),
                certificate_id: (origin == OriginKind::ErcCertified).then(|| "ERC-2026-001".parse().unwrap()),
                origin,
                region: get("region", "140100").parse().unwrap(),
                vintage_year: 2025,
                valid_years: 5,
                project: Default::default(),
            },
            format,
            tie_rule: match get("tie", "time").as_str() {
                "time" => TieRule::TimePriority,
                "pro-rata" => TieRule::ProRata,
                "seeded" => TieRule::SeededRandom,
                t => panic!("tie {t}"),
            },
            undersubscription: match get("under", "sell").as_str() {
                "sell" => Undersubscription::SellAvailable,
                "cancel" => Undersubscription::Cancel,
                "floor" => Undersubscription::ClearAtFloor,
                u => panic!("under {u}"),
            },
            min_bidders: get("min_bidders", "0").parse().unwrap(),
            per_bidder_cap: o.get("bidder_cap").map(|p| Ratio::parse_percent(p, 100).unwrap()),
            revision: if get("irrevocable", "no") == "yes" { BidRevision::Irrevocable } else { BidRevision::Revisable },
            conversion_factor: Ratio::parse_factor(&get("factor", "1")).unwrap(),
            reserve_markup: o.get("markup").map(|m| Ratio::parse_factor(m).unwrap()),
            cap: match get("cap", "default").as_str() {
                "default" => CapRequest::default(),
                "none" => CapRequest { mode: CapMode::None, percent: None },
                pct => CapRequest { mode: CapMode::Percent, percent: Some(Ratio::parse_percent(pct, 1000).unwrap()) },
            },
            opens_at: at(get("opens", "0").parse().unwrap()),
            closes_at: at(get("closes", "1000").parse().unwrap()),
            ascending,
            clock,
            deposit: o.get("deposit").map(|d| match d.split_once("%x") {
                Some((pct, years)) => DepositRule::Percentage {
                    percent: Ratio::parse_percent(pct, 100).unwrap(),
                    years: years.parse().unwrap(),
                },
                None => DepositRule::Fixed(d.parse().unwrap()),
            }),
            seller_section: o.get("seller_section").and_then(|s| s.chars().next()),
        };
        let seed = emission_auction::engine::Seed([seed_byte; 32]);
        // A later `auction` offers a lot again: the same lot only once its auction failed or
        // was cancelled.
        let id = AuctionId::new(self.auction.as_ref().map_or(1, |a| a.spec().id.get() + 1));
        if let Some(previous) = &self.auction
            && previous.spec().lot.id == request.lot.id
            && previous.spec().lot.pollutant == request.lot.pollutant
            && let Err(e) = lot_offerable(Some((previous.spec().id, previous.phase())))
        {
            return render_error(&e);
        }
        self.auctions += 1;
        // The server's limit on bids per bidder is policy, fixed into the auction at creation.
        self.prices.max_bids_per_bidder = o.get("max_bids").map(|n| n.parse().unwrap());
        match Auction::create(id, request, &self.prices, at(-10), seed) {
            Ok(a) => {
                let p = &a.spec().prices;
                let cap = p.cap.map_or("none".to_owned(), |c| c.to_string());
                let mut out = format!("ok floor={} cap={cap}", p.floor);
                if let Some(d) = a.spec().deposit {
                    write!(out, " deposit={}", d.required).unwrap();
                }
                self.auction = Some(a);
                out
            }
            Err(e) => render_error(&e),
        }
    }
}

/// A timestamp as scenario seconds.
fn seconds(t: Timestamp) -> i64 {
    (t.as_micros() - EPOCH) / 1_000_000
}

/// An optional bid field: `-` (or nothing) leaves it empty for the auction to resolve.
fn optional<T>(s: Option<&&str>, parse: fn(&str) -> T) -> Option<T> {
    s.filter(|s| **s != "-").map(|s| parse(s))
}

fn price(s: &str) -> Price {
    Price::parse_positive(s).unwrap_or_else(|e| panic!("scenario price {s}: {e}"))
}

/// A quantity; zero is allowed (a clock bidder dropping out).
fn qty(s: &str) -> Quantity {
    emission_auction::domain::parse_non_negative(s, 3, emission_auction::domain::MAX_QUANTITY_KG)
        .ok()
        .and_then(Quantity::from_units)
        .unwrap_or_else(|| panic!("scenario quantity {s}"))
}

fn render_error(e: &EngineError) -> String {
    let mut out = format!("error {}", e.reason());
    if let EngineError::InvalidSpec { field, .. } = e {
        write!(out, " field={field}").unwrap();
    }
    for (k, v) in e.details() {
        if k != "opens_at" && k != "closes_at" {
            write!(out, " {k}={v}").unwrap();
        }
    }
    out
}

fn render_bids(bids: &[BidView]) -> String {
    if bids.is_empty() {
        return "none".into();
    }
    bids.iter()
        .map(|b| format!("bid id={} {} {} {} {:?}", b.id.get(), letter(b.bidder), b.price, b.quantity, b.state))
        .collect::<Vec<_>>()
        .join("\n")
}

fn render_events(events: &[Event], supply: Quantity) -> String {
    let mut lines = Vec::new();
    for e in events {
        match e {
            Event::Opened { .. } => lines.push("opened".to_owned()),
            Event::BidAccepted(b) => lines.push(format!("ok id={}", b.id.get())),
            Event::BidWithdrawn(b) => lines.push(format!("withdrawn id={}", b.id.get())),
            Event::TimedPeriodStarted { deadline } => lines.push(format!("timed deadline={}", seconds(*deadline))),
            Event::RoundEnded { round, price, demand, next_price } => {
                lines.push(format!("round {round} at {price}: demand={demand}, next price {next_price}"))
            }
            Event::Concluded(s) => {
                check_settlement(s, supply);
                lines.push(render_settlement(s));
            }
            Event::DepositRecorded { enterprise, total } => {
                lines.push(format!("deposit {} total={total}", letter(*enterprise)))
            }
        }
    }
    if lines.is_empty() { "nothing".into() } else { lines.join("\n") }
}

/// Invariants every settlement must keep, whatever the scenario expects.
fn check_settlement(s: &Settlement, supply: Quantity) {
    let sold: i64 = s.allocations.iter().map(|a| a.quantity.units()).sum();
    assert_eq!(sold, s.sold.units(), "sold is the sum of allocations");
    assert_eq!(s.sold.units() + s.unsold.units(), supply.units(), "sold + unsold = supply");
    let total: i64 = s.allocations.iter().map(|a| a.amount.units()).sum();
    assert_eq!(total, s.total_amount.units(), "total is the sum of amounts");
    for d in &s.deposits {
        assert_eq!(d.applied.units() + d.released.units(), d.deposit.units(), "a deposit is applied or released");
        let due: i64 = s
            .allocations
            .iter()
            .filter(|a| a.bidder == d.enterprise)
            .map(|a| a.amount.units() + a.buyer_fee.units())
            .sum();
        assert!(d.applied.units() <= due, "applied more than the winner pays");
    }
    for a in &s.allocations {
        assert!(a.unit_price >= s.floor, "paid below the floor");
        assert!(s.cap.is_none_or(|c| a.unit_price <= c), "paid above the cap");
    }
    if let Some(t) = &s.tie_break
        && let (Some(seed), Some(hash)) = (&t.seed, &t.seed_hash)
    {
        assert_eq!(
            &hex::encode(Sha256::digest(hex::decode(seed).unwrap())),
            hash,
            "seed does not match its commitment"
        );
    }
}

fn render_settlement(s: &Settlement) -> String {
    let status = format!("{:?}", s.status).to_uppercase();
    let mut out = status;
    if let Some(r) = &s.reason {
        write!(out, " reason={r}").unwrap();
    }
    if let Some(p) = s.clearing_price {
        write!(out, " clearing={p}").unwrap();
    }
    write!(
        out,
        " sold={} unsold={} total={} fees={}/{}",
        s.sold, s.unsold, s.total_amount, s.total_buyer_fee, s.total_seller_fee
    )
    .unwrap();
    for a in &s.allocations {
        write!(
            out,
            "\nalloc id={} {} {} @ {} amount={} fees={}/{}",
            a.bid_id.get(),
            letter(a.bidder),
            a.quantity,
            a.unit_price,
            a.amount,
            a.buyer_fee,
            a.seller_fee
        )
        .unwrap();
    }
    if let Some(t) = &s.tie_break {
        let rule = format!("{:?}", t.rule);
        write!(out, "\ntie {rule}").unwrap();
        if let Some(m) = t.marginal_price {
            write!(out, " margin={m}").unwrap();
        }
        if !t.order.is_empty() {
            let order: Vec<String> = t.order.iter().map(|b| b.get().to_string()).collect();
            write!(out, " order={}", order.join(",")).unwrap();
        }
        if t.seed.is_some() {
            out.push_str(" seed=revealed");
        }
    }
    for d in &s.deposits {
        write!(
            out,
            "\ndeposit {} posted={} applied={} released={}",
            letter(d.enterprise),
            d.deposit,
            d.applied,
            d.released
        )
        .unwrap();
    }
    out
}

/// Runs one scenario file; returns a description of every block whose output differed.
pub fn check(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut run = Run {
        auction: None,
        auctions: 0,
        next_id: 1,
        now: 0,
        registry: None,
        policy: EligibilityPolicy::default(),
        prices: PricePolicy::default(),
    };
    let mut failures = Vec::new();
    let mut lines = text.lines().enumerate().peekable();
    while let Some((n, line)) = lines.next() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let sep = lines.next().map(|(_, l)| l.trim());
        assert_eq!(sep, Some("----"), "{}:{}: expected ---- after the command", path.display(), n + 1);
        let mut expected = Vec::new();
        while let Some((_, l)) = lines.peek() {
            if l.trim().is_empty() {
                break;
            }
            expected.push(l.trim().to_owned());
            lines.next();
        }
        let actual = run.exec(line);
        let expected = expected.join("\n");
        if actual != expected {
            failures.push(format!(
                "{}:{}: {line}\n--- expected\n{expected}\n--- actual\n{actual}",
                path.display(),
                n + 1
            ));
        }
    }
    failures
}

#[test]
fn scenarios() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    files.sort();
    assert!(files.len() >= 25, "expected at least 25 scenario files, found {}", files.len());
    let failures: Vec<String> = files.iter().flat_map(|f| check(f)).collect();
    assert!(failures.is_empty(), "{} scenario blocks differ:\n\n{}", failures.len(), failures.join("\n\n"));
}
