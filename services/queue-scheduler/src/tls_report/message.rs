//! The TLS report of one policy domain and period (RFC 8460 §4): mail-auth's report types
//! as JSON, gzipped, and the message that carries it to a `mailto:` destination (§5.3).

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;
use mail_auth::report::tlsrpt::{DateRange, Policy, Summary, TlsReport};
use mail_builder::MessageBuilder;
use mail_builder::headers::HeaderType;
use mail_builder::headers::address::Address;
use mail_builder::headers::content_type::ContentType;
use mail_builder::mime::{BodyPart, MimePart};
use sha2::{Digest, Sha256};

use super::row::TlsRow;
use crate::aggregate_report::settings::Reporter;
use crate::model::report_rows::DuePeriod;

/// The report of `period` with `rows` (each with its session count), one `policies` entry
/// per policy applied.
pub(crate) fn report(
    reporter: &Reporter,
    period: &DuePeriod,
    rows: Vec<(TlsRow, u64)>,
) -> TlsReport {
    let mut policies: Vec<Policy> = Vec::new();
    for (row, count) in rows {
        let count = u32::try_from(count).unwrap_or(u32::MAX);
        let at = match policies.iter().position(|p| p.policy == row.policy) {
            Some(at) => at,
            None => {
                policies.push(Policy {
                    policy: row.policy.clone(),
                    summary: Summary {
                        total_success: 0,
                        total_failure: 0,
                    },
                    failure_details: Vec::new(),
                });
                policies.len() - 1
            }
        };
        let policy = &mut policies[at];
        match row.failure {
            None => {
                policy.summary.total_success = policy.summary.total_success.saturating_add(count)
            }
            Some(mut failure) => {
                policy.summary.total_failure = policy.summary.total_failure.saturating_add(count);
                failure.failed_session_count = count;
                policy.failure_details.push(failure);
            }
        }
    }
    TlsReport {
        organization_name: Some(reporter.org_name.clone()),
        date_range: DateRange::from_timestamps(
            i64::try_from(period.start).unwrap_or(i64::MAX),
            i64::try_from(period.end).unwrap_or(i64::MAX),
        ),
        contact_info: Some(
            reporter
                .contact_info
                .clone()
                .unwrap_or_else(|| reporter.from_address.clone()),
        ),
        report_id: format!("{}.{}@{}", period.start, period.domain, reporter.submitter),
        policies,
    }
}

/// `report` as RFC 8460 JSON: members without a value are left out rather than `null`,
/// which the RFC's schema does not allow.
pub(crate) fn json(report: &TlsReport) -> Result<Vec<u8>, serde_json::Error> {
    let mut value = serde_json::to_value(report)?;
    strip_nulls(&mut value);
    serde_json::to_vec(&value)
}

fn strip_nulls(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(members) => {
            members.retain(|_, member| !member.is_null());
            members.values_mut().for_each(strip_nulls);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

/// `json` gzipped.
pub(crate) fn gzip(json: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(json.len() / 4), Compression::default());
    encoder.write_all(json)?;
    encoder.finish()
}

/// The report file's name (RFC 8460 §5.3):
/// `submitter!policy-domain!begin!end!unique-id.json.gz`, the unique id from the report id.
pub(crate) fn file_name(submitter: &str, domain: &str, report: &TlsReport) -> String {
    let digest = Sha256::digest(report.report_id.as_bytes());
    let unique: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{submitter}!{domain}!{}!{}!{unique}.json.gz",
        report.date_range.start_datetime.to_timestamp(),
        report.date_range.end_datetime.to_timestamp()
    )
}

