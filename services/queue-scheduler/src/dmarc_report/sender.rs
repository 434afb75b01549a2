//! The report sender of one scheduler process: finds the periods that have ended, takes
//! each one's lease, builds its report and queues it in the transaction that deletes its
//! rows (see the module above for why that is exactly once).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use ferrymail_dns::{LookupError, MessageAuthenticator, ReportDestinations};
use ferrymail_rpc::queue::{BodyType, Envelope, Notify, Recipient};
use ferrymail_store::blob::{MAX_SMALL_BLOB, SmallBlob};
use ferrymail_store::{StoreError, tuple};
use mail_auth::report::{PolicyPublished, Record};
use tokio_util::sync::CancellationToken;

use super::message::{self, file_name};
use super::settings::DmarcSettings;
use crate::model::dmarc_rows::{self, DuePeriod};
use crate::model::lease::Lease;
use crate::model::new_message::{Body, NewMessage, Written};
use crate::model::queue_id::{MessageId, unix_millis};
use crate::service::Queue;

/// Rows read per transaction.
const PAGE: usize = 500;
/// Reports looked at per pass.
const DUE_BATCH: usize = 100;
/// DNS failures a report survives; then it is dropped (with a warning and a metric).
pub(crate) const MAX_DNS_ATTEMPTS: u64 = 5;
/// Longest wait before the next try after a DNS failure.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(3_600);

/// What the sender of one process needs beside the queue.
#[derive(Clone)]
pub(crate) struct SenderOptions {
    /// This process's name in leases.
    pub(crate) owner: String,
    /// How long a report's lease lasts: building and queueing it takes far less.
    pub(crate) lease: Duration,
    /// `queue.lease.max-clock-skew`: a period is reported this long after its end, and a
    /// dead holder's lease is taken over this long after it ran out.
    pub(crate) skew: Duration,
    /// The resolver of `resolver.*`, or why there is none.
    pub(crate) dns: Arc<dyn Fn() -> Result<Arc<MessageAuthenticator>, String> + Send + Sync>,
}

