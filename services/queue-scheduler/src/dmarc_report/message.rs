//! The aggregate report of one domain and period: mail-auth's report structure and XML,
//! gzipped and attached under the RFC's file name (`receiver!policy-domain!begin!end.xml.gz`,
//! RFC 7489 §7.2.1.1) to a message from the configured reporting address.

use mail_auth::report::{PolicyPublished, Record, Report};

use crate::aggregate_report::settings::Reporter;
use crate::model::report_rows::DuePeriod;

/// The report of `period` under `policy` with `rows` (each with its count); `left_out`
/// evaluations past the row bound are named in an error of the metadata.
pub(crate) fn report(
    reporter: &Reporter,
    period: &DuePeriod,
    policy: PolicyPublished,
    rows: Vec<(Record, u64)>,
    left_out: u64,
) -> Report {
    let mut report = Report::new()
        .with_version(1.0)
        .with_org_name(reporter.org_name.as_str())
        .with_email(reporter.from_address.as_str())
        .with_report_id(format!(
            "{}.{}@{}",
            period.start, period.domain, reporter.submitter
        ))
        .with_date_range_begin(period.start)
        .with_date_range_end(period.end)
        .with_generator(concat!("ferrymail ", env!("CARGO_PKG_VERSION")))
        .with_policy_published(PolicyPublished {
            domain: period.domain.clone(),
            ..policy
        });
    if let Some(contact) = &reporter.contact_info {
        report = report.with_extra_contact_info(contact.as_str());
    }
    if left_out > 0 {
        report = report.with_error(format!(
            "{left_out} evaluations left out: more distinct rows than this receiver keeps per period"
        ));
    }
    for (record, count) in rows {
        let count = u32::try_from(count).unwrap_or(u32::MAX);
        report.add_record(record.with_count(count));
    }
    report
}

/// The file name of `report`'s attachment.
pub(crate) fn file_name(submitter: &str, report: &Report) -> String {
    format!(
        "{submitter}!{}!{}!{}.xml.gz",
        report.domain(),
        report.date_range_begin(),
        report.date_range_end()
    )
}

/// The message carrying `report` to `to`: headers, a short text and the gzipped XML.
pub(crate) fn message(
    reporter: &Reporter,
    report: &Report,
    to: &[String],
) -> std::io::Result<Vec<u8>> {
    let mut message = Vec::new();
    report.write_rfc5322(
        &reporter.submitter,
        (reporter.from_name.as_str(), reporter.from_address.as_str()),
        to.iter().map(String::as_str),
        &mut message,
    )?;
    Ok(message)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::io::Read;

    use mail_auth::report::{ActionDisposition, Disposition, DmarcResult};
    use mail_parser::MimeHeaders;

    use super::*;

    fn reporter() -> Reporter {
        Reporter {
            submitter: "mx.example.net".into(),
            org_name: "Example Receiver".into(),
            from_name: "Reports".into(),
            from_address: "noreply-dmarc@example.net".into(),
            contact_info: None,
        }
    }

    fn period() -> DuePeriod {
        DuePeriod {
            kind: crate::model::report_rows::ReportKind::Dmarc,
            domain: "example.org".into(),
            start: 1_700_000_000,
            end: 1_700_086_400,
        }
    }

    fn row(ip: &str, disposition: ActionDisposition) -> Record {
        Record::new()
            .with_source_ip(ip.parse().unwrap())
            .with_action_disposition(disposition)
            .with_dmarc_dkim_result(DmarcResult::Fail)
            .with_dmarc_spf_result(DmarcResult::Pass)
            .with_header_from("example.org")
    }

    #[test]
    fn the_file_name_follows_the_rfc() {
        let report = report(
            &reporter(),
            &period(),
            PolicyPublished::default(),
            Vec::new(),
            0,
        );
        assert_eq!(
            file_name("mx.example.net", &report),
            "mx.example.net!example.org!1700000000!1700086400.xml.gz"
        );
    }

    #[test]
    fn rows_keep_their_counts_and_the_xml_parses_back() {
        let policy = PolicyPublished {
            p: Disposition::Reject,
            ..PolicyPublished::default()
        };
        let rows = vec![
            (row("192.0.2.1", ActionDisposition::None), 3),
            (row("192.0.2.2", ActionDisposition::Reject), 1),
        ];
        let built = report(&reporter(), &period(), policy, rows, 2);
        let xml = built.to_xml();
        assert!(xml.contains("<source_ip>192.0.2.1</source_ip>"), "{xml}");
        assert!(xml.contains("<count>3</count>"), "{xml}");
        assert!(xml.contains("<disposition>reject</disposition>"), "{xml}");
        assert!(xml.contains("<domain>example.org</domain>"), "{xml}");
        assert!(xml.contains("2 evaluations left out"), "{xml}");
        let parsed = Report::parse_xml(xml.as_bytes()).unwrap();
        assert_eq!(parsed.records().len(), 2);
        assert_eq!(parsed.records()[0].count(), 3);
        assert_eq!(parsed.date_range_begin(), 1_700_000_000);
    }

    #[test]
    fn the_message_carries_the_gzipped_report() {
        let built = report(
            &reporter(),
            &period(),
            PolicyPublished::default(),
            vec![(row("192.0.2.1", ActionDisposition::None), 1)],
            0,
        );
        let raw = message(&reporter(), &built, &["dmarc@example.org".into()]).unwrap();
        let parsed = mail_parser::MessageParser::default().parse(&raw).unwrap();
        assert_eq!(
            parsed
                .from()
                .and_then(|f| f.first())
                .and_then(|a| a.address()),
            Some("noreply-dmarc@example.net")
        );
        let attachment = parsed.attachment(0).expect("an attachment");
        assert_eq!(
            attachment.attachment_name(),
            Some("mx.example.net!example.org!1700000000!1700086400.xml.gz")
        );
        let mut xml = String::new();
        flate2::read::GzDecoder::new(attachment.contents())
            .read_to_string(&mut xml)
            .unwrap();
        assert!(xml.contains("<source_ip>192.0.2.1</source_ip>"));
    }
}
