//! `report.dmarc.aggregate.*` and `report.tls.aggregate.*` as the queue applies them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ferrymail_config::model::report::AggregateReport;
use ferrymail_config::model::signature::Signature;

use super::signing::{self, ReportSigner};

/// Who reports, as `report.<kind>.aggregate.*` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reporter {
    /// `server.hostname`: the receiver (DMARC) or submitter (TLS) named in the file name.
    pub(crate) submitter: String,
    /// `org-name`.
    pub(crate) org_name: String,
    /// `from-name`.
    pub(crate) from_name: String,
    /// `from-address`.
    pub(crate) from_address: String,
    /// `contact-info`.
    pub(crate) contact_info: Option<String>,
}

/// One kind of aggregate report's settings as the queue applies them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AggregateSettings {
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

impl AggregateSettings {
    /// The settings of `config` on host `hostname`, signing with `signatures`.
    pub(crate) fn new(
        config: &AggregateReport,
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

impl Default for AggregateSettings {
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
                from_address: "noreply@localhost".into(),
                contact_info: None,
            },
        }
    }
}
