//! `report.dmarc.aggregate.*` as the queue applies it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ferrymail_config::model::report::DmarcAggregate;
use ferrymail_config::model::signature::Signature;

use super::message::Reporter;
use super::signing::{self, ReportSigner};

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
