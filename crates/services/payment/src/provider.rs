//! SIMULATED payment provider: a stand-in for the outside party (a real PSP) that cannot
//! run here. Its rules are fixed and documented so tests and load runs can choose an
//! outcome:
//! - an amount above the limit (`MALL_PAYMENT_LIMIT_KRW`, default 5,000,000 KRW) is
//!   declined: "amount exceeds the card limit";
//! - an amount whose last three digits are 402 (e.g. 10,402 KRW) is declined as the test
//!   card that always fails: "card declined by the issuer";
//! - everything else is authorised.
//!
//! It answers after `MALL_PAYMENT_LATENCY_MS` (default 0), like a provider's round trip.

/// What the provider says to a charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Authorized,
    Declined(String),
}

/// Last three digits of an amount that always declines.
pub const DECLINING_SUFFIX: u64 = 402;

pub fn decide(amount: u64, limit: u64) -> Verdict {
    if amount > limit {
        Verdict::Declined("amount exceeds the card limit".into())
    } else if amount % 1_000 == DECLINING_SUFFIX {
        Verdict::Declined("card declined by the issuer".into())
    } else {
        Verdict::Authorized
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_rules_decide() {
        assert_eq!(decide(89_000, 5_000_000), Verdict::Authorized);
        assert_eq!(decide(5_000_000, 5_000_000), Verdict::Authorized);
        assert!(
            matches!(decide(5_000_001, 5_000_000), Verdict::Declined(r) if r.contains("limit"))
        );
        assert!(matches!(decide(10_402, 5_000_000), Verdict::Declined(r) if r.contains("issuer")));
    }
}
