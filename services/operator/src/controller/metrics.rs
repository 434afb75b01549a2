//! Reconcile metrics.

use ferrymail_telemetry::Metrics;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HashLabel {
    hash: String,
}

/// Counters and gauges of the controller.
#[derive(Clone)]
pub struct ReconcileMetrics {
    reconciles: Family<ResultLabel, Counter>,
    duration: Histogram,
    resources: Family<KindLabel, Gauge>,
    rendered: Family<HashLabel, Gauge>,
}

impl Default for ReconcileMetrics {
    fn default() -> Self {
        Self {
            reconciles: Family::default(),
            duration: Histogram::new(exponential_buckets(0.005, 2.0, 12)),
            resources: Family::default(),
            rendered: Family::default(),
        }
    }
}

impl ReconcileMetrics {
    /// Registers `operator_reconciles_total{result}`, `operator_reconcile_duration_seconds`,
    /// `operator_resources{kind,state}` and `operator_rendered_config_info{hash}`.
    pub fn register(metrics: &Metrics) -> Self {
        let this = Self::default();
        metrics.register(
            "operator_reconciles_total",
            "Reconcile passes, by result (success or failure).",
            this.reconciles.clone(),
        );
        metrics.register(
            "operator_reconcile_duration_seconds",
            "Time taken by one reconcile pass.",
            this.duration.clone(),
        );
        metrics.register(
            "operator_resources",
            "RemoteHost and Directory resources, by kind and state (valid or invalid).",
            this.resources.clone(),
        );
        metrics.register(
            "operator_rendered_config_info",
            "Content hash of the rendered configuration last applied; always 1.",
            this.rendered.clone(),
        );
        this
    }

    /// Counts one pass.
    pub(crate) fn pass(&self, success: bool, seconds: f64) {
        let result = if success { "success" } else { "failure" };
        self.reconciles.get_or_create(&ResultLabel { result }).inc();
        self.duration.observe(seconds);
    }

    /// Sets the resource gauges.
    pub(crate) fn resources(&self, kind: &'static str, valid: usize, invalid: usize) {
        for (state, n) in [("valid", valid), ("invalid", invalid)] {
            self.resources
                .get_or_create(&KindLabel { kind, state })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// Records the hash of the applied configuration.
    pub(crate) fn applied(&self, hash: &str) {
        self.rendered.clear();
        self.rendered
            .get_or_create(&HashLabel {
                hash: hash.to_string(),
            })
            .set(1);
    }

    /// Passes so far with `result` (tests).
    pub fn count(&self, result: &'static str) -> u64 {
        self.reconciles.get_or_create(&ResultLabel { result }).get()
    }
}
