//! The queue's metrics: the reference documents' `queue_messages_total` (messages waiting to
//! be delivered: a gauge, as the reference describes it), messages enqueued, recipients by
//! state, the oldest message's age, and delivery attempts by result. Labels are bounded:
//! states and results, never an address.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferrymail_rpc::queue::QueueService;
use ferrymail_telemetry::Metrics;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

use ferrymail_outbound::{OutboundMetrics, Outcome};

use crate::model::keys::ReportKind;

/// How often the gauges are read from the store's counters.
const REFRESH: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NextHopLabel {
    next_hop: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// Every queue metric.
#[derive(Clone, Debug)]
pub struct QueueMetrics {
    enqueued: Counter,
    messages: Gauge,
    recipients: Family<StateLabel, Gauge>,
    bytes: Gauge,
    oldest: Gauge,
    deliveries: Family<ResultLabel, Counter>,
    outbound: OutboundMetrics,
    delivery_time: Family<NextHopLabel, Histogram>,
    shards: Gauge,
    takeovers: Counter,
    time_in_queue: Histogram,
    overdue: Gauge,
    deferred: Family<ReasonLabel, Counter>,
    suspended: Gauge,
    paused: Gauge,
    events: EventMetrics,
    dmarc: ReportMetrics,
    tls_reports: ReportMetrics,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

/// The names and help texts of one kind of report's metrics.
struct ReportMetricNames {
    recorded: (&'static str, &'static str),
    sent: (&'static str, &'static str),
    dns_failures: (&'static str, &'static str),
    dropped: (&'static str, &'static str, &'static [&'static str]),
    refused: (&'static str, &'static str, &'static [&'static str]),
}

const DMARC_METRICS: ReportMetricNames = ReportMetricNames {
    recorded: (
        "dmarc_evaluations_recorded_total",
        "DMARC evaluations of accepted mail recorded for aggregate reports, by outcome (counted in a row; left_out: the period's rows were full, report.dmarc.aggregate.max-records)",
    ),
    sent: (
        "dmarc_reports_sent_total",
        "DMARC aggregate reports queued by this process",
    ),
    dns_failures: (
        "dmarc_report_dns_failures_total",
        "DNS failures looking up a domain's rua at report time; the report is tried again later",
    ),
    dropped: (
        "dmarc_reports_dropped_total",
        "DMARC aggregate reports not sent, by reason (no_record: no DMARC record with a rua any more; no_destination: no destination authorized or large enough; dns: DNS kept failing; too_large: larger than max-size)",
        &["no_record", "no_destination", "dns", "too_large"],
    ),
    refused: (
        "dmarc_report_destinations_refused_total",
        "rua destinations a report was not sent to, by reason (unauthorized: an external destination without its _report._dmarc record; too_large: over the URI's size limit)",
        &["unauthorized", "too_large"],
    ),
};

const TLS_METRICS: ReportMetricNames = ReportMetricNames {
    recorded: (
        "tls_results_recorded_total",
        "TLS results of MX sessions recorded for SMTP TLS reports, by outcome (counted in a row; left_out: the period's rows were full, report.tls.aggregate.max-records)",
    ),
    sent: (
        "tls_reports_sent_total",
        "SMTP TLS reports queued (mailto:) or posted (https:) by this process",
    ),
    dns_failures: (
        "tls_report_dns_failures_total",
        "DNS failures looking up a domain's _smtp._tls record at report time; the report is tried again later",
    ),
    dropped: (
        "tls_reports_dropped_total",
        "SMTP TLS reports not sent, by reason (no_record: no _smtp._tls record with a valid rua; no_destination: no rua destination usable; dns: DNS kept failing; unreachable: every https: endpoint kept failing; too_large: larger than max-size)",
        &[
            "no_record",
            "no_destination",
            "dns",
            "unreachable",
            "too_large",
        ],
    ),
    refused: (
        "tls_report_destinations_refused_total",
        "rua destinations a TLS report was not sent to, by reason (malformed: not a mailto: or https: URI; unreachable: the HTTPS endpoint failed, tried again later)",
        &["malformed", "unreachable"],
    ),
};

/// The metrics of one kind of aggregate report.
#[derive(Clone, Debug, Default)]
struct ReportMetrics {
    recorded: Family<OutcomeLabel, Counter>,
    sent: Counter,
    dns_failures: Counter,
    dropped: Family<ReasonLabel, Counter>,
    refused: Family<ReasonLabel, Counter>,
}

