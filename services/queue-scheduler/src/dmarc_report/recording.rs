//! Counting evaluations: the settings applied to the queue, the row an evaluation is
//! counted in, and the evaluations of refused mail, counted on their own.

use std::sync::Arc;
use std::time::SystemTime;

use ferrymail_config::Config;
use ferrymail_rpc::queue::{DmarcEvaluation, QueueError};

use super::row;
use crate::aggregate_report::settings::AggregateSettings;
use crate::model::queue_id::unix_millis;
use crate::model::report_rows::{PreparedRow, ReportKind};
use crate::service::Queue;
use crate::store_failure::from_store;

impl Queue {
    /// Applies `report.dmarc.aggregate.*` of `config`.
    pub fn set_dmarc_reports(&self, config: &Config) {
        let settings = AggregateSettings::new(
            &config.dmarc_reports,
            &config.signatures,
            &config.server.hostname,
        );
        self.dmarc.store(Arc::new(settings));
    }

    /// Counts `evaluation` (of a message refused before it was queued) in its own
    /// transaction; nothing when reports are off.
    pub(crate) async fn record_refused(
        &self,
        evaluation: &DmarcEvaluation,
    ) -> Result<(), QueueError> {
        let now_s = unix_millis(SystemTime::now()) / 1000;
        let Some(row) = self.dmarc_row(evaluation, now_s) else {
            return Ok(());
        };
        self.count_rows(vec![row])
            .await
            .map_err(|e| from_store("record a DMARC evaluation", e))
    }

    /// The row `evaluation` is counted in at `now_s`, or `None` when reports are off.
    pub(crate) fn dmarc_row(
        &self,
        evaluation: &DmarcEvaluation,
        now_s: u64,
    ) -> Option<PreparedRow> {
        let settings = self.dmarc.load();
        let period = settings.period?;
        let record = row::record(evaluation);
        let policy = row::policy_published(&evaluation.policy_domain, &evaluation.policy);
        match PreparedRow::new(
            ReportKind::Dmarc,
            evaluation.policy_domain.clone(),
            &record,
            &policy,
            now_s,
            period.as_secs(),
            u64::from(settings.max_records),
        ) {
            Ok(row) => Some(row),
            Err(error) => {
                tracing::warn!(domain = %evaluation.policy_domain, %error, "DMARC evaluation not recorded");
                None
            }
        }
    }
}
