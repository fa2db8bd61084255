//! The board's HTML, rendered on the server: the page, the running-auctions list and one
//! result card. The same fragments go into the first page and into the event stream, so the
//! page's script only swaps and prepends them and ticks countdowns.

use std::fmt::Write as _;

use crate::domain::Timestamp;
use crate::engine::{Format, Phase};
use crate::service::{AuctionSnapshot, RecordedSettlement};

use super::view::{self, millis};

pub const CSS: &str = include_str!("assets/board.css");
pub const JS: &str = include_str!("assets/board.js");

/// Escapes text for HTML content and attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A label in both languages: Chinese first, English beside (hidden by the language switch).
pub fn bi(zh: &str, en: &str) -> String {
    format!("{}<span class=\"en\"> {}</span>", esc(zh), esc(en))
}

/// A timestamp as text, to the second, UTC.
pub fn when(at: Timestamp) -> String {
    let text = at.to_string();
    format!("{} UTC", text.get(..19).unwrap_or(&text).replace('T', " "))
}

/// A countdown the script ticks; without the script it shows the deadline itself.
fn countdown(deadline: Timestamp, kind: &str) -> String {
    let (zh, en) = match kind {
        "opens" => ("距开始", "opens in"),
        "countdown" => ("限时报价倒计时", "countdown"),
        "free_period_ends" => ("自由报价剩余", "free period ends in"),
        "round_ends" => ("本轮剩余", "round ends in"),
        _ => ("距截止", "closes in"),
    };
    format!(
        "<div class=\"countdown\"><span class=\"label\">{}</span> <time class=\"remaining\" data-deadline=\"{}\" datetime=\"{}\">{}</time></div>",
        bi(zh, en),
        millis(deadline),
        esc(&deadline.to_string()),
        esc(&when(deadline)),
    )
}

/// The running auctions, as cards.
pub fn running(list: &[AuctionSnapshot]) -> String {
    if list.is_empty() {
        return format!("<p class=\"empty\">{}</p>", bi("当前没有进行中的拍卖。", "No auction is running."));
    }
    let mut out = String::new();
    for s in list {
        let v = view::auction(s);
        let spec = &s.spec;
        let text = |key: &str| v[key].as_str().unwrap_or("").to_owned();
        let deadline = match (s.phase, &s.ascending, &s.clock) {
            (Phase::Scheduled, _, _) => countdown(spec.opens_at, "opens"),
            (_, Some(a), _) => countdown(a.deadline, if a.timed { "countdown" } else { "free_period_ends" }),
            (_, _, Some(c)) => countdown(c.round_ends_at, "round_ends"),
            _ => countdown(spec.closes_at, "closes"),
        };
        let cap = spec.prices.cap.map_or_else(|| bi("无上限", "no cap"), |c| esc(&c.to_string()));
        let _ = write!(
            out,
            "<article class=\"auction\" id=\"run-{id}\" data-format=\"{format}\">\
             <header><span class=\"pollutant\">{pollutant}</span> <span class=\"region\">{region}</span> \
             <span class=\"phase phase-{phase}\">{phase_label}</span></header>\
             <h3>{id} · {lot}</h3>\
             <dl>\
             <dt>{l_format}</dt><dd>{format_label}</dd>\
             <dt>{l_qty}</dt><dd>{qty} t</dd>\
             <dt>{l_floor}</dt><dd>{floor}</dd>\
             <dt>{l_cap}</dt><dd>{cap}</dd>\
             <dt>{l_close}</dt><dd>{close}</dd>",
            id = esc(&spec.id.to_string()),
            format = spec.format.code(),
            pollutant = bi(&text("pollutant_zh"), &text("pollutant_en")),
            region = bi(&text("region_zh"), &text("region_en")),
            phase = s.phase,
            phase_label = bi(&text("phase_zh"), &text("phase_en")),
            lot = esc(&spec.lot.id.to_string()),
            l_format = bi("方式", "format"),
            format_label = bi(&text("format_zh"), &text("format_en")),
            l_qty = bi("数量", "lot"),
            qty = esc(&spec.lot.quantity.to_string()),
            l_floor = bi("底价 元/吨", "floor, yuan/t"),
            floor = esc(&spec.prices.floor.to_string()),
            l_cap = bi("上限", "cap"),
            l_close = bi("截止时间", "closes at"),
            close = esc(&when(spec.closes_at)),
        );
        if let Some(a) = &s.ascending {
            let price = a.current_price.map_or_else(|| bi("尚无报价", "no bid yet"), |p| esc(&p.to_string()));
            let leader = a.leader.map_or_else(|| "—".to_owned(), |n| esc(&crate::grpc::convert::pseudonym(n)));
            let _ = write!(
                out,
                "<dt>{}</dt><dd class=\"price\">{price}</dd><dt>{}</dt><dd class=\"leader\">{leader}</dd>",
                bi("当前价", "current price"),
                bi("领先竞买号", "leading bidder"),
            );
        }
        if let Some(c) = &s.clock {
            let _ = write!(
                out,
                "<dt>{}</dt><dd>{}</dd><dt>{}</dt><dd class=\"price\">{}</dd>",
                bi("轮次", "round"),
                c.round,
                bi("时钟价", "clock price"),
                esc(&c.price.to_string()),
            );
        }
        if matches!(spec.format, Format::SealedFirstPrice | Format::SealedUniformPrice | Format::SealedPayAsBid) {
            let _ = write!(
                out,
                "<dt>{}</dt><dd>{}</dd>",
                bi("报价", "bids"),
                bi("密封，截止后公布", "sealed until the close")
            );
        }
        let _ = write!(out, "</dl>{deadline}</article>");
    }
    out
}

