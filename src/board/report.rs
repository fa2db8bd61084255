//! The statistics report: volume and value by pollutant and month, clearing prices against the
//! benchmark, volume by city and by industry, reserve against enterprise supply, failed and
//! cancelled auctions, bidders and concentration (HHI), and the certification year, investment
//! and output figures where lots carry them.
//!
//! One pure function, [`render`], turns [`ReportData`] into a printable HTML page with SVG
//! charts. The data comes from a running exchange (the board's `/report`) or from a data
//! directory offline (`emission-auction report`), by replaying its journal: the journal holds
//! every auction's terms, and every settlement derived from it is the one that was published.
//!
//! Invariant: the report shows only concluded auctions' outcomes and running auctions' terms;
//! the bidder counts it uses are read only from concluded auctions. It invents nothing: a
//! statistic with no data says so.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use crate::config::{Config, parse_date};
use crate::domain::{Amount, BidderId, Pollutant, Price, Quantity, RegionCode, Timestamp};
use crate::engine::{AuctionSpec, LotOrigin, Phase, Settlement, SettlementStatus};
use crate::service::{AuctionFilter, Exchange};

use super::page::{CSS, bi, esc, when};
use super::svg;
use super::view::{format_names, origin_names, pollutant_en, pollutant_zh, region_label};

/// One auction as the report sees it.
#[derive(Debug, Clone)]
pub struct AuctionRecord {
    pub spec: Arc<AuctionSpec>,
    pub phase: Phase,
    /// Present once the auction concluded.
    pub settlement: Option<Settlement>,
    /// How many enterprises bid; known only for concluded auctions.
    pub bidders: Option<usize>,
}

impl AuctionRecord {
    /// When the auction counts for a period: its conclusion, or its close while it runs.
    fn at(&self) -> Timestamp {
        self.settlement.as_ref().map_or(self.spec.closes_at, |s| s.settled_at)
    }
}

#[derive(Debug, Clone, Default)]
pub struct ReportData {
    pub auctions: Vec<AuctionRecord>,
}

fn distinct_bidders(bids: &[crate::engine::BidView]) -> usize {
    bids.iter().map(|b| b.bidder).collect::<BTreeSet<BidderId>>().len()
}

impl ReportData {
    /// From the running exchange: every auction's snapshot, the published settlements, and the
    /// bids of concluded auctions (counted, never shown).
    pub async fn from_exchange(exchange: &Exchange) -> ReportData {
        let mut auctions = Vec::new();
        for snapshot in exchange.list(&AuctionFilter::default()).unwrap_or_default() {
            let id = snapshot.spec.id;
            let (settlement, bidders) = if snapshot.phase.is_terminal() {
                let settlement = exchange.hub().get(id).map(|r| r.settlement.clone());
                let bidders = exchange.all_bids(id).await.ok().map(|b| distinct_bidders(&b));
                (settlement, bidders)
            } else {
                (None, None)
            };
            auctions.push(AuctionRecord { spec: snapshot.spec, phase: snapshot.phase, settlement, bidders });
        }
        ReportData { auctions }
    }

    /// From a data directory, offline: verifies the journal and replays it through the core,
    /// changing nothing.
    pub fn from_data_dir(config: &Config) -> Result<ReportData, Box<dyn std::error::Error>> {
        let dir = config.journal_dir();
        if !dir.exists() {
            return Err(format!("no journal in {}", dir.display()).into());
        }
        let verified = crate::journal::verify(&dir)?;
        let replayed = crate::service::replay(verified.entries())?;
        let mut settlements: BTreeMap<_, Settlement> = BTreeMap::new();
        for recorded in replayed.settlements {
            settlements.insert(recorded.settlement.auction_id, recorded.settlement);
        }
        let auctions = replayed
            .auctions
            .into_iter()
            .map(|(id, (auction, _))| AuctionRecord {
                spec: Arc::new(auction.spec().clone()),
                phase: auction.phase(),
                settlement: settlements.remove(&id),
                bidders: auction.all_bids().ok().map(|b| distinct_bidders(&b)),
            })
            .collect();
        Ok(ReportData { auctions })
    }
}