/// Sends the reports that come due until `stop`.
pub(crate) async fn run(queue: Arc<Queue>, options: SenderOptions, stop: CancellationToken) {
    loop {
        let settings = queue.dmarc.load_full();
        let wait = match settings.period {
            Some(period) => {
                send_due(&queue, &options, &settings).await;
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

/// Sends each report due now that no other scheduler is sending.
async fn send_due(queue: &Queue, options: &SenderOptions, settings: &DmarcSettings) {
    let now_s = unix_millis(SystemTime::now()) / 1000;
    let until = now_s.saturating_sub(options.skew.as_secs());
    let keys = queue.keys.clone();
    let due = queue
        .store
        .transact(move |tx| {
            let keys = keys.clone();
            Box::pin(async move { dmarc_rows::due(tx, &keys, until, DUE_BATCH).await })
        })
        .await;
    let due = match due {
        Ok(due) => due,
        Err(error) => {
            tracing::warn!(%error, "cannot read the DMARC reports due; trying again later");
            return;
        }
    };
    for period in due {
        if let Err(error) = send_one(queue, options, settings, &period).await {
            tracing::warn!(domain = %period.domain, period_start = period.start, %error, "DMARC aggregate report not sent yet; its rows are kept for the next try");
        }
    }
}

/// Why a report cannot be sent now: it is tried again.
#[derive(Debug, thiserror::Error)]
enum SendError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("the report message cannot be built: {0}")]
    Build(#[from] std::io::Error),
}

/// The lease of `period` was lost to another scheduler before the commit.
#[derive(Debug, thiserror::Error)]
#[error("the report's lease was taken over")]
struct LeaseLost;

/// Sends the report of `period` if this process can take its lease.
async fn send_one(
    queue: &Queue,
    options: &SenderOptions,
    settings: &DmarcSettings,
    period: &DuePeriod,
) -> Result<(), SendError> {
    let Some(lease) = take_lease(queue, options, period).await? else {
        return Ok(());
    };
    tracing::info!(domain = %period.domain, period_start = period.start, token = lease.token, "DMARC report lease taken: building the report");
    let (policy, left_out, rows) = read_period(queue, period).await?;
    let destinations = match lookup(options, &period.domain).await {
        Ok(destinations) => destinations,
        Err(LookupError::NotFound { .. }) => {
            tracing::info!(domain = %period.domain, period_start = period.start, "no DMARC record with a rua for the domain any more: aggregate report dropped");
            queue.metrics.dmarc_report_dropped("no_record");
            return finish(queue, period, &lease, None).await;
        }
        Err(error) => return dns_failure(queue, period, &lease, &error).await,
    };
    for refused in &destinations.unauthorized {
        tracing::warn!(domain = %period.domain, destination = %refused, "rua destination outside the domain without its _report._dmarc authorization record: not sent a report (RFC 7489 §7.1)");
        queue.metrics.dmarc_destination_refused("unauthorized");
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
        queue.metrics.dmarc_report_dropped("too_large");
        return finish(queue, period, &lease, None).await;
    }
    let recipients = fitting(queue, period, &destinations, size);
    if recipients.is_empty() {
        tracing::warn!(domain = %period.domain, period_start = period.start, "no rua destination may receive the DMARC aggregate report: dropped");
        queue.metrics.dmarc_report_dropped("no_destination");
        return finish(queue, period, &lease, None).await;
    }
    // The To header names every authorized destination; the envelope only those the size
    // allows.
    let name = file_name(&settings.reporter.submitter, &report);
    let message = new_message(queue, settings, recipients.clone(), raw).await?;
    let id = message.id();
    finish(queue, period, &lease, Some(Arc::new(message))).await?;
    queue.metrics.dmarc_report_sent();
    tracing::info!(domain = %period.domain, queue_id = %id, file = %name, rows = report.records().len(), recipients = ?recipients, "DMARC aggregate report queued");
    Ok(())
}

/// `raw` with the `DKIM-Signature` fields of `report.dmarc.aggregate.sign` in front.
fn signed(settings: &DmarcSettings, raw: Vec<u8>) -> Vec<u8> {
    let mut headers = Vec::new();
    for signer in &settings.signers {
        match signer.sign(&raw) {
            Ok(header) => headers.extend_from_slice(header.as_bytes()),
            Err(error) => {
                tracing::warn!(signature = %signer.id, %error, "DKIM signing of a DMARC report failed; it goes without this signature")
            }
        }
    }
    if headers.is_empty() {
        return raw;
    }
    headers.extend_from_slice(&raw);
    headers
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
            queue.metrics.dmarc_destination_refused("too_large");
        }
    }
    fitting
}

/// The resolver's answer about `domain`'s report destinations.
async fn lookup(options: &SenderOptions, domain: &str) -> Result<ReportDestinations, LookupError> {
    let dns = (options.dns)().map_err(|reason| LookupError::Temporary {
        name: domain.to_owned(),
        reason,
    })?;
    ferrymail_dns::dmarc_report_destinations(&dns, domain).await
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
                    .get(&keys.dmarc_due(period.end, domain, start))
                    .await?
                    .is_none()
                {
                    return Ok(None);
                }
                if let Some(retry) = tx.get(&keys.dmarc_retry(domain, start)).await? {
                    let (_, next_ms) = decode_retry(&retry)?;
                    if next_ms > now_ms {
                        return Ok(None);
                    }
                }
                let key = keys.dmarc_lease(domain, start);
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

/// The policy, the count of evaluations left out, and every row of `period`, read a page
/// per transaction.
async fn read_period(
    queue: &Queue,
    period: &DuePeriod,
) -> Result<(PolicyPublished, u64, Vec<(Record, u64)>), StoreError> {
    let (keys, owned) = (queue.keys.clone(), period.clone());
    let (policy, left_out) = queue
        .store
        .transact(move |tx| {
            let (keys, period) = (keys.clone(), owned.clone());
            Box::pin(async move {
                let policy = dmarc_rows::policy(tx, &keys, &period).await?;
                let left_out = dmarc_rows::overflow(tx, &keys, &period).await?;
                Ok((policy, left_out))
            })
        })
        .await?;
    let mut rows = Vec::new();
    let mut range = Some(queue.keys.dmarc_rows(&period.domain, period.start));
    while let Some(current) = range.take() {
        let keys = queue.keys.clone();
        let page = queue
            .store
            .transact(move |tx| {
                let (keys, current) = (keys.clone(), current.clone());
                Box::pin(async move { dmarc_rows::read_rows(tx, &keys, &current, PAGE).await })
            })
            .await?;
        if page.unreadable > 0 {
            tracing::warn!(domain = %period.domain, rows = page.unreadable, "DMARC report rows that cannot be read back: left out of the report");
        }
        rows.extend(page.rows);
        range = page.rest;
    }
    let policy = policy.unwrap_or_else(|| PolicyPublished {
        domain: period.domain.clone(),
        ..PolicyPublished::default()
    });
    Ok((policy, left_out, rows))
}

/// A DNS failure at report time: the rows stay, and the report is tried again later, up to
/// [`MAX_DNS_ATTEMPTS`] times; then it is dropped.
async fn dns_failure(
    queue: &Queue,
    period: &DuePeriod,
    lease: &Lease,
    error: &LookupError,
) -> Result<(), SendError> {
    queue.metrics.dmarc_dns_failure();
    let base = queue
        .dmarc
        .load()
        .period
        .unwrap_or(MAX_RETRY_WAIT)
        .min(Duration::from_secs(60));
    let (keys, period_owned, token) = (queue.keys.clone(), period.clone(), lease.token);
    let now_ms = unix_millis(SystemTime::now());
    let attempts = queue
        .store
        .transact(move |tx| {
            let (keys, period) = (keys.clone(), period_owned.clone());
            Box::pin(async move {
                check_lease(tx, &keys, &period, token, now_ms).await?;
                let key = keys.dmarc_retry(&period.domain, period.start);
                let attempts = match tx.get(&key).await? {
                    Some(value) => decode_retry(&value)?.0,
                    None => 0,
                } + 1;
                if attempts >= MAX_DNS_ATTEMPTS {
                    dmarc_rows::clear(tx, &keys, &period)?;
                    return Ok(attempts);
                }
                let wait = base
                    .saturating_mul(1 << attempts.min(16))
                    .min(MAX_RETRY_WAIT);
                let next_ms = now_ms.saturating_add(millis(wait));
                tx.set(&key, &tuple::pack(&(attempts, next_ms)))?;
                tx.clear(&keys.dmarc_lease(&period.domain, period.start))?;
                Ok(attempts)
            })
        })
        .await?;
    if attempts >= MAX_DNS_ATTEMPTS {
        tracing::warn!(domain = %period.domain, period_start = period.start, attempts, %error, "DNS kept failing at report time: DMARC aggregate report dropped");
        queue.metrics.dmarc_report_dropped("dns");
    } else {
        tracing::warn!(domain = %period.domain, period_start = period.start, attempts, %error, "DNS failed at report time: DMARC aggregate report kept, tried again later");
    }
    Ok(())
}

/// Commits the end of `period` under `lease`: queues `message` if any, deletes the rows.
async fn finish(
    queue: &Queue,
    period: &DuePeriod,
    lease: &Lease,
    message: Option<Arc<NewMessage>>,
) -> Result<(), SendError> {
    let (keys, blobs, period_owned, token) = (
        queue.keys.clone(),
        queue.blobs.clone(),
        period.clone(),
        lease.token,
    );
    let now_ms = unix_millis(SystemTime::now());
    let due = message.as_ref().map(|m| m.due_entry());
    queue
        .store
        .transact(move |tx| {
            let (keys, blobs, period) = (keys.clone(), blobs.clone(), period_owned.clone());
            let message = message.clone();
            Box::pin(async move {
                check_lease(tx, &keys, &period, token, now_ms).await?;
                if let Some(message) = &message
                    && message.write(tx, &keys, &blobs).await? == Written::Before
                {
                    return Ok(());
                }
                dmarc_rows::clear(tx, &keys, &period)
            })
        })
        .await?;
    if let Some(entry) = due {
        queue.push_fresh(entry);
    }
    Ok(())
}

/// Aborts the transaction unless `period`'s lease is still the one under `token`.
async fn check_lease(
    tx: &ferrymail_store::Transaction,
    keys: &crate::model::keys::Keys,
    period: &DuePeriod,
    token: u64,
    now_ms: u64,
) -> Result<(), StoreError> {
    let held = tx
        .get(&keys.dmarc_lease(&period.domain, period.start))
        .await?
        .map(|v| Lease::decode(&v))
        .transpose()?;
    match held {
        Some(held) if held.token == token && held.expiry_ms > now_ms => Ok(()),
        _ => Err(StoreError::abort(LeaseLost)),
    }
}

/// The report message as a new message of the queue, from the reporting address.
async fn new_message(
    queue: &Queue,
    settings: &DmarcSettings,
    recipients: Vec<String>,
    raw: Vec<u8>,
) -> Result<NewMessage, SendError> {
    let size = raw.len() as u64;
    let body = if raw.len() <= MAX_SMALL_BLOB {
        let small = SmallBlob::new([Bytes::from(raw)]).ok_or_else(|| {
            SendError::Store(StoreError::abort(std::io::Error::other(
                "a report within the small-blob bound was refused",
            )))
        })?;
        Body::Small(small)
    } else {
        // Written first, unreferenced until the report's transaction names it.
        let blob = queue
            .blobs
            .write_all(&raw)
            .await
            .map_err(|e| SendError::Store(StoreError::abort(e)))?;
        Body::Streamed { blob, size }
    };
    let envelope = Envelope {
        sender: settings.reporter.from_address.clone(),
        recipients: recipients
            .into_iter()
            .map(|address| Recipient {
                // Reports are not worth a bounce to the reporting address.
                notify: Notify::Never,
                ..Recipient::new(address)
            })
            .collect(),
        body_type: BodyType::SevenBit,
        helo: settings.reporter.submitter.clone(),
        ..Envelope::default()
    };
    let expire_ms = millis(queue.expire());
    Ok(NewMessage::new(
        MessageId::generate(SystemTime::now()),
        envelope,
        body,
        None,
        expire_ms,
    ))
}

fn decode_retry(value: &[u8]) -> Result<(u64, u64), StoreError> {
    tuple::unpack::<(u64, u64)>(value).map_err(|e| StoreError::Corrupt(format!("dmarc retry: {e}")))
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