/// One published result.
pub fn result(recorded: &RecordedSettlement, snapshot: Option<&AuctionSnapshot>, bidders: Option<usize>) -> String {
    let v = view::settlement(recorded, snapshot, bidders);
    let s = &recorded.settlement;
    let text = |key: &str| v[key].as_str().unwrap_or("").to_owned();
    let mut out = String::new();
    let region = match (v["region_zh"].as_str(), v["region_en"].as_str()) {
        (Some(zh), Some(en)) => bi(zh, en),
        _ => String::new(),
    };
    let price = s.clearing_price.map_or_else(
        || if s.allocations.is_empty() { "—".to_owned() } else { bi("按各自报价", "pay as bid") },
        |p| esc(&p.to_string()),
    );
    let _ = write!(
        out,
        "<article class=\"result status-{status}\" id=\"result-{id}\">\
         <header><span class=\"pollutant\">{pollutant}</span> {region} \
         <span class=\"phase\">{status_label}</span></header>\
         <h3>{id} · {lot}</h3>\
         <dl><dt>{l_format}</dt><dd>{format}</dd>\
         <dt>{l_price}</dt><dd class=\"price\">{price}</dd>\
         <dt>{l_sold}</dt><dd>{sold} t</dd><dt>{l_unsold}</dt><dd>{unsold} t</dd>\
         <dt>{l_amount}</dt><dd>{amount}</dd><dt>{l_fees}</dt><dd>{bfee} / {sfee}</dd>",
        status = text("status_en"),
        id = esc(&s.auction_id.to_string()),
        pollutant = bi(&text("pollutant_zh"), &text("pollutant_en")),
        status_label = bi(&text("status_zh"), &text("status_en")),
        lot = esc(&s.lot_id.to_string()),
        l_format = bi("方式", "format"),
        format = bi(&text("format_zh"), &text("format_en")),
        l_price = bi("成交价 元/吨", "clearing price, yuan/t"),
        l_sold = bi("成交量", "sold"),
        sold = esc(&s.sold.to_string()),
        l_unsold = bi("未成交", "unsold"),
        unsold = esc(&s.unsold.to_string()),
        l_amount = bi("成交金额 元", "amount, yuan"),
        amount = esc(&s.total_amount.to_string()),
        l_fees = bi("手续费 买方/卖方", "fees buyer/seller"),
        bfee = esc(&s.total_buyer_fee.to_string()),
        sfee = esc(&s.total_seller_fee.to_string()),
    );
    if let Some(n) = bidders {
        let _ = write!(out, "<dt>{}</dt><dd>{n}</dd>", bi("竞买企业数", "bidders"));
    }
    if let Some(reason) = s.reason {
        let _ = write!(out, "<dt>{}</dt><dd><code>{}</code></dd>", bi("原因", "reason"), reason.code());
    }
    let _ = write!(out, "<dt>{}</dt><dd>{}</dd></dl>", bi("发布时间", "settled at"), esc(&when(s.settled_at)));
    if !s.allocations.is_empty() {
        let _ = write!(
            out,
            "<div class=\"scroll\"><table class=\"allocations\"><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>",
            bi("受让企业", "enterprise"),
            bi("数量 吨", "tonnes"),
            bi("单价", "unit price"),
            bi("金额", "amount"),
            bi("买方费", "buyer fee"),
            bi("卖方费", "seller fee"),
        );
        for a in &s.allocations {
            let _ = write!(
                out,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&a.bidder.to_string()),
                a.quantity,
                a.unit_price,
                a.amount,
                a.buyer_fee,
                a.seller_fee
            );
        }
        out.push_str("</tbody></table></div>");
    }
    let j = &recorded.journal;
    let _ = write!(
        out,
        "<p class=\"journal\">{} <a href=\"/settlements/{id}\">#{seq} · <code title=\"{hash}\">{short}…</code></a></p>",
        bi("日志记录", "journal record"),
        id = esc(&s.auction_id.to_string()),
        seq = j.seq,
        hash = esc(&j.hash),
        short = esc(j.hash.get(..16).unwrap_or(&j.hash)),
    );
    out.push_str("</article>");
    out
}