/// The period a report covers: from the start of `from` to the end of `to`, both days UTC.
#[derive(Debug, Clone, Copy, Default)]
pub struct Period {
    pub from: Option<Timestamp>,
    /// Exclusive: midnight after the `to` day.
    pub until: Option<Timestamp>,
}

const DAY_MICROS: i64 = 86_400_000_000;

impl Period {
    pub fn parse(from: Option<&str>, to: Option<&str>) -> Result<Period, String> {
        let day = |name: &str, text: Option<&str>| -> Result<Option<Timestamp>, String> {
            match text.filter(|t| !t.is_empty()) {
                None => Ok(None),
                Some(t) => parse_date(t).map(Some).ok_or_else(|| format!("{name}: {t:?} is not a date YYYY-MM-DD")),
            }
        };
        let from = day("from", from)?;
        let until = day("to", to)?.map(|t| t.plus_micros(DAY_MICROS));
        if let (Some(f), Some(u)) = (from, until)
            && u <= f
        {
            return Err("to: must not be before from".into());
        }
        Ok(Period { from, until })
    }

    fn contains(&self, at: Timestamp) -> bool {
        self.from.is_none_or(|f| at >= f) && self.until.is_none_or(|u| at < u)
    }

    fn describe(&self) -> String {
        let day = |t: Timestamp| t.to_string().get(..10).unwrap_or_default().to_owned();
        match (self.from, self.until) {
            (None, None) => bi("全部记录", "all records"),
            (f, u) => {
                format!("{} – {}", f.map_or("…".into(), day), u.map_or("…".into(), |u| day(u.plus_micros(-DAY_MICROS))))
            }
        }
    }
}

/// Tonnes as a number for charts (kilograms / 1000).
fn tonnes(kg: i128) -> f64 {
    kg as f64 / 1000.0
}

/// Yuan as a number for charts.
fn yuan(fen: i128) -> f64 {
    fen as f64 / 100.0
}

fn fmt_kg(kg: i128) -> String {
    i64::try_from(kg)
        .ok()
        .and_then(Quantity::from_units)
        .map_or_else(|| format!("{:.3}", tonnes(kg)), |q| q.to_string())
}

fn fmt_fen(fen: i128) -> String {
    i64::try_from(fen).ok().and_then(Amount::from_units).map_or_else(|| format!("{:.2}", yuan(fen)), |a| a.to_string())
}

/// The average unit price of a settlement, fen per tonne, rounded half-up: the clearing price
/// when there is one, else amount / quantity.
fn unit_price(s: &Settlement) -> Option<Price> {
    if let Some(p) = s.clearing_price {
        return Some(p);
    }
    let kg = i128::from(s.sold.units());
    if kg == 0 {
        return None;
    }
    let fen_per_t = (i128::from(s.total_amount.units()) * 1000 * 2 + kg) / (2 * kg);
    i64::try_from(fen_per_t).ok().and_then(Price::from_units)
}

/// Herfindahl-Hirschman index of the quantities won, 0 to 10,000.
fn hhi(won: &BTreeMap<BidderId, i128>) -> Option<f64> {
    let total: i128 = won.values().sum();
    (total > 0).then(|| won.values().map(|q| (100.0 * *q as f64 / total as f64).powi(2)).sum())
}

fn pollutant_label(p: Pollutant) -> String {
    format!("{} {}", pollutant_zh(p), pollutant_en(p))
}

#[derive(Default)]
struct Sums {
    kg: i128,
    fen: i128,
    count: usize,
}

