//! Counting the TLS results of a delivery attempt: the settings applied to the queue, the
//! collector MX delivery reports into, and the rows the results are counted in.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use ferrymail_config::Config;
use ferrymail_outbound::tls_report::{TlsResults, TlsSessionResult};

use super::row;
use crate::aggregate_report::settings::AggregateSettings;
use crate::model::queue_id::unix_millis;
use crate::model::report_rows::{PreparedRow, ReportKind};
use crate::service::Queue;

/// The TLS results of one delivery attempt, kept until it ends.
#[derive(Default)]
pub(crate) struct TlsCollector {
    results: Mutex<Vec<TlsSessionResult>>,
}

impl TlsResults for TlsCollector {
    fn record(&self, result: TlsSessionResult) {
        self.results
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(result);
    }
}

impl TlsCollector {
    /// The results collected.
    pub(crate) fn take(&self) -> Vec<TlsSessionResult> {
        std::mem::take(&mut *self.results.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Queue {
    /// Applies `report.tls.aggregate.*` of `config`.
    pub fn set_tls_reports(&self, config: &Config) {
        let settings = AggregateSettings::new(
            &config.tls_reports,
            &config.signatures,
            &config.server.hostname,
        );
        self.tls_reports.store(Arc::new(settings));
    }

    /// Whether TLS results are recorded.
    pub(crate) fn tls_reports_on(&self) -> bool {
        self.tls_reports.load().period.is_some()
    }

    /// Counts `results` in their domains' rows of the current period; a store failure is
    /// logged (the delivery itself stands).
    pub(crate) async fn record_tls_results(&self, results: Vec<TlsSessionResult>) {
        let settings = self.tls_reports.load_full();
        let Some(period) = settings.period else {
            return;
        };
        if results.is_empty() {
            return;
        }
        let now_s = unix_millis(SystemTime::now()) / 1000;
        let rows: Vec<PreparedRow> = results
            .iter()
            .filter_map(|result| {
                let row = row::row(result);
                let prepared = PreparedRow::new(
                    ReportKind::Tls,
                    result.policy_domain.clone(),
                    &row,
                    &(),
                    now_s,
                    period.as_secs(),
                    u64::from(settings.max_records),
                );
                prepared
                    .inspect_err(|error| tracing::warn!(domain = %result.policy_domain, %error, "TLS result not recorded"))
                    .ok()
            })
            .collect();
        if let Err(error) = self.count_rows(rows).await {
            tracing::warn!(%error, sessions = results.len(), "TLS results of a delivery attempt not recorded for SMTP TLS reports");
        }
    }
}
