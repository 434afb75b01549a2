//! What outbound delivery counts: DANE checks of MX hosts and MTA-STS policy checks of MX
//! deliveries. Registered under the queue's names (`queue_dane_checks_total`,
//! `queue_mta_sts_policies_total`), which dashboards and alerts use.

use ferrymail_telemetry::Metrics;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

/// The outcomes of `queue_mta_sts_policies_total`, served from the start (at 0).
const MTA_STS_OUTCOMES: [&str; 7] = [
    "enforce",
    "testing",
    "none",
    "absent",
    "unavailable",
    "enforce_mismatch",
    "testing_mismatch",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DaneLabel {
    result: &'static str,
}

/// What DANE (`queue.outbound.tls.dane`) came to for one MX host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DaneResult {
    /// The host's certificate matched its TLSA records.
    Verified,
    /// The host had usable TLSA records and did not satisfy them (no STARTTLS, no match).
    Failed,
    /// No TLSA record (NXDOMAIN or NODATA): STARTTLS policy as usual.
    NoRecords,
    /// Secure TLSA records, none usable for SMTP (PKIX usages).
    Unusable,
    /// The MX, address or TLSA answers were not DNSSEC-secure.
    Insecure,
    /// A lookup failed temporarily: the host was skipped.
    LookupFailed,
}

impl DaneResult {
    const ALL: [DaneResult; 6] = [
        DaneResult::Verified,
        DaneResult::Failed,
        DaneResult::NoRecords,
        DaneResult::Unusable,
        DaneResult::Insecure,
        DaneResult::LookupFailed,
    ];

    fn label(self) -> &'static str {
        match self {
            DaneResult::Verified => "verified",
            DaneResult::Failed => "failed",
            DaneResult::NoRecords => "no_records",
            DaneResult::Unusable => "unusable",
            DaneResult::Insecure => "insecure",
            DaneResult::LookupFailed => "lookup_failed",
        }
    }
}

/// Outbound delivery's counters.
#[derive(Clone, Debug, Default)]
pub struct OutboundMetrics {
    dane: Family<DaneLabel, Counter>,
    mta_sts: Family<OutcomeLabel, Counter>,
}

impl OutboundMetrics {
    /// Creates and registers the counters; every label is served from the start (at 0), so
    /// that rates and alerts see it.
    pub fn register(metrics: &Metrics) -> Self {
        let this = Self::default();
        metrics.register(
            "queue_dane_checks_total",
            "DANE checks of MX hosts by result (verified, failed, no_records, unusable, insecure, lookup_failed)",
            this.dane.clone(),
        );
        for result in DaneResult::ALL {
            drop(this.dane.get_or_create(&DaneLabel {
                result: result.label(),
            }));
        }
        metrics.register(
            "queue_mta_sts_policies_total",
            "MTA-STS policy checks of MX deliveries by outcome (enforce, testing, none: the policy's mode; absent; unavailable: not obtained and none cached; enforce_mismatch: no MX host allowed; testing_mismatch: a testing policy would refuse some)",
            this.mta_sts.clone(),
        );
        for outcome in MTA_STS_OUTCOMES {
            drop(this.mta_sts.get_or_create(&OutcomeLabel { outcome }));
        }
        this
    }

    /// Counts one DANE check that came to `result`.
    pub(crate) fn dane(&self, result: DaneResult) {
        self.dane
            .get_or_create(&DaneLabel {
                result: result.label(),
            })
            .inc();
    }

    /// Counts one MTA-STS policy check with `outcome`.
    pub(crate) fn mta_sts(&self, outcome: &'static str) {
        self.mta_sts.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    /// MTA-STS policy checks with `outcome` so far.
    pub fn mta_sts_checks(&self, outcome: &'static str) -> u64 {
        self.mta_sts.get_or_create(&OutcomeLabel { outcome }).get()
    }
}
