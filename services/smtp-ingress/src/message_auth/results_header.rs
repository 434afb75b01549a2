//! The `Authentication-Results` header field (RFC 8601) of a verified message.

use std::net::IpAddr;

use mail_auth::{AuthenticationResults, SpfOutput};

use super::verify::{Modes, Outcome};

/// The reason recorded for checks skipped because the message was larger than the copy
/// kept for them (RFC 8601 §2.2 `reason` property).
pub(crate) const TOO_LARGE: &str = "message too large to verify";

/// What the header reports, in the order of the checks.
pub(crate) struct Report<'a, 'x> {
    /// The authserv-id: this server's host name.
    pub(crate) hostname: &'a str,
    pub(crate) client_ip: IpAddr,
    pub(crate) helo: &'a str,
    pub(crate) sender: &'a str,
    pub(crate) spf_helo: Option<&'a SpfOutput>,
    pub(crate) spf_mail_from: Option<&'a SpfOutput>,
    pub(crate) modes: Modes,
    /// The end-of-DATA results; `None` when the message was too large to check.
    pub(crate) outcome: Option<&'a Outcome<'x>>,
    /// The RFC 5322 From address, for DKIM's third-party signatures.
    pub(crate) header_from: &'a str,
}

/// `Authentication-Results: …\r\n`, folded one method per line (the session writes it with
/// [`results_field`], the ARC seal first).
#[cfg(test)]
pub(crate) fn authentication_results(report: &Report<'_, '_>) -> String {
    results_field(&results_value(report))
}

/// The `Authentication-Results` field of a value of [`results_value`], ending in CRLF.
pub(crate) fn results_field(value: &str) -> String {
    format!("Authentication-Results: {value}\r\n")
}

/// The value of the `Authentication-Results` field (also what ARC sealing records).
pub(crate) fn results_value(report: &Report<'_, '_>) -> String {
    let mut results = AuthenticationResults::new(report.hostname);
    if let Some(spf) = report.spf_helo {
        results = results.with_spf_ehlo_result(spf, report.client_ip, report.helo);
    }
    if let Some(spf) = report.spf_mail_from {
        results =
            results.with_spf_mailfrom_result(spf, report.client_ip, report.sender, report.helo);
    }
    let mut extra = String::new();
    match report.outcome {
        Some(outcome) => {
            if report.modes.dkim.verifies() {
                if outcome.dkim.is_empty() {
                    extra.push_str(";\r\n\tdkim=none");
                } else {
                    results = results.with_dkim_results(&outcome.dkim, report.header_from);
                }
            }
            if let Some(arc) = &outcome.arc {
                results = results.with_arc_result(arc, report.client_ip);
            }
            if let Some(dmarc) = &outcome.dmarc {
                results = results.with_dmarc_result(dmarc);
            }
        }
        None => {
            for (mode, method, result) in [
                (report.modes.dkim, "dkim", "neutral"),
                (report.modes.arc, "arc", "none"),
                (report.modes.dmarc, "dmarc", "none"),
            ] {
                if mode.verifies() {
                    extra.push_str(&format!(";\r\n\t{method}={result} reason=\"{TOO_LARGE}\""));
                }
            }
        }
    }
    let mut text = results.to_string();
    // The DKIM "none" goes before ARC and DMARC, in the order of the checks.
    if let Some(at) = text
        .find(";\r\n\tarc=")
        .or_else(|| text.find(";\r\n\tdmarc="))
    {
        text.insert_str(at, &extra);
    } else {
        text.push_str(&extra);
    }
    if text == report.hostname {
        text.push_str("; none");
    }
    text
}
