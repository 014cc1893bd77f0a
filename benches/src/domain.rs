//! The benchmark's domain: a ledger whose one event has a JSON payload of about 200
//! bytes.

use std::convert::Infallible;

use eventsource::{Aggregate, Apply, event};
use serde::{Deserialize, Serialize};

/// A payment was made: about 200 bytes of JSON.
#[event(name = "payment.made")]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentMade {
    /// Paying account.
    pub from: String,
    /// Receiving account.
    pub to: String,
    /// Cents.
    pub amount: u64,
    /// ISO currency.
    pub currency: String,
    /// Payment reference.
    pub reference: String,
    /// Free text.
    pub memo: String,
}

impl PaymentMade {
    /// The `n`th payment.
    pub fn nth(n: u64) -> Self {
        PaymentMade {
            from: format!("DE89 3704 0044 0532 {:04}", n % 10_000),
            to: "GB29 NWBK 6016 1331 9268 19".into(),
            amount: 1_000 + n % 977,
            currency: "EUR".into(),
            reference: format!("INV-2026-{n:08}"),
            memo: "monthly subscription, thank you for your business".into(),
        }
    }
}

/// The aggregate: the fold of its payments.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize, Aggregate)]
#[aggregate(name = "ledger", events(PaymentMade))]
pub struct Ledger {
    /// Sum of the amounts.
    pub total: u64,
    /// Number of payments.
    pub count: u64,
}

impl Apply<PaymentMade> for Ledger {
    fn apply(&mut self, e: &PaymentMade) {
        fold(self, e);
    }
}

/// The fold, shared by eventsource and the raw side so both do the same work.
pub fn fold(ledger: &mut Ledger, e: &PaymentMade) {
    ledger.total += e.amount;
    ledger.count += 1;
}

impl Ledger {
    /// The command handler: always accepts.
    ///
    /// # Errors
    /// Never.
    #[allow(clippy::unnecessary_wraps)] // handlers return `Result`
    pub fn pay(&self, n: u64) -> Result<PaymentMade, Infallible> {
        Ok(PaymentMade::nth(n + self.count))
    }
}
