//! Every reason code the server gives, in one enum. The engine, the service, authentication and
//! the gRPC mapping all name refusals (and failed or cancelled settlements) by a [`Reason`];
//! the gRPC layer sends [`Reason::code`] as `google.rpc.ErrorInfo.reason`. The API reference
//! (`docs/API.md`) lists the same table, and a test keeps the two in step.
//!
//! A code, once published, never changes meaning: clients switch on it.

use std::fmt;

macro_rules! reasons {
    ($($(#[doc = $doc:literal])* $variant:ident = $code:literal, $status:ident, $meaning:literal;)*) => {
        /// A stable, machine-readable reason code.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Reason {
            $($(#[doc = $doc])* $variant,)*
        }

        impl Reason {
            /// Every reason, in the order of the API reference.
            pub const ALL: &[Reason] = &[$(Reason::$variant),*];

            /// The code as clients see it, e.g. `BELOW_FLOOR`.
            pub const fn code(self) -> &'static str {
                match self {
                    $(Reason::$variant => $code,)*
                }
            }

            /// The gRPC status code this reason travels with (by name, e.g. `FAILED_PRECONDITION`;
            /// `NONE` for reasons that explain a settlement rather than refuse a call).
            pub const fn status(self) -> &'static str {
                match self {
                    $(Reason::$variant => stringify!($status),)*
                }
            }

            /// What it means, in one sentence, as the API reference gives it.
            pub const fn meaning(self) -> &'static str {
                match self {
                    $(Reason::$variant => $meaning,)*
                }
            }

            /// The reason with this code.
            pub fn from_code(code: &str) -> Option<Reason> {
                match code {
                    $($code => Some(Reason::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

reasons! {
    // Malformed requests.
    InvalidField = "INVALID_FIELD", INVALID_ARGUMENT,
        "A request field is malformed or missing; `field` names it.";
    MalformedMessage = "MALFORMED_MESSAGE", INVALID_ARGUMENT,
        "The request is not a valid protobuf message of its type (invalid UTF-8, a wrong wire type, truncated).";
    InvalidSpec = "INVALID_SPEC", INVALID_ARGUMENT,
        "The auction's terms contradict each other or policy; `field` names the term.";
    NotFillMultiple = "NOT_FILL_MULTIPLE", INVALID_ARGUMENT,
        "The quantity is not a whole number of the lot's fill unit (`fill_unit`).";
    WholeLotOnly = "WHOLE_LOT_ONLY", INVALID_ARGUMENT,
        "A single-lot auction takes bids for the whole lot only (`lot_quantity`).";
    QuantityRequired = "QUANTITY_REQUIRED", INVALID_ARGUMENT,
        "A divisible lot needs the quantity bid for; only single-lot auctions default to the whole lot.";
    PriceRequired = "PRICE_REQUIRED", INVALID_ARGUMENT,
        "This format needs a price; only fixed-price sales and clock auctions default it.";
    ZeroQuantity = "ZERO_QUANTITY", INVALID_ARGUMENT,
        "A quantity of zero is a clock auction's way to drop out; other formats need a positive one.";
    AmountOverflow = "AMOUNT_OVERFLOW", INVALID_ARGUMENT,
        "Price times quantity exceeds the largest amount the engine accepts (`max_amount`).";
    // Rules broken given the auction's state.
    AuctionNotOpen = "AUCTION_NOT_OPEN", FAILED_PRECONDITION,
        "Bidding has not started (`opens_at`).";
    AuctionClosed = "AUCTION_CLOSED", FAILED_PRECONDITION,
        "Bidding has ended (`closes_at`: the close, countdown or hard stop that ended it).";
    InvalidTransition = "INVALID_TRANSITION", FAILED_PRECONDITION,
        "The operator's action does not apply in the auction's phase (`phase`, `action`).";
    BelowFloor = "BELOW_FLOOR", FAILED_PRECONDITION,
        "The price is below the floor (`floor`); a bid exactly at the floor is accepted.";
    AboveCap = "ABOVE_CAP", FAILED_PRECONDITION,
        "The price is above the band's cap (`cap`); a bid exactly at the cap is accepted.";
    NotPostedPrice = "NOT_POSTED_PRICE", FAILED_PRECONDITION,
        "A fixed-price sale takes requests at its posted price only (`posted_price`).";
    BidTooLow = "BID_TOO_LOW", FAILED_PRECONDITION,
        "An ascending bid must reach `min_acceptable` (the start price, or `current_price` plus the increment).";
    AlreadyLeading = "ALREADY_LEADING", FAILED_PRECONDITION,
        "The bidder already holds the highest bid (`current_price`), or is already in the lottery at the cap.";
    CapReached = "CAP_REACHED", FAILED_PRECONDITION,
        "The price reached the cap (`cap`) and the first bidder there wins; no further bid counts.";
    RoundOver = "ROUND_OVER", FAILED_PRECONDITION,
        "The clock round ended (`round`, `ends_at`); state demand in the next round.";
    NotClockPrice = "NOT_CLOCK_PRICE", FAILED_PRECONDITION,
        "Demand is stated at the round's clock price (`clock_price`, `round`).";
    ActivityRule = "ACTIVITY_RULE", FAILED_PRECONDITION,
        "Demand may not rise above the last round's (`allowed_max`).";
    QuantityExceedsLot = "QUANTITY_EXCEEDS_LOT", FAILED_PRECONDITION,
        "One bid may not ask for more than the lot (`lot_quantity`).";
    BidderCapExceeded = "BIDDER_CAP_EXCEEDED", FAILED_PRECONDITION,
        "The bidder's active bids would exceed its cap (`cap_percent`, `cap`, `room_left`).";
    BidderTotalTooLarge = "BIDDER_TOTAL_TOO_LARGE", FAILED_PRECONDITION,
        "The bidder's active bids together would exceed the largest quantity one bidder may hold (`limit`, `room_left`).";
    BidExists = "BID_EXISTS", FAILED_PRECONDITION,
        "A single-lot sealed auction takes one bid per bidder; revise it instead.";
    BidIrrevocable = "BID_IRREVOCABLE", FAILED_PRECONDITION,
        "Bids in this auction cannot be revised or withdrawn (irrevocable terms, open bids, clock statements).";
    BidWithdrawn = "BID_WITHDRAWN", FAILED_PRECONDITION,
        "The bid was withdrawn and can no longer change.";
    NotRegistered = "NOT_REGISTERED", FAILED_PRECONDITION,
        "The bidder's enterprise is not in the registry; an operator registers it (AddEnterprise).";
    EnterpriseSuspended = "ENTERPRISE_SUSPENDED", FAILED_PRECONDITION,
        "The enterprise is suspended from trading (`status_reason`); bids it made before stand.";
    EnterpriseBlacklisted = "ENTERPRISE_BLACKLISTED", FAILED_PRECONDITION,
        "The enterprise is blacklisted (`status_reason`).";
    PermitMissing = "PERMIT_MISSING", FAILED_PRECONDITION,
        "The enterprise has no discharge permit on record.";
    PermitNotValid = "PERMIT_NOT_VALID", FAILED_PRECONDITION,
        "The discharge permit (`valid_from`, `valid_until`) does not cover the time from the bid to the close (`close_date`).";
    IndustryNotAdmitted = "INDUSTRY_NOT_ADMITTED", FAILED_PRECONDITION,
        "The enterprise's industry (`industry`) is not in an admitted GB/T 4754 section (`admitted_sections`).";
    RegionRestricted = "REGION_RESTRICTED", FAILED_PRECONDITION,
        "Buyers in the enterprise's region may not buy this lot (`buyer_region`, `lot_region`, `rule`: own_region, same_city or same_basin).";
    DepositInsufficient = "DEPOSIT_INSUFFICIENT", FAILED_PRECONDITION,
        "The enterprise's deposit (`deposit`) does not cover what the auction requires (`required`) and its exposure with this bid (`exposure`: the largest, over its bid prices p, of p x its quantity bid at prices >= p); `missing` is the shortfall.";
    BidsSealed = "BIDS_SEALED", FAILED_PRECONDITION,
        "Bids stay sealed until the auction concludes (`closes_at`).";
    BookFull = "BOOK_FULL", FAILED_PRECONDITION,
        "The auction holds as many bids as one book can.";
    TooManyBids = "TOO_MANY_BIDS", FAILED_PRECONDITION,
        "The bidder has placed as many bids in this auction as the server allows one bidder (`limit`).";
    DuplicateBidId = "DUPLICATE_BID_ID", ABORTED,
        "The server drew a bid id already in use; it draws again, so clients never see this.";
    NotSettled = "NOT_SETTLED", FAILED_PRECONDITION,
        "The auction has not concluded yet (`closes_at`).";
    // Unknown things, and things that already exist.
    AuctionNotFound = "AUCTION_NOT_FOUND", NOT_FOUND,
        "No auction has this id (`auction_id`).";
    BidNotFound = "BID_NOT_FOUND", NOT_FOUND,
        "The caller has no bid with this id in this auction (another bidder's bid looks the same).";
    EnterpriseNotFound = "ENTERPRISE_NOT_FOUND", NOT_FOUND,
        "No enterprise with this credit code is in the registry (`enterprise`).";
    LotOnSale = "LOT_ON_SALE", ALREADY_EXISTS,
        "The lot is on sale in another auction that has not concluded (`auction_id`).";
    LotSold = "LOT_SOLD", ALREADY_EXISTS,
        "The lot was sold in a settled auction and cannot be offered again (`auction_id`).";
    EnterpriseExists = "ENTERPRISE_EXISTS", ALREADY_EXISTS,
        "An enterprise with this credit code is already registered (`enterprise`); update it instead.";
    RequestIdReused = "REQUEST_ID_REUSED", ALREADY_EXISTS,
        "The request id was used before for a different request (`request_id`).";
    // Identity and role.
    Unauthenticated = "UNAUTHENTICATED", UNAUTHENTICATED,
        "No token, a malformed `authorization` header, or an unknown token.";
    RoleNotAllowed = "ROLE_NOT_ALLOWED", PERMISSION_DENIED,
        "The caller's role may not make this call (`role`).";
    NoEnterprise = "NO_ENTERPRISE", PERMISSION_DENIED,
        "A bidder token that acts for no enterprise cannot bid.";
    // Load, streams and the server's own trouble.
    RateLimited = "RATE_LIMITED", RESOURCE_EXHAUSTED,
        "The principal made changing calls faster than its rate limit; retry after `retry_after_ms` with the same request id.";
    AuctionBusy = "AUCTION_BUSY", RESOURCE_EXHAUSTED,
        "Too many requests wait for this auction; retry shortly with the same request id.";
    WatcherTooSlow = "WATCHER_TOO_SLOW", RESOURCE_EXHAUSTED,
        "A watcher fell behind the auction's updates; watch again with `after_sequence`.";
    SubscriberTooSlow = "SUBSCRIBER_TOO_SLOW", RESOURCE_EXHAUSTED,
        "A subscriber fell behind the settlement stream; subscribe again from `resume_from`.";
    ShuttingDown = "SHUTTING_DOWN", UNAVAILABLE,
        "The server is stopping; retry against the restarted server with the same request id.";
    JournalUnavailable = "JOURNAL_UNAVAILABLE", UNAVAILABLE,
        "The journal failed; nothing more is accepted until the server restarts.";
    AuctionFailed = "AUCTION_FAILED", INTERNAL,
        "The auction's task stopped on an internal error (`auction_id`); it answers nothing until a restart.";
    // Why a settlement sold nothing.
    NoBids = "NO_BIDS", NONE,
        "Settlement: no valid bids (流拍).";
    TooFewBidders = "TOO_FEW_BIDDERS", NONE,
        "Settlement: fewer bidders than the auction's minimum (流拍).";
    Undersubscribed = "UNDERSUBSCRIBED", NONE,
        "Settlement: demand fell short of supply under the CANCEL policy.";
    CancelledByOperator = "CANCELLED_BY_OPERATOR", NONE,
        "Settlement: the operator cancelled the auction.";
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl std::str::FromStr for Reason {
    type Err = String;

    fn from_str(code: &str) -> Result<Reason, String> {
        Reason::from_code(code).ok_or_else(|| format!("unknown reason code {code}"))
    }
}

impl serde::Serialize for Reason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

impl<'de> serde::Deserialize<'de> for Reason {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        super::from_text(d)
    }
}

impl Reason {
    /// The reference table in Markdown, as `docs/API.md` carries it.
    pub fn markdown_table() -> String {
        let mut out = String::from("| code | status | meaning |\n|---|---|---|\n");
        for reason in Reason::ALL {
            out.push_str(&format!("| `{}` | {} | {} |\n", reason.code(), reason.status(), reason.meaning()));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The API reference lists exactly these codes, with the same status and meaning.
    #[test]
    fn the_api_reference_lists_every_reason() {
        let doc = include_str!("../../docs/API.md");
        assert!(
            doc.contains(&Reason::markdown_table()),
            "docs/API.md is out of step with Reason; regenerate its table"
        );
    }

    #[test]
    #[ignore = "prints the table for docs/API.md"]
    fn print_markdown_table() {
        print!("{}", Reason::markdown_table());
    }

    #[test]
    fn codes_are_unique_and_round_trip() {
        let mut seen = std::collections::BTreeSet::new();
        for reason in Reason::ALL {
            assert!(seen.insert(reason.code()), "{} twice", reason.code());
            assert_eq!(Reason::from_code(reason.code()), Some(*reason));
        }
    }
}
