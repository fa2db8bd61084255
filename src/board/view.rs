//! What the board shows of auctions and settlements, as JSON for the page's script and as
//! labels for the server-rendered HTML. Built from [`AuctionSnapshot`] (terms and phase, never
//! bids) and [`RecordedSettlement`] (published results) only.
//!
//! Invariant: nothing here reads a bid. A sealed auction shows its terms and its countdown;
//! an English auction also its public price, leading pseudonym and countdown; a clock auction
//! its round and clock price.

use serde_json::{Value, json};

use crate::domain::{Pollutant, RegionCode, Timestamp};
use crate::engine::{Format, LotOrigin, Phase, SettlementStatus};
use crate::grpc::convert::pseudonym;
use crate::service::{AuctionSnapshot, RecordedSettlement};

/// Milliseconds since the epoch, what the page's script counts down to.
pub fn millis(at: Timestamp) -> i64 {
    at.as_micros().div_euclid(1000)
}

pub fn pollutant_zh(p: Pollutant) -> &'static str {
    match p {
        Pollutant::So2 => "二氧化硫",
        Pollutant::Nox => "氮氧化物",
        Pollutant::Cod => "化学需氧量",
        Pollutant::Nh3N => "氨氮",
        Pollutant::SmokeDust => "烟尘",
        Pollutant::IndustrialDust => "工业粉尘",
    }
}

pub fn pollutant_en(p: Pollutant) -> &'static str {
    match p {
        Pollutant::So2 => "SO2",
        Pollutant::Nox => "NOx",
        Pollutant::Cod => "COD",
        Pollutant::Nh3N => "NH3-N",
        Pollutant::SmokeDust => "smoke dust",
        Pollutant::IndustrialDust => "industrial dust",
    }
}

/// (Chinese, English) names of a format.
pub fn format_names(f: Format) -> (&'static str, &'static str) {
    match f {
        Format::SealedFirstPrice => ("一次报价", "sealed first price"),
        Format::SealedUniformPrice => ("统一价格密封竞价", "sealed uniform price"),
        Format::SealedPayAsBid => ("按报价成交密封竞价", "sealed pay as bid"),
        Format::FixedPrice => ("定价出售", "fixed price"),
        Format::AscendingEnglish => ("网络竞价", "open ascending"),
        Format::AscendingClock => ("时钟竞价", "ascending clock"),
    }
}

pub fn phase_names(p: Phase) -> (&'static str, &'static str) {
    match p {
        Phase::Scheduled => ("待开始", "scheduled"),
        Phase::Open => ("竞价中", "open"),
        Phase::Settled => ("成交", "settled"),
        Phase::Failed => ("流拍", "failed"),
        Phase::Cancelled => ("取消", "cancelled"),
    }
}

pub fn status_names(s: SettlementStatus) -> (&'static str, &'static str) {
    match s {
        SettlementStatus::Settled => ("成交", "settled"),
        SettlementStatus::Failed => ("流拍", "failed"),
        SettlementStatus::Cancelled => ("取消", "cancelled"),
    }
}

/// (Chinese, English) names of a lot's origin.
pub fn origin_names(o: &LotOrigin) -> (&'static str, &'static str) {
    match o {
        LotOrigin::GovernmentReserve => ("政府储备", "government reserve"),
        LotOrigin::ErcCertified { .. } => ("企业减排量", "enterprise reduction credit"),
        LotOrigin::Allocated => ("初始分配", "allocated"),
    }
}

/// Shanxi's prefecture-level cities (GB/T 2260); other codes are shown as the code alone.
pub fn region_names(r: RegionCode) -> Option<(&'static str, &'static str)> {
    Some(match r.to_string().as_str() {
        "140000" => ("山西省", "Shanxi"),
        "140100" => ("太原市", "Taiyuan"),
        "140200" => ("大同市", "Datong"),
        "140300" => ("阳泉市", "Yangquan"),
        "140400" => ("长治市", "Changzhi"),
        "140500" => ("晋城市", "Jincheng"),
        "140600" => ("朔州市", "Shuozhou"),
        "140700" => ("晋中市", "Jinzhong"),
        "140800" => ("运城市", "Yuncheng"),
        "140900" => ("忻州市", "Xinzhou"),
        "141000" => ("临汾市", "Linfen"),
        "141100" => ("吕梁市", "Lüliang"),
        _ => return None,
    })
}

pub fn region_label(r: RegionCode) -> (String, String) {
    match region_names(r) {
        Some((zh, en)) => (format!("{zh} {r}"), en.to_owned()),
        None => (r.to_string(), r.to_string()),
    }
}

