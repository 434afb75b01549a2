//! `report.dmarc.aggregate.*` (DMARC aggregate reports, RFC 7489 §7.2) and
//! `report.tls.aggregate.*` (SMTP TLS reports, RFC 8460), both with Stalwart's keys (`send`,
//! `from-name`, `from-address`, `org-name`, `contact-info`, `max-size`, `sign`) and
//! ferrymail's bound on the rows kept per domain and period (`max-records`).

use std::collections::BTreeMap;
use std::time::Duration;

use super::message_auth::check_signatures;
use super::signature::Signature;
use crate::key::Key;
use crate::keys;
use crate::reader::TableReader;
use crate::value::{ByteSize, ReportFrequency, SignatureList};

/// `report.dmarc.aggregate.*`.
pub type DmarcAggregate = AggregateReport;

/// `report.tls.aggregate.*`.
pub type TlsAggregate = AggregateReport;

/// The settings of one kind of aggregate report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggregateReport {
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

impl AggregateReport {
    /// Whether evaluations are recorded and reports sent.
    pub fn enabled(&self) -> bool {
        self.period.is_some()
    }
}

/// The keys of one kind of aggregate report, and the local part of its default sender.
struct ReportKeys {
    table: &'static str,
    sender: &'static str,
    send: &'static Key<ReportFrequency>,
    from_name: &'static Key<String>,
    from_address: &'static Key<String>,
    org_name: &'static Key<String>,
    contact_info: &'static Key<String>,
    max_size: &'static Key<ByteSize>,
    sign: &'static Key<SignatureList>,
    max_records: &'static Key<u32>,
}

const DMARC: ReportKeys = ReportKeys {
    table: "dmarc",
    sender: "noreply-dmarc",
    send: &keys::REPORT_DMARC_AGGREGATE_SEND,
    from_name: &keys::REPORT_DMARC_AGGREGATE_FROM_NAME,
    from_address: &keys::REPORT_DMARC_AGGREGATE_FROM_ADDRESS,
    org_name: &keys::REPORT_DMARC_AGGREGATE_ORG_NAME,
    contact_info: &keys::REPORT_DMARC_AGGREGATE_CONTACT_INFO,
    max_size: &keys::REPORT_DMARC_AGGREGATE_MAX_SIZE,
    sign: &keys::REPORT_DMARC_AGGREGATE_SIGN,
    max_records: &keys::REPORT_DMARC_AGGREGATE_MAX_RECORDS,
};

const TLS: ReportKeys = ReportKeys {
    table: "tls",
    sender: "noreply-tls",
    send: &keys::REPORT_TLS_AGGREGATE_SEND,
    from_name: &keys::REPORT_TLS_AGGREGATE_FROM_NAME,
    from_address: &keys::REPORT_TLS_AGGREGATE_FROM_ADDRESS,
    org_name: &keys::REPORT_TLS_AGGREGATE_ORG_NAME,
    contact_info: &keys::REPORT_TLS_AGGREGATE_CONTACT_INFO,
    max_size: &keys::REPORT_TLS_AGGREGATE_MAX_SIZE,
    sign: &keys::REPORT_TLS_AGGREGATE_SIGN,
    max_records: &keys::REPORT_TLS_AGGREGATE_MAX_RECORDS,
};

/// Reads `report.dmarc.aggregate` and `report.tls.aggregate`, defaults derived from
/// `hostname`; the `report` table is read by one reader, so each kind's keys are known.
pub(crate) fn read(
    root: &TableReader<'_>,
    hostname: &str,
    signatures: &BTreeMap<String, Signature>,
) -> (Option<DmarcAggregate>, Option<TlsAggregate>) {
    let report = root.table("report");
    let dmarc = read_kind(&report, &DMARC, hostname, signatures);
    let tls = read_kind(&report, &TLS, hostname, signatures);
    (dmarc, tls)
}

/// Reads `report.<kind>.aggregate`.
fn read_kind(
    report: &TableReader<'_>,
    kind: &ReportKeys,
    hostname: &str,
    signatures: &BTreeMap<String, Signature>,
) -> Option<AggregateReport> {
    let t = report.table(kind.table).table("aggregate");
    let period = t.get(kind.send);
    let from_name = t.get(kind.from_name);
    let from_address = t.get(kind.from_address);
    if let Some(address) = &from_address
        && !is_address(address)
    {
        t.report(
            "from-address",
            format!("{address:?} is not an email address"),
        );
    }
    let org_name = t.get(kind.org_name);
    let contact_info = t.get(kind.contact_info);
    let max_size = t.get(kind.max_size);
    if max_size.is_some_and(|size| size.0 == 0) {
        t.report("max-size", "must be larger than zero");
    }
    let sign = t.get(kind.sign);
    if let Some(sign) = &sign {
        check_signatures(&t, "sign", sign.0.iter(), signatures);
    }
    let max_records = t.get(kind.max_records);
    if max_records == Some(0) {
        t.report("max-records", "must be larger than zero");
    }
    Some(AggregateReport {
        period: period?.0,
        from_name: from_name?,
        from_address: from_address
            .filter(|a| is_address(a))
            .unwrap_or_else(|| format!("{}@{hostname}", kind.sender)),
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