/// The message carrying the gzipped report `gz` of `domain` to `to` (RFC 8460 §5.3): a
/// `multipart/report; report-type="tlsrpt"` with a short text and the report.
pub(crate) fn message(
    reporter: &Reporter,
    domain: &str,
    report: &TlsReport,
    gz: &[u8],
    to: &[String],
) -> std::io::Result<Vec<u8>> {
    let submitter = reporter.submitter.as_str();
    let text = format!(
        "TLS report from {}\r\n\r\nReport Domain: {domain}\r\nSubmitter: {submitter}\r\nReport-ID: <{}>\r\n",
        reporter.org_name, report.report_id
    );
    let attachment = MimePart::new(
        ContentType::new("application/tlsrpt+gzip"),
        BodyPart::Binary(gz.into()),
    )
    .attachment(file_name(submitter, domain, report));
    let mut raw = Vec::new();
    MessageBuilder::new()
        .from((reporter.from_name.as_str(), reporter.from_address.as_str()))
        .header(
            "To",
            HeaderType::Address(Address::List(
                to.iter().map(|a| Address::from(a.as_str())).collect(),
            )),
        )
        .message_id(format!(
            "{}@{submitter}",
            report.report_id.replace('@', ".")
        ))
        .header("TLS-Report-Domain", HeaderType::Text(domain.into()))
        .header("TLS-Report-Submitter", HeaderType::Text(submitter.into()))
        .header("Auto-Submitted", HeaderType::Text("auto-generated".into()))
        .subject(format!(
            "Report Domain: {domain} Submitter: {submitter} Report-ID: <{}>",
            report.report_id
        ))
        .body(MimePart::new(
            ContentType::new("multipart/report").attribute("report-type", "tlsrpt"),
            BodyPart::Multipart(vec![
                MimePart::new(ContentType::new("text/plain"), BodyPart::Text(text.into())),
                attachment,
            ]),
        ))
        .write_to(&mut raw)?;
    Ok(raw)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::io::Read;

    use ferrymail_e2e::tls_report_schema_errors;
    use ferrymail_outbound::tls_report::{
        TlsFailure, TlsFailureKind, TlsPolicyApplied, TlsSessionResult,
    };
    use mail_parser::MimeHeaders;

    use super::*;
    use crate::model::report_rows::ReportKind;
    use crate::tls_report::row::row;

    fn reporter() -> Reporter {
        Reporter {
            submitter: "mx.example.net".into(),
            org_name: "Example Sender".into(),
            from_name: "Reports".into(),
            from_address: "noreply-tls@example.net".into(),
            contact_info: None,
        }
    }

    fn period() -> DuePeriod {
        DuePeriod {
            kind: ReportKind::Tls,
            domain: "example.org".into(),
            start: 1_700_000_000,
            end: 1_700_086_400,
        }
    }

    fn sts() -> TlsPolicyApplied {
        TlsPolicyApplied::Sts {
            policy: vec!["version: STSv1".into(), "mode: enforce".into()],
            mx: vec!["mx.example.org".into()],
        }
    }

    fn session(policy: TlsPolicyApplied, failure: Option<TlsFailureKind>) -> TlsSessionResult {
        TlsSessionResult {
            policy_domain: "example.org".into(),
            policy,
            mx_host: Some("mx.example.org".into()),
            ip: Some("192.0.2.25".parse().unwrap()),
            failure: failure.map(|kind| TlsFailure {
                kind,
                detail: "TLS: invalid peer certificate: UnknownIssuer".into(),
            }),
        }
    }

    /// Successes and two kinds of failure under MTA-STS, and a success without a policy.
    fn rows() -> Vec<(TlsRow, u64)> {
        vec![
            (row(&session(sts(), None)), 5),
            (
                row(&session(sts(), Some(TlsFailureKind::CertificateNotTrusted))),
                2,
            ),
            (
                row(&session(sts(), Some(TlsFailureKind::StartTlsNotSupported))),
                1,
            ),
            (row(&session(TlsPolicyApplied::None, None)), 3),
        ]
    }

    #[test]
    fn rows_add_up_per_policy_and_the_json_follows_the_rfc_schema() {
        let built = report(&reporter(), &period(), rows());
        assert_eq!(built.policies.len(), 2);
        let sts = &built.policies[0];
        assert_eq!(sts.summary.total_success, 5);
        assert_eq!(sts.summary.total_failure, 3);
        assert_eq!(sts.failure_details.len(), 2);
        assert_eq!(sts.failure_details[0].failed_session_count, 2);
        assert_eq!(built.policies[1].summary.total_success, 3);
        let json = json(&built).unwrap();
        assert_eq!(tls_report_schema_errors(&json), "");
        let text = String::from_utf8(json).unwrap();
        assert!(
            text.contains("\"result-type\":\"certificate-not-trusted\""),
            "{text}"
        );
        assert!(
            text.contains("\"policy-type\":\"no-policy-found\""),
            "{text}"
        );
        assert!(!text.contains("null"), "{text}");
    }

    #[test]
    fn the_schema_check_finds_a_report_that_breaks_it() {
        let mut built = report(&reporter(), &period(), rows());
        built.policies[0].policy.policy_domain = String::new();
        let errors = tls_report_schema_errors(&json(&built).unwrap());
        assert!(errors.contains("policy-domain"), "{errors}");
    }

    #[test]
    fn the_message_has_the_rfc_shape_and_carries_the_gzipped_report() {
        let built = report(&reporter(), &period(), rows());
        let gz = gzip(&json(&built).unwrap()).unwrap();
        let raw = message(
            &reporter(),
            "example.org",
            &built,
            &gz,
            &["tlsrpt@example.org".into()],
        )
        .unwrap();
        let parsed = mail_parser::MessageParser::default().parse(&raw).unwrap();
        let header = |name: &str| {
            parsed
                .header_raw(name)
                .map(|v| v.trim().to_owned())
                .unwrap_or_default()
        };
        assert_eq!(header("TLS-Report-Domain"), "example.org");
        assert_eq!(header("TLS-Report-Submitter"), "mx.example.net");
        let content_type = parsed.content_type().unwrap();
        assert_eq!(content_type.ctype(), "multipart");
        assert_eq!(content_type.subtype(), Some("report"));
        assert_eq!(content_type.attribute("report-type"), Some("tlsrpt"));
        let attachment = parsed.attachment(0).expect("an attachment");
        let name = attachment.attachment_name().unwrap();
        assert!(
            name.starts_with("mx.example.net!example.org!1700000000!1700086400!")
                && name.ends_with(".json.gz"),
            "{name}"
        );
        let content = attachment.content_type().unwrap();
        assert_eq!(
            (content.ctype(), content.subtype()),
            ("application", Some("tlsrpt+gzip"))
        );
        let mut text = String::new();
        flate2::read::GzDecoder::new(attachment.contents())
            .read_to_string(&mut text)
            .unwrap();
        let parsed = TlsReport::parse_json(text.as_bytes()).unwrap();
        assert_eq!(parsed.policies.len(), 2);
        assert_eq!(parsed.report_id, built.report_id);
    }
}