/// Renders the report as a complete HTML page.
pub fn render(data: &ReportData, period: &Period, now: Timestamp) -> String {
    let records: Vec<&AuctionRecord> = data.auctions.iter().filter(|a| period.contains(a.at())).collect();
    let settled: Vec<(&AuctionRecord, &Settlement)> = records
        .iter()
        .filter_map(|a| a.settlement.as_ref().map(|s| (*a, s)))
        .filter(|(_, s)| s.status == SettlementStatus::Settled)
        .collect();
    let mut body = String::new();

    // Summary.
    let count = |phase: Phase| records.iter().filter(|a| a.phase == phase).count();
    let total_kg: i128 = settled.iter().map(|(_, s)| i128::from(s.sold.units())).sum();
    let total_fen: i128 = settled.iter().map(|(_, s)| i128::from(s.total_amount.units())).sum();
    let fees: i128 = settled
        .iter()
        .map(|(_, s)| i128::from(s.total_buyer_fee.units()) + i128::from(s.total_seller_fee.units()))
        .sum();
    let running = records.iter().filter(|a| !a.phase.is_terminal()).count();
    let _ = write!(body, "<section><h2>{}</h2><div class=\"figures\">", bi("概览", "Summary"));
    for (label, value) in [
        (bi("拍卖场次", "auctions"), records.len().to_string()),
        (bi("成交", "settled"), count(Phase::Settled).to_string()),
        (bi("流拍", "failed"), count(Phase::Failed).to_string()),
        (bi("取消", "cancelled"), count(Phase::Cancelled).to_string()),
        (bi("进行中", "running"), running.to_string()),
        (bi("成交量 吨", "volume, t"), fmt_kg(total_kg)),
        (bi("成交金额 元", "value, yuan"), fmt_fen(total_fen)),
        (bi("手续费 元", "fees, yuan"), fmt_fen(fees)),
    ] {
        let _ = write!(body, "<div class=\"figure\">{label}<b>{}</b></div>", esc(&value));
    }
    body.push_str("</div></section>");

    // Volume and value by pollutant and month.
    let mut by_month: BTreeMap<(String, Pollutant), Sums> = BTreeMap::new();
    for (_, s) in &settled {
        let month = s.settled_at.to_string().get(..7).unwrap_or_default().to_owned();
        let e = by_month.entry((month, s.pollutant)).or_default();
        e.kg += i128::from(s.sold.units());
        e.fen += i128::from(s.total_amount.units());
        e.count += 1;
    }
    let months: Vec<String> = by_month.keys().map(|(m, _)| m.clone()).collect::<BTreeSet<_>>().into_iter().collect();
    let pollutants: Vec<Pollutant> = by_month.keys().map(|(_, p)| *p).collect::<BTreeSet<_>>().into_iter().collect();
    let _ = write!(
        body,
        "<section><h2>{}</h2>",
        bi("分污染物、分月成交量与成交金额", "Volume and value by pollutant and month")
    );
    if by_month.is_empty() {
        let _ = write!(body, "<p class=\"note\">{}</p>", bi("本期无成交。", "Nothing was sold in this period."));
    } else {
        let series = |f: &dyn Fn(&Sums) -> f64| -> Vec<(String, Vec<f64>)> {
            pollutants
                .iter()
                .map(|p| {
                    let values = months.iter().map(|m| by_month.get(&(m.clone(), *p)).map_or(0.0, f)).collect();
                    (pollutant_label(*p), values)
                })
                .collect()
        };
        body.push_str(&svg::bars("成交量 Volume", "吨 t", &months, &series(&|s| tonnes(s.kg))));
        body.push_str(&svg::bars("成交金额 Value", "元 yuan", &months, &series(&|s| yuan(s.fen))));
        let _ = write!(
            body,
            "<div class=\"scroll\"><table><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>",
            bi("月份", "month"),
            bi("污染物", "pollutant"),
            bi("场次", "auctions"),
            bi("成交量 吨", "volume, t"),
            bi("成交金额 元", "value, yuan")
        );
        for ((month, p), s) in &by_month {
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(month),
                bi(pollutant_zh(*p), pollutant_en(*p)),
                s.count,
                fmt_kg(s.kg),
                fmt_fen(s.fen)
            );
        }
        body.push_str("</tbody></table></div>");
    }
    body.push_str("</section>");

    // Clearing price against the benchmark.
    let _ = write!(body, "<section><h2>{}</h2>", bi("成交价与基准价对比", "Clearing price against the benchmark"));
    let mut price_series: BTreeMap<Pollutant, Vec<(i64, f64)>> = BTreeMap::new();
    let mut rows = String::new();
    for (a, s) in &settled {
        let Some(price) = unit_price(s) else { continue };
        let benchmark = a.spec.prices.benchmark;
        let ratio = 100.0 * price.units() as f64 / benchmark.units().max(1) as f64;
        price_series.entry(s.pollutant).or_default().push((super::view::millis(s.settled_at), ratio));
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{ratio:.1}%</td></tr>",
            esc(&s.auction_id.to_string()),
            esc(&when(s.settled_at)),
            bi(pollutant_zh(s.pollutant), pollutant_en(s.pollutant)),
            price,
            benchmark,
        );
    }
    if rows.is_empty() {
        let _ = write!(body, "<p class=\"note\">{}</p>", bi("本期无成交价。", "No clearing price in this period."));
    } else {
        let series: Vec<(String, Vec<(i64, f64)>)> =
            price_series.into_iter().map(|(p, pts)| (pollutant_label(p), pts)).collect();
        body.push_str(&svg::points_over_time(
            "成交价/基准价 Clearing price / benchmark",
            "% 基准价 of benchmark",
            &series,
            &[(100.0, "基准价 benchmark 100%".into()), (120.0, "企业上浮上限 enterprise band 120%".into())],
        ));
        let _ = write!(
            body,
            "<p class=\"note\">{}</p><div class=\"scroll\"><table><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>{rows}</tbody></table></div>",
            bi(
                "按各自报价成交的拍卖取成交量加权均价。",
                "Pay-as-bid auctions are shown at their volume-weighted average price."
            ),
            bi("拍卖", "auction"),
            bi("成交时间", "settled"),
            bi("污染物", "pollutant"),
            bi("成交价 元/吨", "price, yuan/t"),
            bi("基准价", "benchmark"),
            bi("比值", "ratio"),
        );
    }
    body.push_str("</section>");

    // Volume by city and by industry.
    let mut by_region: BTreeMap<RegionCode, i128> = BTreeMap::new();
    for (a, s) in &settled {
        *by_region.entry(a.spec.lot.region).or_default() += i128::from(s.sold.units());
    }
    let _ = write!(body, "<section><h2>{}</h2>", bi("分地区、分行业成交量", "Volume by city and by industry"));
    if by_region.is_empty() {
        let _ = write!(body, "<p class=\"note\">{}</p>", bi("本期无成交。", "Nothing was sold in this period."));
    } else {
        let items: Vec<(String, f64)> = by_region
            .iter()
            .map(|(r, kg)| {
                let (zh, en) = region_label(*r);
                (if zh == en { zh } else { format!("{zh} {en}") }, tonnes(*kg))
            })
            .collect();
        body.push_str(&svg::hbars(
            "分地区成交量 Volume by city",
            "吨 t（按出让方所在地区 by the lot's region）",
            &items,
        ));
    }
    let _ = write!(
        body,
        "<p class=\"note\"><b>{}</b> {}</p></section>",
        bi("分行业：尚未记录。", "By industry: not yet recorded."),
        bi(
            "企业所属行业（GB/T 4754）由企业档案登记，本系统目前未记录，因此不作估计。",
            "Enterprises' industries (GB/T 4754) will come from the enterprise registry; this system does not record them yet, so none are estimated."
        )
    );

    // Reserve against enterprise supply.
    let mut by_origin: BTreeMap<&'static str, (i128, i128, &'static str)> = BTreeMap::new();
    for a in &records {
        let (zh, en) = origin_names(&a.spec.lot.origin);
        let key = match a.spec.lot.origin {
            LotOrigin::GovernmentReserve => "1",
            LotOrigin::ErcCertified { .. } => "2",
            LotOrigin::Allocated => "3",
        };
        let e = by_origin.entry(key).or_insert((0, 0, zh));
        e.0 += i128::from(a.spec.lot.quantity.units());
        if let Some(s) = a.settlement.as_ref().filter(|s| s.status == SettlementStatus::Settled) {
            e.1 += i128::from(s.sold.units());
        }
        let _ = en;
    }
    let _ = write!(body, "<section><h2>{}</h2>", bi("政府储备与企业出让", "Reserve against enterprise supply"));
    if by_origin.is_empty() {
        let _ = write!(body, "<p class=\"note\">{}</p>", bi("本期无拍卖。", "No auction in this period."));
    } else {
        let categories: Vec<String> = by_origin
            .values()
            .map(|(_, _, zh)| {
                let en = match *zh {
                    "政府储备" => "reserve",
                    "企业减排量" => "enterprise ERC",
                    _ => "allocated",
                };
                format!("{zh} {en}")
            })
            .collect();
        let offered: Vec<f64> = by_origin.values().map(|v| tonnes(v.0)).collect();
        let sold: Vec<f64> = by_origin.values().map(|v| tonnes(v.1)).collect();
        body.push_str(&svg::bars(
            "供给来源 Supply by origin",
            "吨 t",
            &categories,
            &[("挂牌量 offered".into(), offered), ("成交量 sold".into(), sold)],
        ));
    }
    body.push_str("</section>");

    // Failed and cancelled.
    let _ = write!(body, "<section><h2>{}</h2>", bi("流拍与取消", "Failed and cancelled auctions"));
    let unsold: Vec<(&AuctionRecord, &Settlement)> = records
        .iter()
        .filter_map(|a| a.settlement.as_ref().map(|s| (*a, s)))
        .filter(|(_, s)| s.status != SettlementStatus::Settled)
        .collect();
    if unsold.is_empty() {
        let _ = write!(body, "<p class=\"note\">{}</p>", bi("本期无流拍或取消。", "None in this period."));
    } else {
        let _ = write!(
            body,
            "<div class=\"scroll\"><table><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>",
            bi("拍卖", "auction"),
            bi("标的", "lot"),
            bi("方式", "format"),
            bi("结果", "outcome"),
            bi("原因", "reason"),
            bi("数量 吨", "lot, t"),
        );
        for (a, s) in unsold {
            let (fzh, fen) = format_names(s.format);
            let (szh, sen) = super::view::status_names(s.status);
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code>{}</td><td>{}</td></tr>",
                esc(&s.auction_id.to_string()),
                esc(&s.lot_id.to_string()),
                bi(fzh, fen),
                bi(szh, sen),
                s.reason.map_or("", |r| r.code()),
                s.note.as_deref().map_or(String::new(), |n| format!(" {}", esc(n))),
                a.spec.lot.quantity,
            );
        }
        body.push_str("</tbody></table></div>");
    }
    body.push_str("</section>");

    // Bidders and concentration.
    let _ = write!(
        body,
        "<section><h2>{}</h2>",
        bi("竞买人数与集中度（HHI）", "Bidders per auction and concentration (HHI)")
    );
    let mut overall: BTreeMap<BidderId, i128> = BTreeMap::new();
    let mut rows = String::new();
    let mut bidder_bars = Vec::new();
    for a in records.iter().filter(|a| a.phase.is_terminal()) {
        let mut won: BTreeMap<BidderId, i128> = BTreeMap::new();
        if let Some(s) = &a.settlement {
            for al in &s.allocations {
                *won.entry(al.bidder).or_default() += i128::from(al.quantity.units());
                *overall.entry(al.bidder).or_default() += i128::from(al.quantity.units());
            }
        }
        if let Some(n) = a.bidders {
            bidder_bars.push((a.spec.id.to_string(), n as f64));
        }
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&a.spec.id.to_string()),
            a.bidders.map_or("—".into(), |n| n.to_string()),
            won.len(),
            hhi(&won).map_or("—".into(), |h| format!("{h:.0}")),
        );
    }
    if rows.is_empty() {
        let _ = write!(
            body,
            "<p class=\"note\">{}</p>",
            bi("本期无已结束的拍卖。", "No concluded auction in this period.")
        );
    } else {
        if !bidder_bars.is_empty() {
            body.push_str(&svg::hbars("竞买企业数 Bidders per auction", "家 enterprises", &bidder_bars));
        }
        let _ = write!(
            body,
            "<p>{}: <b>{}</b></p><p class=\"note\">{}</p><div class=\"scroll\"><table><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>{rows}</tbody></table></div>",
            bi("本期全部成交量的企业集中度 HHI", "HHI of all volume won in the period"),
            hhi(&overall).map_or("—".into(), |h| format!("{h:.0}")),
            bi(
                "HHI = 各受让企业成交量份额（%）平方和，0–10000；超过2500为高度集中。",
                "HHI = sum of the squared shares (%) of the quantity each enterprise won, 0 to 10,000; above 2,500 is highly concentrated."
            ),
            bi("拍卖", "auction"),
            bi("竞买企业数", "bidders"),
            bi("受让企业数", "winners"),
            bi("HHI", "HHI"),
        );
    }
    body.push_str("</section>");

    // Certification year, investment and output.
    let _ = write!(
        body,
        "<section><h2>{}</h2>",
        bi("核定年份、项目投资与预计年产值", "Certification year, project investment and expected output")
    );
    let mut by_vintage: BTreeMap<u16, (i128, i128)> = BTreeMap::new();
    for a in &records {
        let e = by_vintage.entry(a.spec.lot.vintage_year).or_default();
        e.0 += i128::from(a.spec.lot.quantity.units());
        if let Some(s) = a.settlement.as_ref().filter(|s| s.status == SettlementStatus::Settled) {
            e.1 += i128::from(s.sold.units());
        }
    }
    if !by_vintage.is_empty() {
        let years: Vec<String> = by_vintage.keys().map(u16::to_string).collect();
        body.push_str(&svg::bars(
            "按核定年份 By certification year",
            "吨 t",
            &years,
            &[
                ("挂牌量 offered".into(), by_vintage.values().map(|v| tonnes(v.0)).collect()),
                ("成交量 sold".into(), by_vintage.values().map(|v| tonnes(v.1)).collect()),
            ],
        ));
    }
    let with_facts: Vec<&&AuctionRecord> = records
        .iter()
        .filter(|a| a.spec.lot.project.investment.is_some() || a.spec.lot.project.expected_annual_output.is_some())
        .collect();
    if with_facts.is_empty() {
        let _ = write!(
            body,
            "<p class=\"note\">{}</p>",
            bi(
                "本期没有标的登记项目投资或预计年产值。",
                "No lot in this period carries a project investment or expected annual output."
            )
        );
    } else {
        let investment: i128 =
            with_facts.iter().filter_map(|a| a.spec.lot.project.investment).map(|v| i128::from(v.units())).sum();
        let output: i128 = with_facts
            .iter()
            .filter_map(|a| a.spec.lot.project.expected_annual_output)
            .map(|v| i128::from(v.units()))
            .sum();
        let _ = write!(
            body,
            "<p>{}: <b>{}</b> / {} · {}: <b>{}</b> · {}: <b>{}</b></p>",
            bi("登记项目数据的标的", "lots carrying project figures"),
            with_facts.len(),
            records.len(),
            bi("项目投资合计 元", "total project investment, yuan"),
            fmt_fen(investment),
            bi("预计年产值合计 元", "total expected annual output, yuan"),
            fmt_fen(output),
        );
        let _ = write!(
            body,
            "<div class=\"scroll\"><table><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>",
            bi("拍卖", "auction"),
            bi("标的", "lot"),
            bi("核定年份", "certified"),
            bi("数量 吨", "lot, t"),
            bi("项目投资 元", "investment, yuan"),
            bi("预计年产值 元", "expected annual output, yuan"),
        );
        for a in with_facts {
            let lot = &a.spec.lot;
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&a.spec.id.to_string()),
                esc(&lot.id.to_string()),
                lot.vintage_year,
                lot.quantity,
                lot.project.investment.map_or("—".into(), |v| v.to_string()),
                lot.project.expected_annual_output.map_or("—".into(), |v| v.to_string()),
            );
        }
        body.push_str("</tbody></table></div>");
    }
    body.push_str("</section>");

    format!(
        r#"<!doctype html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>排污权交易统计报告 · Emission rights trading: statistics report</title>
<style>{CSS}</style>
</head>
<body class="report">
<header class="top">
<h1>排污权交易统计报告<span class="en"> · Emission rights trading: statistics report</span></h1>
<p>{period_label}: {period} · {generated_label}: {generated}</p>
<nav><a href="/">{board_label}</a></nav>
</header>
<main>
{body}
</main>
<footer>{footer}</footer>
</body>
</html>
"#,
        period_label = bi("统计期间", "period"),
        period = period.describe(),
        generated_label = bi("生成时间", "generated"),
        generated = esc(&when(now)),
        board_label = bi("返回实时公示", "back to the live board"),
        footer = bi(
            "数据来源：交易系统日志与成交结算记录。价格单位：元/吨；数量：吨。",
            "Source: the trading system's journal and published settlements. Prices in yuan per tonne, quantities in tonnes."
        ),
    )
}