/// The page: header, running auctions, results; `results` newest first.
pub fn board(auctions: &str, results: &[std::sync::Arc<str>], now: Timestamp) -> String {
    let mut list = String::new();
    for r in results {
        list.push_str(r);
    }
    if results.is_empty() {
        list = format!("<p class=\"empty\" id=\"no-results\">{}</p>", bi("尚无成交结果。", "No results yet."));
    }
    format!(
        r#"<!doctype html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>排污权交易 实时竞价与结果公示 · Emission rights: live auctions and results</title>
<link rel="stylesheet" href="/assets/board.css">
</head>
<body data-server-now="{now}">
<header class="top">
<h1>排污权交易 实时竞价与结果公示<span class="en"> · Emission rights trading: live auctions and results</span></h1>
<nav><a href="/report">{report}</a> <a href="/metrics">{metrics}</a> <button id="lang" type="button" hidden>中文 / EN</button> <span id="live" class="live">{static_label}</span></nav>
</header>
<main>
<section><h2>{running_title}</h2><div id="running" class="cards">{auctions}</div></section>
<section><h2>{results_title}</h2><div id="results" class="cards">{list}</div></section>
</main>
<footer>{footer}</footer>
<script src="/assets/board.js"></script>
</body>
</html>
"#,
        now = millis(now),
        report = bi("统计报告", "statistics report"),
        metrics = bi("运行指标", "metrics"),
        static_label = bi("静态页面", "static page"),
        running_title = bi("正在进行的拍卖", "Auctions now running"),
        results_title = bi("成交结果（实时发布）", "Results, as they are published"),
        footer = bi(
            "价格单位：元/吨；数量：吨；密封竞价在截止前不公布任何报价信息。",
            "Prices in yuan per tonne, quantities in tonnes. Nothing about sealed bids is shown before the close."
        ),
    )
}
