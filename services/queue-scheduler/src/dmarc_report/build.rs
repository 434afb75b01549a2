//! The DMARC part of sending a period's report: the `rua` looked up again with its
//! external-destination authorization and size limits, the XML report, and the message
//! queued to the destinations it fits.

use ferrymail_dns::{LookupError, ReportDestinations};
use mail_auth::report::{PolicyPublished, Record};

use super::message::{self, file_name};
use crate::aggregate_report::building::{
    Building, SendError, dns_failure, new_message, read_period, signed,
};
use crate::model::report_rows::{DuePeriod, ReportKind};
use crate::service::Queue;

/// Builds the DMARC report of the period `building` holds the lease of, and queues it.
pub(crate) async fn send(building: &Building<'_>) -> Result<(), SendError> {
    let (queue, settings, period) = (building.queue, building.settings, building.period);
    let (policy, left_out, rows) = read_period::<PolicyPublished, Record>(queue, period).await?;
    let policy = policy.unwrap_or_else(|| PolicyPublished {
        domain: period.domain.clone(),
        ..PolicyPublished::default()
    });
    let destinations = match lookup(building, &period.domain).await {
        Ok(destinations) => destinations,
        Err(LookupError::NotFound { .. }) => {
            tracing::info!(domain = %period.domain, period_start = period.start, "no DMARC record with a rua for the domain any more: aggregate report dropped");
            return building.drop_report("no_record").await;
        }
        Err(error) => return dns_failure(building, &error).await,
    };
    for refused in &destinations.unauthorized {
        tracing::warn!(domain = %period.domain, destination = %refused, "rua destination outside the domain without its _report._dmarc authorization record: not sent a report (RFC 7489 §7.1)");
        queue
            .metrics
            .report_destination_refused(ReportKind::Dmarc, "unauthorized");
    }
    let report = message::report(&settings.reporter, period, policy, rows, left_out);
    let candidates: Vec<String> = destinations
        .authorized
        .iter()
        .map(|(a, _)| a.clone())
        .collect();
    let raw = signed(
        settings,
        message::message(&settings.reporter, &report, &candidates)?,
    );
    let size = raw.len() as u64;
    if size > settings.max_size {
        tracing::warn!(domain = %period.domain, size, max_size = settings.max_size, "DMARC aggregate report larger than report.dmarc.aggregate.max-size: dropped");
        return building.drop_report("too_large").await;
    }
    let recipients = fitting(queue, period, &destinations, size);
    if recipients.is_empty() {
        tracing::warn!(domain = %period.domain, period_start = period.start, "no rua destination may receive the DMARC aggregate report: dropped");
        return building.drop_report("no_destination").await;
    }
    // The To header names every authorized destination; the envelope only those the size
    // allows.
    let name = file_name(&settings.reporter.submitter, &report);
    let message = new_message(queue, settings, recipients.clone(), raw).await?;
    let id = message.id();
    building.queue_report(message).await?;
    tracing::info!(domain = %period.domain, queue_id = %id, file = %name, rows = report.records().len(), recipients = ?recipients, "DMARC aggregate report queued");
    Ok(())
}

/// The authorized destinations whose size limit `size` fits.
fn fitting(
    queue: &Queue,
    period: &DuePeriod,
    destinations: &ReportDestinations,
    size: u64,
) -> Vec<String> {
    let mut fitting = Vec::new();
    for (address, limit) in &destinations.authorized {
        if *limit == 0 || size <= *limit {
            fitting.push(address.clone());
        } else {
            tracing::warn!(domain = %period.domain, destination = %address, size, limit, "DMARC aggregate report larger than the rua's size limit: not sent there");
            queue
                .metrics
                .report_destination_refused(ReportKind::Dmarc, "too_large");
        }
    }
    fitting
}

/// The resolver's answer about `domain`'s report destinations.
async fn lookup(building: &Building<'_>, domain: &str) -> Result<ReportDestinations, LookupError> {
    let dns = building.dns(domain)?;
    ferrymail_dns::dmarc_report_destinations(&dns, domain).await
}
