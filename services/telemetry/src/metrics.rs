//! The Prometheus registry every role registers its metrics in, rendered as OpenMetrics text.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use prometheus_client::collector::Collector;
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Metric, Registry};

use crate::TelemetryError;

/// The suffix OpenMetrics puts on every counter sample; the encoder adds it itself.
const COUNTER_SUFFIX: &str = "_total";

/// A shared handle to the process's metric registry.
///
/// Cloning is cheap; every clone sees the same registry. The lock is taken only when a metric
/// is registered and when the registry is scraped: recording a value goes straight to the
/// metric (an atomic), which callers keep.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Arc<Mutex<Families>>,
}

/// The registry, with the family names registered in it.
#[derive(Debug, Default)]
struct Families {
    registry: Registry,
    /// Names as the encoder writes them in `# TYPE` lines: one family per name, since
    /// Prometheus refuses a whole scrape that declares a name twice.
    names: BTreeSet<String>,
}

impl Metrics {
    /// A registry holding `ferrymail_build_info{version, role} 1` for the given role.
    pub fn new(role: &str) -> Self {
        let build_info = Family::<Vec<(String, String)>, Gauge>::default();
        build_info
            .get_or_create(&vec![
                ("version".to_owned(), env!("CARGO_PKG_VERSION").to_owned()),
                ("role".to_owned(), role.to_owned()),
            ])
            .set(1);
        let metrics = Self {
            registry: Arc::new(Mutex::new(Families::default())),
        };
        metrics.register(
            "ferrymail_build_info",
            "Build of the running ferrymail process; always 1",
            build_info,
        );
        metrics
    }

    /// Registers `metric` under `name`, exactly as given: no prefix is added.
    ///
    /// `name` is the name scraped. For counters, the OpenMetrics encoder appends `_total`
    /// itself, so a trailing `_total` in `name` is dropped instead of doubled:
    /// `smtp_messages_received_total` registers a counter scraped under that same name. Keep a
    /// clone of `metric` (metrics are shared handles) to record values.
    ///
    /// A family name registered twice (a counter `x_total` and a gauge `x` share the family
    /// `x`) is a bug: debug builds panic, release builds log it and serve the first only, so
    /// that scrapes keep working.
    pub fn register(&self, name: &str, help: &str, metric: impl Metric) {
        let family = match metric.metric_type() {
            MetricType::Counter => name.strip_suffix(COUNTER_SUFFIX).unwrap_or(name),
            _ => name,
        };
        let mut families = self.lock();
        if !families.names.insert(family.to_owned()) {
            debug_assert!(false, "metric family {family} registered twice ({name})");
            tracing::error!(
                metric = name,
                "metric family registered twice; the second is not served"
            );
            return;
        }
        // The encoder ends every help text with a period of its own.
        let help = help.trim_end_matches('.');
        families.registry.register(family, help, metric);
    }

    /// Registers a collector, for metrics computed at scrape time (a queue's depth, a cache's
    /// size) rather than recorded as they happen.
    pub fn register_collector(&self, collector: impl Collector) {
        self.lock().registry.register_collector(Box::new(collector));
    }

    /// Renders every registered metric in the OpenMetrics text format, ending in `# EOF`.
    pub fn encode(&self) -> Result<String, TelemetryError> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.lock().registry)?;
        Ok(out)
    }

    fn lock(&self) -> MutexGuard<'_, Families> {
        // A panic elsewhere while holding the lock cannot leave the registry half-updated in a
        // way that matters for scraping, so keep serving metrics rather than failing forever.
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
    use prometheus_client::metrics::counter::Counter;

    use super::*;

    #[test]
    fn build_info_carries_version_and_role() {
        let text = Metrics::new("smtp-ingress").encode().unwrap();
        let expected = format!(
            "ferrymail_build_info{{version=\"{}\",role=\"smtp-ingress\"}} 1\n",
            env!("CARGO_PKG_VERSION")
        );
        assert!(
            text.contains("# TYPE ferrymail_build_info gauge\n"),
            "{text}"
        );
        assert!(text.contains(&expected), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn counter_named_with_total_is_not_doubled() {
        let metrics = Metrics::new("all");
        let received = Counter::<u64>::default();
        metrics.register(
            "smtp_messages_received_total",
            "Messages received.",
            received.clone(),
        );
        let plain = Counter::<u64>::default();
        metrics.register("auth_failures", "Authentication failures.", plain.clone());
        received.inc_by(3);
        plain.inc();

        let text = metrics.encode().unwrap();
        assert!(
            text.contains("# TYPE smtp_messages_received counter\n"),
            "{text}"
        );
        assert!(text.contains("smtp_messages_received_total 3\n"), "{text}");
        assert!(text.contains("auth_failures_total 1\n"), "{text}");
        assert!(!text.contains("_total_total"), "{text}");
    }

    #[test]
    fn gauge_names_are_kept_as_given() {
        let metrics = Metrics::new("queue-scheduler");
        let depth = Gauge::<i64>::default();
        metrics.register("queue_messages_total", "Messages queued.", depth.clone());
        depth.set(7);
        let text = metrics.encode().unwrap();
        assert!(text.contains("queue_messages_total 7\n"), "{text}");
    }

    #[test]
    #[should_panic(expected = "metric family queue_messages registered twice")]
    fn a_family_name_is_registered_once() {
        let metrics = Metrics::new("queue-scheduler");
        metrics.register(
            "queue_messages_total",
            "Enqueued.",
            Counter::<u64>::default(),
        );
        metrics.register("queue_messages", "Depth.", Gauge::<i64>::default());
    }

    #[test]
    fn clones_share_one_registry() {
        let metrics = Metrics::new("all");
        let other = metrics.clone();
        let counter = Counter::<u64>::default();
        other.register("shared", "Registered through a clone.", counter.clone());
        counter.inc();
        assert!(metrics.encode().unwrap().contains("shared_total 1\n"));
    }

    #[derive(Debug)]
    struct FixedDepth;

    impl Collector for FixedDepth {
        fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
            let gauge = Gauge::<i64>::default();
            gauge.set(5);
            let metric = encoder.encode_descriptor(
                "lookup_cache_entries",
                "Entries in the lookup cache.",
                None,
                gauge.metric_type(),
            )?;
            gauge.encode(metric)
        }
    }

    #[test]
    fn collectors_are_evaluated_at_scrape_time() {
        let metrics = Metrics::new("directory-proxy");
        metrics.register_collector(FixedDepth);
        let text = metrics.encode().unwrap();
        assert!(text.contains("lookup_cache_entries 5\n"), "{text}");
    }
}