/// A running auction as the board shows it.
pub fn auction(s: &AuctionSnapshot) -> Value {
    let spec = &s.spec;
    let (format_zh, format_en) = format_names(spec.format);
    let (phase_zh, phase_en) = phase_names(s.phase);
    let (region_zh, region_en) = region_label(spec.lot.region);
    let (origin_zh, origin_en) = origin_names(&spec.lot.origin);
    // What the countdown counts to: the open, the close, an English countdown, a clock round.
    let (deadline, deadline_kind) = match (s.phase, &s.ascending, &s.clock) {
        (Phase::Scheduled, _, _) => (spec.opens_at, "opens"),
        (_, Some(view), _) => (view.deadline, if view.timed { "countdown" } else { "free_period_ends" }),
        (_, _, Some(view)) => (view.round_ends_at, "round_ends"),
        _ => (spec.closes_at, "closes"),
    };
    let mut v = json!({
        "id": spec.id.to_string(),
        "lot": spec.lot.id.to_string(),
        "pollutant": spec.lot.pollutant.code(),
        "pollutant_zh": pollutant_zh(spec.lot.pollutant),
        "pollutant_en": pollutant_en(spec.lot.pollutant),
        "region_zh": region_zh,
        "region_en": region_en,
        "origin_zh": origin_zh,
        "origin_en": origin_en,
        "format": spec.format.code(),
        "format_zh": format_zh,
        "format_en": format_en,
        "phase": s.phase.to_string(),
        "phase_zh": phase_zh,
        "phase_en": phase_en,
        "quantity": spec.lot.quantity.to_string(),
        "vintage_year": spec.lot.vintage_year,
        "floor": spec.prices.floor.to_string(),
        "cap": spec.prices.cap.map(|c| c.to_string()),
        "benchmark": spec.prices.benchmark.to_string(),
        "opens_at": millis(spec.opens_at),
        "closes_at": millis(spec.closes_at),
        "deadline": millis(deadline),
        "deadline_kind": deadline_kind,
    });
    if let Some(view) = &s.ascending {
        v["english"] = json!({
            "current_price": view.current_price.map(|p| p.to_string()),
            "leader": view.leader.map(pseudonym),
            "min_next": view.min_next.map(|p| p.to_string()),
            "timed": view.timed,
            "extensions": view.extensions,
            "bidders": view.bidders,
        });
    }
    if let Some(view) = &s.clock {
        v["clock"] = json!({ "round": view.round, "price": view.price.to_string() });
    }
    v
}

/// A published settlement as the board shows it. `bidders` is how many enterprises bid, when
/// known (it is public once the auction has concluded).
pub fn settlement(r: &RecordedSettlement, snapshot: Option<&AuctionSnapshot>, bidders: Option<usize>) -> Value {
    let s = &r.settlement;
    let (status_zh, status_en) = status_names(s.status);
    let (format_zh, format_en) = format_names(s.format);
    let region = snapshot.map(|snap| region_label(snap.spec.lot.region));
    let allocations: Vec<Value> = s
        .allocations
        .iter()
        .map(|a| {
            json!({
                "bidder": a.bidder.to_string(),
                "quantity": a.quantity.to_string(),
                "unit_price": a.unit_price.to_string(),
                "amount": a.amount.to_string(),
                "buyer_fee": a.buyer_fee.to_string(),
                "seller_fee": a.seller_fee.to_string(),
            })
        })
        .collect();
    json!({
        "sequence": r.sequence,
        "id": s.auction_id.to_string(),
        "lot": s.lot_id.to_string(),
        "pollutant": s.pollutant.code(),
        "pollutant_zh": pollutant_zh(s.pollutant),
        "pollutant_en": pollutant_en(s.pollutant),
        "region_zh": region.as_ref().map(|r| r.0.clone()),
        "region_en": region.as_ref().map(|r| r.1.clone()),
        "format_zh": format_zh,
        "format_en": format_en,
        "status": format!("{:?}", s.status).to_uppercase(),
        "status_zh": status_zh,
        "status_en": status_en,
        "reason": s.reason.map(|r| r.code()),
        "clearing_price": s.clearing_price.map(|p| p.to_string()),
        "sold": s.sold.to_string(),
        "unsold": s.unsold.to_string(),
        "total_amount": s.total_amount.to_string(),
        "total_buyer_fee": s.total_buyer_fee.to_string(),
        "total_seller_fee": s.total_seller_fee.to_string(),
        "floor": s.floor.to_string(),
        "settled_at": millis(s.settled_at),
        "settled_at_text": s.settled_at.to_string(),
        "bidders": bidders,
        "allocations": allocations,
        "journal_seq": r.journal.seq,
        "journal_hash": r.journal.hash.clone(),
        "link": format!("/settlements/{}", s.auction_id),
    })
}
