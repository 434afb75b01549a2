//! The report sender of one scheduler process, for each kind of aggregate report: finds the
//! periods that have ended, takes each one's lease, has the kind build and send its report,
//! and commits the end of the period (the report queued, when it goes by mail) in the
//! transaction that deletes its rows (see the module above for why that is exactly once).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ferrymail_store::StoreError;
use tokio_util::sync::CancellationToken;

use super::building::{Building, SendError, SenderOptions, decode_retry, label, millis};
use super::settings::AggregateSettings;
use crate::model::lease::Lease;
use crate::model::queue_id::unix_millis;
use crate::model::report_rows::{self, DuePeriod, ReportKind};
use crate::service::Queue;

/// Reports looked at per pass.
const DUE_BATCH: usize = 100;

/// Sends the reports of `kind` that come due until `stop`.
pub(crate) async fn run(
    queue: Arc<Queue>,
    options: SenderOptions,
    kind: ReportKind,
    stop: CancellationToken,
) {
    loop {
        let settings = queue.report_settings(kind).load_full();
        let wait = match settings.period {
            Some(period) => {
                send_due(&queue, &options, kind, &settings).await;
                (period / 6).clamp(Duration::from_secs(1), Duration::from_secs(60))
            }
            None => Duration::from_secs(30),
        };
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// Sends each report of `kind` due now that no other scheduler is sending.
async fn send_due(
    queue: &Queue,
    options: &SenderOptions,
    kind: ReportKind,
    settings: &AggregateSettings,
) {
    let now_s = unix_millis(SystemTime::now()) / 1000;
    let until = now_s.saturating_sub(options.skew.as_secs());
    let keys = queue.keys.clone();
    let due = queue
        .store
        .transact(move |tx| {
            let keys = keys.clone();
            Box::pin(async move { report_rows::due(tx, &keys, kind, until, DUE_BATCH).await })
        })
        .await;
    let due = match due {
        Ok(due) => due,
        Err(error) => {
            tracing::warn!(%error, kind = label(kind), "cannot read the reports due; trying again later");
            return;
        }
    };
    for period in due {
        if let Err(error) = send_one(queue, options, settings, &period).await {
            tracing::warn!(domain = %period.domain, period_start = period.start, %error, kind = label(kind), "report not sent yet; its rows are kept for the next try");
        }
    }
}

/// Sends the report of `period` if this process can take its lease.
async fn send_one(
    queue: &Queue,
    options: &SenderOptions,
    settings: &AggregateSettings,
    period: &DuePeriod,
) -> Result<(), SendError> {
    let Some(lease) = take_lease(queue, options, period).await? else {
        return Ok(());
    };
    match period.kind {
        ReportKind::Dmarc => {
            tracing::info!(domain = %period.domain, period_start = period.start, token = lease.token, "DMARC report lease taken: building the report")
        }
        ReportKind::Tls => {
            tracing::info!(domain = %period.domain, period_start = period.start, token = lease.token, "TLS report lease taken: building the report")
        }
    }
    let building = Building {
        queue,
        options,
        settings,
        period,
        lease: &lease,
    };
    match period.kind {
        ReportKind::Dmarc => crate::dmarc_report::build::send(&building).await,
        ReportKind::Tls => crate::tls_report::build::send(&building).await,
    }
}

/// Takes the lease of `period`: `None` when another scheduler holds it, the report was sent
/// meanwhile, or a DNS failure put off the next try.
async fn take_lease(
    queue: &Queue,
    options: &SenderOptions,
    period: &DuePeriod,
) -> Result<Option<Lease>, StoreError> {
    let now_ms = unix_millis(SystemTime::now());
    let expiry_ms = now_ms.saturating_add(millis(options.lease));
    let skew_ms = millis(options.skew);
    let (keys, owner, period) = (queue.keys.clone(), options.owner.clone(), period.clone());
    queue
        .store
        .transact(move |tx| {
            let (keys, owner, period) = (keys.clone(), owner.clone(), period.clone());
            Box::pin(async move {
                let (domain, start) = (period.domain.as_str(), period.start);
                if tx
                    .get(&keys.report_due(period.kind, period.end, domain, start))
                    .await?
                    .is_none()
                {
                    return Ok(None);
                }
                if let Some(retry) = tx
                    .get(&keys.report_retry(period.kind, domain, start))
                    .await?
                {
                    let (_, next_ms) = decode_retry(&retry)?;
                    if next_ms > now_ms {
                        return Ok(None);
                    }
                }
                let key = keys.report_lease(period.kind, domain, start);
                let previous = tx.get(&key).await?.map(|v| Lease::decode(&v)).transpose()?;
                if previous
                    .as_ref()
                    .is_some_and(|held| held.expiry_ms.saturating_add(skew_ms) > now_ms)
                {
                    return Ok(None);
                }
                let lease = Lease {
                    owner,
                    token: previous.map_or(1, |held| held.token.saturating_add(1)),
                    expiry_ms,
                };
                tx.set(&key, &lease.encode())?;
                Ok(Some(lease))
            })
        })
        .await
}
