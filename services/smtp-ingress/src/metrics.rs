//! The ingress's metrics, with the names of the reference documents
//! (`smtp_messages_received_total`, `smtp_messages_rejected_total`, `auth_failures_total`).

use std::time::Duration;

use ferrymail_telemetry::Metrics;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabel {
    stage: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimiterLabel {
    limiter: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DnsblLabels {
    zone: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FilterLabels {
    filter: String,
    stage: &'static str,
    action: &'static str,
}

/// Every ingress metric.
#[derive(Clone)]
pub struct IngressMetrics {
    received: Counter,
    rejected: Family<ReasonLabel, Counter>,
    auth_failures: Counter,
    sessions: Gauge,
    tls_sessions: Counter,
    bytes: Counter,
    stage: Family<StageLabel, Histogram>,
    dnsbl_lookups: Family<DnsblLabels, Counter>,
    dnsbl_rejections: Family<StageLabel, Counter>,
    filter_actions: Family<FilterLabels, Counter>,
    limiter_refused: Family<LimiterLabel, Counter>,
    limiter_unavailable: Family<LimiterLabel, Counter>,
}

impl IngressMetrics {
    /// Creates and registers the metrics.
    pub fn register(metrics: &Metrics) -> Self {
        let this = Self {
            received: Counter::default(),
            rejected: Family::default(),
            auth_failures: Counter::default(),
            sessions: Gauge::default(),
            tls_sessions: Counter::default(),
            bytes: Counter::default(),
            stage: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0005, 4.0, 10))
            }),
            dnsbl_lookups: Family::default(),
            dnsbl_rejections: Family::default(),
            filter_actions: Family::default(),
            limiter_refused: Family::default(),
            limiter_unavailable: Family::default(),
        };
        metrics.register(
            "smtp_messages_received_total",
            "Messages accepted and made durable (answered 250)",
            this.received.clone(),
        );
        metrics.register(
            "smtp_messages_rejected_total",
            "Commands refused, by reason (relay, unknown_user, mailbox, rule, size, limit, temporary, auth, syntax)",
            this.rejected.clone(),
        );
        metrics.register(
            "auth_failures_total",
            "Failed AUTH attempts",
            this.auth_failures.clone(),
        );
        metrics.register(
            "smtp_sessions_active",
            "SMTP and LMTP sessions open now",
            this.sessions.clone(),
        );
        metrics.register(
            "smtp_tls_sessions_total",
            "Sessions that negotiated TLS",
            this.tls_sessions.clone(),
        );
        metrics.register(
            "smtp_received_bytes_total",
            "Message bytes received",
            this.bytes.clone(),
        );
        metrics.register(
            "smtp_stage_duration_seconds",
            "Time to answer a session stage (rcpt, data, auth)",
            this.stage.clone(),
        );
        metrics.register(
            "smtp_dnsbl_lookups_total",
            "DNS blocklist answers, by zone and result (listed, not_listed, error_answer, failed)",
            this.dnsbl_lookups.clone(),
        );
        metrics.register(
            "smtp_dnsbl_rejections_total",
            "Clients refused by DNS blocklists, by stage (connect, ehlo, mail)",
            this.dnsbl_rejections.clone(),
        );
        metrics.register(
            "smtp_filter_actions_total",
            "Answers of milters and MTA hooks, by filter, stage and action",
            this.filter_actions.clone(),
        );
        metrics.register(
            "ingress_limiter_refused_total",
            "Connections and commands refused by an inbound limiter (queue.limiter.inbound.<id>), by limiter",
            this.limiter_refused.clone(),
        );
        metrics.register(
            "ingress_limiter_unavailable_total",
            "Connections and commands let through because an inbound limiter's counters could not be reached, by limiter",
            this.limiter_unavailable.clone(),
        );
        // Served at 0 before the first refusal, so that a rate can be taken from the start.
        for stage in ["connect", "ehlo", "mail"] {
            drop(this.dnsbl_rejections.get_or_create(&StageLabel { stage }));
        }
        this
    }

    pub(crate) fn received(&self, bytes: u64) {
        self.received.inc();
        self.bytes.inc_by(bytes);
    }
    pub(crate) fn rejected(&self, reason: &'static str) {
        self.rejected.get_or_create(&ReasonLabel { reason }).inc();
    }
    pub(crate) fn auth_failure(&self) {
        self.auth_failures.inc();
    }
    pub(crate) fn session_opened(&self) {
        self.sessions.inc();
    }
    pub(crate) fn session_closed(&self) {
        self.sessions.dec();
    }
    pub(crate) fn tls(&self) {
        self.tls_sessions.inc();
    }
    pub(crate) fn stage(&self, stage: &'static str, took: Duration) {
        self.stage
            .get_or_create(&StageLabel { stage })
            .observe(took.as_secs_f64());
    }
    pub(crate) fn dnsbl_lookup(&self, zone: &str, result: &'static str) {
        self.dnsbl_lookups
            .get_or_create(&DnsblLabels {
                zone: zone.to_owned(),
                result,
            })
            .inc();
    }
    /// A filter's answer at a stage.
    pub(crate) fn filter_action(&self, filter: &str, stage: &'static str, action: &'static str) {
        self.filter_actions
            .get_or_create(&FilterLabels {
                filter: filter.to_owned(),
                stage,
                action,
            })
            .inc();
    }
    pub(crate) fn dnsbl_rejection(&self, stage: &'static str) {
        self.dnsbl_rejections
            .get_or_create(&StageLabel { stage })
            .inc();
    }
    pub(crate) fn limiter_refused(&self, limiter: &str) {
        self.limiter_refused
            .get_or_create(&LimiterLabel {
                limiter: limiter.to_owned(),
            })
            .inc();
    }
    pub(crate) fn limiter_unavailable(&self, limiter: &str) {
        self.limiter_unavailable
            .get_or_create(&LimiterLabel {
                limiter: limiter.to_owned(),
            })
            .inc();
    }
    /// Serves the limiter series of `limiters` at 0 before their first event, so that a
    /// rate can be taken from the start.
    pub(crate) fn limiters_configured<'a>(&self, limiters: impl Iterator<Item = &'a String>) {
        for limiter in limiters {
            let label = LimiterLabel {
                limiter: limiter.clone(),
            };
            drop(self.limiter_refused.get_or_create(&label));
            drop(self.limiter_unavailable.get_or_create(&label));
        }
    }
}