/// `emission-auction report`: replays a data directory's journal and writes the report.
pub fn run(
    config: &Config,
    from: Option<&str>,
    to: Option<&str>,
    out: &PathBuf,
) -> Result<(), Box<dyn std::error::Error>> {
    let period = Period::parse(from, to)?;
    let data = ReportData::from_data_dir(config)?;
    let now = crate::service::clock::Clock::now(&crate::service::clock::SystemClock);
    let html = render(&data, &period, now);
    std::fs::write(out, html).map_err(|e| format!("{}: {e}", out.display()))?;
    eprintln!("report of {} auctions written to {}", data.auctions.len(), out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hhi_of_one_winner_is_ten_thousand_and_of_two_equal_five_thousand() {
        let a = crate::domain::CreditCode::with_check_digit("91140100MA0DEM001").unwrap();
        let b = crate::domain::CreditCode::with_check_digit("91140100MA0DEM002").unwrap();
        assert_eq!(hhi(&BTreeMap::from([(a, 5)])), Some(10_000.0));
        assert_eq!(hhi(&BTreeMap::from([(a, 5), (b, 5)])), Some(5_000.0));
        assert_eq!(hhi(&BTreeMap::new()), None);
    }

    #[test]
    fn periods_are_whole_days_and_refuse_bad_dates() {
        let p = Period::parse(Some("2026-03-01"), Some("2026-03-01")).unwrap();
        let midnight = parse_date("2026-03-01").unwrap();
        assert!(p.contains(midnight));
        assert!(p.contains(midnight.plus_micros(DAY_MICROS - 1)));
        assert!(!p.contains(midnight.plus_micros(DAY_MICROS)));
        assert!(Period::parse(Some("2026-13-01"), None).is_err());
        assert!(Period::parse(Some("2026-03-02"), Some("2026-03-01")).is_err());
    }

    #[test]
    fn an_empty_report_says_there_is_no_data() {
        let html = render(&ReportData::default(), &Period::default(), Timestamp::from_micros(0));
        assert!(html.contains("not yet recorded"));
        assert!(html.contains("Nothing was sold in this period."));
    }
}
