//! The TLS part of sending a period's report: `_smtp._tls.<domain>` looked up, the JSON
//! report built and gzipped, posted to its `https:` destinations and queued to its `mailto:`
//! ones.
//!
//! The POSTs go before the transaction that ends the period: a scheduler that dies between
//! them leaves the rows to the next lease holder, which posts again (an HTTPS destination
//! may see a report twice then, never none; mail is queued exactly once). When every
//! destination is an endpoint and none took the report, the rows stay and the report is
//! tried again later, as after a DNS failure.

use ferrymail_dns::{LookupError, TlsReportDestinations};
use ferrymail_tls::HttpEndpoint;

use super::message;
use super::post;
use super::row::TlsRow;
use crate::aggregate_report::building::{
    Building, SendError, dns_failure, new_message, read_period, retry_later, signed,
};
use crate::model::report_rows::ReportKind;

/// Builds the TLS report of the period `building` holds the lease of, and sends it.
pub(crate) async fn send(building: &Building<'_>) -> Result<(), SendError> {
    let (queue, settings, period) = (building.queue, building.settings, building.period);
    let (_, left_out, rows) = read_period::<(), TlsRow>(queue, period).await?;
    if left_out > 0 {
        tracing::warn!(domain = %period.domain, left_out, "TLS report: sessions left out past report.tls.aggregate.max-records are not in the report");
    }
    let destinations = match lookup(building, &period.domain).await {
        Ok(destinations) => destinations,
        Err(LookupError::NotFound { .. }) => {
            tracing::info!(domain = %period.domain, period_start = period.start, "no _smtp._tls record with a valid rua for the domain: TLS report dropped");
            return building.drop_report("no_record").await;
        }
        Err(error) => return dns_failure(building, &error).await,
    };
    let mail = mail_destinations(building, &destinations);
    let endpoints = https_destinations(building, &destinations);
    if mail.is_empty() && endpoints.is_empty() {
        tracing::warn!(domain = %period.domain, period_start = period.start, "no usable rua destination for the TLS report: dropped");
        return building.drop_report("no_destination").await;
    }
    let report = message::report(&settings.reporter, period, rows);
    let json = message::json(&report).map_err(std::io::Error::other)?;
    let gz = message::gzip(&json)?;
    let name = message::file_name(&settings.reporter.submitter, &period.domain, &report);
    let raw = if mail.is_empty() {
        Vec::new()
    } else {
        let text = message::message(&settings.reporter, &period.domain, &report, &gz, &mail)?;
        signed(settings, text)
    };
    let size = (raw.len() as u64).max(gz.len() as u64);
    if size > settings.max_size {
        tracing::warn!(domain = %period.domain, size, max_size = settings.max_size, "TLS report larger than report.tls.aggregate.max-size: dropped");
        return building.drop_report("too_large").await;
    }
    let posted = post_all(building, &endpoints, &gz).await;
    if mail.is_empty() {
        if posted == 0 {
            let error = format!(
                "none of the {} https: destinations took it",
                endpoints.len()
            );
            return retry_later(building, "unreachable", &error).await;
        }
        building.send_without_message().await?;
        tracing::info!(domain = %period.domain, file = %name, policies = report.policies.len(), posted, "TLS report posted");
        return Ok(());
    }
    let message = new_message(queue, settings, mail.clone(), raw).await?;
    let id = message.id();
    building.queue_report(message).await?;
    tracing::info!(domain = %period.domain, queue_id = %id, file = %name, policies = report.policies.len(), recipients = ?mail, posted, "TLS report queued");
    Ok(())
}

/// Posts `gz` to every endpoint; how many took it.
async fn post_all(
    building: &Building<'_>,
    endpoints: &[(String, HttpEndpoint)],
    gz: &[u8],
) -> usize {
    let mut posted = 0;
    for (url, endpoint) in endpoints {
        match post::post(&building.options.tls, endpoint, gz).await {
            Ok(()) => posted += 1,
            Err(error) => {
                tracing::warn!(domain = %building.period.domain, destination = %url, %error, "TLS report not posted to this https: destination");
                building
                    .queue
                    .metrics
                    .report_destination_refused(ReportKind::Tls, "unreachable");
            }
        }
    }
    posted
}

/// The `mailto:` destinations that are addresses; the others are logged and counted.
fn mail_destinations(building: &Building<'_>, destinations: &TlsReportDestinations) -> Vec<String> {
    let mut mail = Vec::new();
    for address in &destinations.mail {
        let valid = address
            .rsplit_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
            && !address.contains(char::is_whitespace);
        if valid {
            mail.push(address.clone());
        } else {
            malformed(building, address);
        }
    }
    mail
}

/// The `https:` destinations whose URL can be requested; the others are logged and counted.
fn https_destinations(
    building: &Building<'_>,
    destinations: &TlsReportDestinations,
) -> Vec<(String, HttpEndpoint)> {
    let mut endpoints = Vec::new();
    for url in &destinations.https {
        match post::endpoint(url) {
            Some(endpoint) => endpoints.push((url.clone(), endpoint)),
            None => malformed(building, url),
        }
    }
    endpoints
}

fn malformed(building: &Building<'_>, destination: &str) {
    tracing::warn!(domain = %building.period.domain, %destination, "malformed rua destination in the _smtp._tls record: not sent a report");
    building
        .queue
        .metrics
        .report_destination_refused(ReportKind::Tls, "malformed");
}

/// The resolver's answer about `domain`'s report destinations.
async fn lookup(
    building: &Building<'_>,
    domain: &str,
) -> Result<TlsReportDestinations, LookupError> {
    let dns = building.dns(domain)?;
    ferrymail_dns::tls_report_destinations(&dns, domain).await
}