impl ReportMetrics {
    fn register(&self, metrics: &Metrics, names: &ReportMetricNames) {
        for outcome in ["counted", "left_out"] {
            self.recorded
                .get_or_create(&OutcomeLabel { outcome })
                .inc_by(0);
        }
        metrics.register(names.recorded.0, names.recorded.1, self.recorded.clone());
        metrics.register(names.sent.0, names.sent.1, self.sent.clone());
        let (name, help) = names.dns_failures;
        metrics.register(name, help, self.dns_failures.clone());
        for (family, (name, help, reasons)) in [
            (&self.dropped, names.dropped),
            (&self.refused, names.refused),
        ] {
            for &reason in reasons {
                family.get_or_create(&ReasonLabel { reason }).inc_by(0);
            }
            metrics.register(name, help, family.clone());
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookLabel {
    webhook: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookFailureLabel {
    webhook: String,
    reason: &'static str,
}

/// The metrics of delivery events, by webhook (ids from the configuration: bounded).
#[derive(Clone, Debug, Default)]
struct EventMetrics {
    depth: Family<WebhookLabel, Gauge>,
    oldest: Family<WebhookLabel, Gauge>,
    sent: Family<WebhookLabel, Counter>,
    failures: Family<WebhookFailureLabel, Counter>,
    dropped: Family<WebhookLabel, Counter>,
}

impl EventMetrics {
    fn register(&self, metrics: &Metrics) {
        metrics.register(
            "queue_events_outbox_depth",
            "Delivery events waiting in the store's outbox for a webhook (the whole outbox, read every second)",
            self.depth.clone(),
        );
        metrics.register(
            "queue_events_outbox_oldest_age_seconds",
            "Age of the oldest delivery event waiting for a webhook (0 when none)",
            self.oldest.clone(),
        );
        metrics.register(
            "queue_events_sent_total",
            "Delivery events a webhook answered 2xx for, sent by this process",
            self.sent.clone(),
        );
        metrics.register(
            "queue_events_send_failures_total",
            "Failed webhook requests of this process by reason (connect, tls, timeout, http, status_3xx, status_4xx, status_5xx, url); their events stay in the outbox",
            self.failures.clone(),
        );
        metrics.register(
            "queue_events_dropped_total",
            "Delivery events dropped because the webhook's outbox was full (queue.events.outbox.max-size)",
            self.dropped.clone(),
        );
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

impl QueueMetrics {
    /// Creates and registers the metrics.
    pub fn register(metrics: &Metrics) -> Self {
        let this = Self {
            enqueued: Counter::default(),
            messages: Gauge::default(),
            recipients: Family::default(),
            bytes: Gauge::default(),
            oldest: Gauge::default(),
            deliveries: Family::default(),
            outbound: OutboundMetrics::register(metrics),
            delivery_time: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.005, 3.0, 10))
            }),
            shards: Gauge::default(),
            takeovers: Counter::default(),
            // 1 s to about 3 days, ×4 per bucket.
            time_in_queue: Histogram::new(exponential_buckets(1.0, 4.0, 10)),
            overdue: Gauge::default(),
            deferred: Family::default(),
            suspended: Gauge::default(),
            paused: Gauge::default(),
            events: EventMetrics::default(),
            dmarc: ReportMetrics::default(),
            tls_reports: ReportMetrics::default(),
        };
        this.events.register(metrics);
        this.dmarc.register(metrics, &DMARC_METRICS);
        this.tls_reports.register(metrics, &TLS_METRICS);
        metrics.register(
            "queue_messages_enqueued_total",
            "Messages enqueued (made durable) by this process",
            this.enqueued.clone(),
        );
        // A gauge despite its suffix: the reference documents name the queue's depth so, and
        // alerts written from them compare it with a threshold.
        metrics.register(
            "queue_messages_total",
            "Messages waiting to be delivered, in the whole queue (read from the store every 10 s)",
            this.messages.clone(),
        );
        metrics.register(
            "queue_recipients",
            "Recipients of held messages by state (pending, delivered, temp_failed, perm_failed, cancelled)",
            this.recipients.clone(),
        );
        metrics.register(
            "queue_bytes",
            "Body bytes held in the queue",
            this.bytes.clone(),
        );
        metrics.register(
            "queue_oldest_message_age_seconds",
            "Age of the oldest message in the queue (0 when empty)",
            this.oldest.clone(),
        );
        metrics.register(
            "queue_deliveries_total",
            "Delivery attempts per recipient by result (delivered, temp_failed, perm_failed; throttled: held back by queue.throttle, not attempted; abandoned: given up before the next hop took the message, as the lease could not be kept)",
            this.deliveries.clone(),
        );
        metrics.register(
            "queue_delivery_duration_seconds",
            "Time to deliver one message to a next hop (remote/<id>, or mx for the recipients' MX hosts)",
            this.delivery_time.clone(),
        );
        metrics.register(
            "queue_scheduler_shards",
            "Due-index shards this scheduler reads (shared among the live schedulers)",
            this.shards.clone(),
        );
        metrics.register(
            "queue_lease_takeovers_total",
            "Message leases taken over after their holder stopped renewing them (a scheduler died or paused)",
            this.takeovers.clone(),
        );
        metrics.register(
            "queue_time_in_queue_seconds",
            "Time from arrival to leaving the queue (every recipient delivered, failed or cancelled), per message removed by this scheduler",
            this.time_in_queue.clone(),
        );
        metrics.register(
            "queue_oldest_due_age_seconds",
            "How long the longest-waiting due message of this scheduler's shards has been due at its last read (0 when none): the delivery backlog",
            this.overdue.clone(),
        );
        // Served at zero from the start, so that a rate over them has a base.
        for reason in ["paused", "suspended"] {
            this.deferred
                .get_or_create(&ReasonLabel { reason })
                .inc_by(0);
        }
        metrics.register(
            "queue_deferred_total",
            "Recipients deferred without an attempt and without a connection, by reason (paused: a paused destination; suspended: a dead destination)",
            this.deferred.clone(),
        );
        metrics.register(
            "queue_destinations_suspended",
            "Destinations suspended after failed connections, in the whole queue (read from the store every 10 s)",
            this.suspended.clone(),
        );
        metrics.register(
            "queue_destinations_paused",
            "Pauses in force (destinations, or the whole queue), read from the store every 10 s",
            this.paused.clone(),
        );
        this
    }

    /// A set that goes nowhere, for tests and tools.
    pub fn unregistered() -> Self {
        Self::register(&Metrics::new("test"))
    }

    pub(crate) fn enqueued(&self) {
        self.enqueued.inc();
    }

    /// The metrics of `kind`'s reports.
    fn reports(&self, kind: ReportKind) -> &ReportMetrics {
        match kind {
            ReportKind::Dmarc => &self.dmarc,
            ReportKind::Tls => &self.tls_reports,
        }
    }

    /// A result recorded for `kind`'s reports: counted in a row, or left out past the bound.
    pub(crate) fn report_recorded(&self, kind: ReportKind, counted: bool) {
        let outcome = if counted { "counted" } else { "left_out" };
        self.reports(kind)
            .recorded
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }

    /// A report of `kind` queued or posted.
    pub(crate) fn report_sent(&self, kind: ReportKind) {
        self.reports(kind).sent.inc();
    }

    /// DMARC aggregate reports queued by this process so far.
    pub fn dmarc_reports_sent(&self) -> u64 {
        self.dmarc.sent.get()
    }

    /// SMTP TLS reports queued or posted by this process so far.
    pub fn tls_reports_sent(&self) -> u64 {
        self.tls_reports.sent.get()
    }

    /// A DNS failure at report time.
    pub(crate) fn report_dns_failure(&self, kind: ReportKind) {
        self.reports(kind).dns_failures.inc();
    }

    /// A report of `kind` dropped for `reason`.
    pub(crate) fn report_dropped(&self, kind: ReportKind, reason: &'static str) {
        self.reports(kind)
            .dropped
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// A destination of `kind`'s report refused for `reason`.
    pub(crate) fn report_destination_refused(&self, kind: ReportKind, reason: &'static str) {
        self.reports(kind)
            .refused
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    pub(crate) fn lease_takeover(&self) {
        self.takeovers.inc();
    }

    /// Leases taken over by this process so far.
    pub fn lease_takeovers(&self) -> u64 {
        self.takeovers.get()
    }

    pub(crate) fn left_queue(&self, time_in_queue: Duration) {
        self.time_in_queue.observe(time_in_queue.as_secs_f64());
    }

    pub(crate) fn overdue(&self, longest: Duration) {
        self.overdue
            .set(i64::try_from(longest.as_secs()).unwrap_or(i64::MAX));
    }

    /// What outbound delivery counts (DANE and MTA-STS checks).
    pub fn outbound(&self) -> &OutboundMetrics {
        &self.outbound
    }

    /// MTA-STS policy checks with `outcome` so far.
    pub fn mta_sts_checks(&self, outcome: &'static str) -> u64 {
        self.outbound.mta_sts_checks(outcome)
    }

    /// Counts `count` recipients deferred for `reason` (`paused`, `suspended`).
    pub(crate) fn deferred(&self, reason: &'static str, count: usize) {
        if count > 0 {
            let count = u64::try_from(count).unwrap_or(u64::MAX);
            self.deferred
                .get_or_create(&ReasonLabel { reason })
                .inc_by(count);
        }
    }

    /// Recipients deferred for `reason` by this process so far.
    pub fn deferred_count(&self, reason: &'static str) -> u64 {
        self.deferred.get_or_create(&ReasonLabel { reason }).get()
    }

    /// Serves the counters of `webhook` at zero, so that a rate over them has a base.
    pub(crate) fn events_webhook(&self, webhook: &str, reasons: &[&'static str]) {
        let label = WebhookLabel {
            webhook: webhook.to_owned(),
        };
        self.events.sent.get_or_create(&label).inc_by(0);
        self.events.dropped.get_or_create(&label).inc_by(0);
        for &reason in reasons {
            let webhook = webhook.to_owned();
            self.events
                .failures
                .get_or_create(&WebhookFailureLabel { webhook, reason })
                .inc_by(0);
        }
    }

    /// Counts `count` events for `webhook` dropped on a full outbox.
    pub(crate) fn events_dropped(&self, webhook: &str, count: u64) {
        let webhook = webhook.to_owned();
        self.events
            .dropped
            .get_or_create(&WebhookLabel { webhook })
            .inc_by(count);
    }

    /// Counts `count` events `webhook` took.
    pub(crate) fn events_sent(&self, webhook: &str, count: u64) {
        let webhook = webhook.to_owned();
        self.events
            .sent
            .get_or_create(&WebhookLabel { webhook })
            .inc_by(count);
    }

    /// Counts a failed request to `webhook`.
    pub(crate) fn events_send_failed(&self, webhook: &str, reason: &'static str) {
        let webhook = webhook.to_owned();
        self.events
            .failures
            .get_or_create(&WebhookFailureLabel { webhook, reason })
            .inc();
    }

    /// Sets the count and the oldest event's age of `webhook`'s outbox.
    pub(crate) fn events_outbox(&self, webhook: &str, depth: u64, oldest: Duration) {
        let label = WebhookLabel {
            webhook: webhook.to_owned(),
        };
        let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.events.depth.get_or_create(&label).set(gauge(depth));
        self.events
            .oldest
            .get_or_create(&label)
            .set(gauge(oldest.as_secs()));
    }

    /// Events sent to `webhook` by this process so far.
    pub fn events_sent_count(&self, webhook: &str) -> u64 {
        let webhook = webhook.to_owned();
        self.events
            .sent
            .get_or_create(&WebhookLabel { webhook })
            .get()
    }

    /// Events for `webhook` dropped by this process so far.
    pub fn events_dropped_count(&self, webhook: &str) -> u64 {
        let webhook = webhook.to_owned();
        self.events
            .dropped
            .get_or_create(&WebhookLabel { webhook })
            .get()
    }

    pub(crate) fn shards_owned(&self, shards: usize) {
        self.shards.set(i64::try_from(shards).unwrap_or(i64::MAX));
    }

    pub(crate) fn delivery(&self, outcome: &Outcome) {
        let result = match outcome {
            Outcome::Delivered(_) => "delivered",
            Outcome::TempFailed(_) => "temp_failed",
            Outcome::PermFailed(_) => "perm_failed",
            Outcome::Deferred { .. } => "throttled",
            Outcome::Abandoned(_) => "abandoned",
        };
        self.deliveries.get_or_create(&ResultLabel { result }).inc();
    }

    /// Records how long delivering to a next hop took: the configured remote `Some(id)`, or
    /// the recipients' MX hosts (`None`).
    pub(crate) fn delivery_time(&self, remote: Option<&str>, took: Duration) {
        let next_hop = remote.map_or_else(|| "mx".to_owned(), |id| format!("remote/{id}"));
        self.delivery_time
            .get_or_create(&NextHopLabel { next_hop })
            .observe(took.as_secs_f64());
    }

    /// Reads the store's counters into the gauges, every [`REFRESH`], until the task is
    /// dropped; a failed read keeps the last values.
    pub async fn refresh(self, queue: Arc<dyn QueueService>) {
        let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        loop {
            match queue.stats().await {
                Ok(stats) => {
                    self.messages.set(gauge(stats.messages));
                    let r = &stats.recipients;
                    for (state, n) in [
                        ("pending", r.pending),
                        ("delivered", r.delivered),
                        ("temp_failed", r.temp_failed),
                        ("perm_failed", r.perm_failed),
                        ("cancelled", r.cancelled),
                    ] {
                        self.recipients
                            .get_or_create(&StateLabel { state })
                            .set(gauge(n));
                    }
                    self.bytes.set(gauge(stats.bytes));
                    let now = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs());
                    self.oldest.set(gauge(
                        stats.oldest_arrival.map_or(0, |t| now.saturating_sub(t)),
                    ));
                }
                Err(error) => tracing::warn!(%error, "queue metrics not refreshed"),
            }
            match queue.destinations().await {
                Ok(destinations) => {
                    let suspended = destinations.suspended.iter();
                    let suspended = suspended.filter(|s| s.until.is_some()).count();
                    self.suspended.set(gauge(suspended as u64));
                    self.paused.set(gauge(destinations.paused.len() as u64));
                }
                Err(error) => tracing::debug!(%error, "destination gauges not refreshed"),
            }
            tokio::time::sleep(REFRESH).await;
        }
    }
}
