//! `report.dmarc.aggregate.*`: DMARC aggregate reports (RFC 7489 §7.2) with Stalwart's keys
//! (`send`, `from-name`, `from-address`, `org-name`, `contact-info`, `max-size`, `sign`),
//! and ferrymail's bound on the rows kept per domain and period (`max-records`).

use std::collections::BTreeMap;
use std::time::Duration;

use super::message_auth::check_signatures;
use super::signature::Signature;
use crate::keys;
use crate::reader::TableReader;

/// `report.dmarc.aggregate.*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmarcAggregate {
    /// `send`: the reporting period; `None` records nothing and sends nothing.
    pub period: Option<Duration>,
    /// `from-name`.
    pub from_name: String,
    /// `from-address`.
    pub from_address: String,
    /// `org-name`.
    pub org_name: String,
    /// `contact-info`.
    pub contact_info: Option<String>,
    /// `max-size` in bytes.
    pub max_size: u64,
    /// `sign`: the signatures (`signature.<id>` ids) reports are signed with.
    pub sign: Vec<String>,
    /// `max-records`: most distinct rows per domain and period.
    pub max_records: u32,
}

impl DmarcAggregate {
    /// Whether evaluations are recorded and reports sent.
    pub fn enabled(&self) -> bool {
        self.period.is_some()
    }
}

/// Reads `report.dmarc.aggregate`, defaults derived from `hostname`.
pub(crate) fn read(
    root: &TableReader<'_>,
    hostname: &str,
    signatures: &BTreeMap<String, Signature>,
) -> Option<DmarcAggregate> {
    let t = root.table("report").table("dmarc").table("aggregate");
    let period = t.get(&keys::REPORT_DMARC_AGGREGATE_SEND);
    let from_name = t.get(&keys::REPORT_DMARC_AGGREGATE_FROM_NAME);
    let from_address = t.get(&keys::REPORT_DMARC_AGGREGATE_FROM_ADDRESS);
    if let Some(address) = &from_address
        && !is_address(address)
    {
        t.report(
            "from-address",
            format!("{address:?} is not an email address"),
        );
    }
    let org_name = t.get(&keys::REPORT_DMARC_AGGREGATE_ORG_NAME);
    let contact_info = t.get(&keys::REPORT_DMARC_AGGREGATE_CONTACT_INFO);
    let max_size = t.get(&keys::REPORT_DMARC_AGGREGATE_MAX_SIZE);
    if max_size.is_some_and(|size| size.0 == 0) {
        t.report("max-size", "must be larger than zero");
    }
    let sign = t.get(&keys::REPORT_DMARC_AGGREGATE_SIGN);
    if let Some(sign) = &sign {
        check_signatures(&t, "sign", sign.0.iter(), signatures);
    }
    let max_records = t.get(&keys::REPORT_DMARC_AGGREGATE_MAX_RECORDS);
    if max_records == Some(0) {
        t.report("max-records", "must be larger than zero");
    }
    Some(DmarcAggregate {
        period: period?.0,
        from_name: from_name?,
        from_address: from_address
            .filter(|a| is_address(a))
            .unwrap_or_else(|| format!("noreply-dmarc@{hostname}")),
        org_name: org_name.unwrap_or_else(|| hostname.to_owned()),
        contact_info,
        max_size: max_size?.0,
        sign: sign?.0,
        max_records: max_records?,
    })
}

/// Whether `address` looks like `local@domain`.
fn is_address(address: &str) -> bool {
    address.rsplit_once('@').is_some_and(|(local, domain)| {
        !local.is_empty() && domain.contains('.') && !address.contains(char::is_whitespace)
    })
}
