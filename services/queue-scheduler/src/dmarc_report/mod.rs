//! DMARC aggregate reports (RFC 7489 §7.2), sent exactly once per domain and period across
//! every scheduler.
//!
//! Recording: the ingress sends each message's DMARC evaluation with its body when the
//! author domain asked for reports (`rua`) and `report.dmarc.aggregate.send` is on; the
//! enqueue counts it in the domain's row of the current period (`model::dmarc_rows`), in the
//! message's own transaction: no extra round trip, one row update per accepted message.
//!
//! Reporting (`sender`): every scheduler looks for periods that have ended. For each, one
//! takes a lease in the store; it reads the rows in pages (memory is bounded by
//! `max-records` rows, whatever the number of messages), builds the report with mail-auth's
//! report types, looks up the domain's `rua` again with the external-destination check
//! (RFC 7489 §7.1) and size limits, and in one transaction that first checks its lease still
//! holds queues the report as ordinary mail and deletes the rows and the due mark. A
//! scheduler that dies before that commit leaves everything for the next lease holder; one
//! that commits leaves nothing to report again. A DNS failure keeps the rows and tries
//! again later, a bounded number of times, then drops the report with a warning.

mod message;
mod row;
pub(crate) mod sender;
mod signing;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use std::collections::BTreeMap;

use ferrymail_config::Config;
use ferrymail_config::model::report::DmarcAggregate;
use ferrymail_config::model::signature::Signature;
use ferrymail_rpc::queue::{DmarcEvaluation, QueueError};

pub(crate) use message::Reporter;
use signing::ReportSigner;

use crate::model::dmarc_rows::{self, PreparedRow, Recorded};
use crate::model::queue_id::unix_millis;
use crate::service::Queue;
use crate::store_failure::from_store;

/// `report.dmarc.aggregate.*` as the queue applies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DmarcSettings {
    /// `send`: the period; `None` records and sends nothing.
    pub(crate) period: Option<Duration>,
    /// `max-records`.
    pub(crate) max_records: u32,
    /// `max-size`.
    pub(crate) max_size: u64,
    /// `sign`: the signatures reports are signed with.
    pub(crate) signers: Vec<Arc<ReportSigner>>,
    /// Who reports.
    pub(crate) reporter: Reporter,
}

impl DmarcSettings {
    /// The settings of `config` on host `hostname`, signing with `signatures`.
    pub(crate) fn new(
        config: &DmarcAggregate,
        signatures: &BTreeMap<String, Signature>,
        hostname: &str,
    ) -> Self {
        Self {
            period: config.period,
            max_records: config.max_records,
            max_size: config.max_size,
            signers: signing::signers(&config.sign, signatures)
                .into_iter()
                .map(Arc::new)
                .collect(),
            reporter: Reporter {
                submitter: hostname.to_owned(),
                org_name: config.org_name.clone(),
                from_name: config.from_name.clone(),
                from_address: config.from_address.clone(),
                contact_info: config.contact_info.clone(),
            },
        }
    }
}

impl Default for DmarcSettings {
    /// Nothing recorded or sent until the configuration is applied.
    fn default() -> Self {
        Self {
            period: None,
            max_records: 10_000,
            max_size: 26_214_400,
            signers: Vec::new(),
            reporter: Reporter {
                submitter: "localhost".into(),
                org_name: "localhost".into(),
                from_name: "Report Subsystem".into(),
                from_address: "noreply-dmarc@localhost".into(),
                contact_info: None,
            },
        }
    }
}

impl Queue {
    /// Applies `report.dmarc.aggregate.*` of `config`.
    pub fn set_dmarc_reports(&self, config: &Config) {
        let settings = DmarcSettings::new(
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
        let (keys, row) = (self.keys.clone(), Arc::new(row));
        let written = row.clone();
        let recorded = self
            .store
            .transact(move |tx| {
                let (keys, row) = (keys.clone(), written.clone());
                Box::pin(async move { dmarc_rows::record(tx, &keys, &row).await })
            })
            .await
            .map_err(|e| from_store("record a DMARC evaluation", e))?;
        self.note_recorded(&row, recorded);
        Ok(())
    }

    /// Counts and logs what recording `row` did.
    pub(crate) fn note_recorded(&self, row: &PreparedRow, recorded: Recorded) {
        self.metrics.dmarc_recorded(recorded == Recorded::Counted);
        if recorded == Recorded::Overflow {
            tracing::warn!(domain = %row.domain, period_start = row.start, max_records = row.max_rows, "DMARC report rows full for this period: evaluation left out of the rows (counted as left out)");
        }
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
