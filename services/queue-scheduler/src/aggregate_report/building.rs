//! One period's report under its lease, as each kind builds it: what the builders share
//! (reading the period's rows, signing, queueing the report message) and the commit that ends
//! the period, with the rows deleted and the report queued in one transaction, only while the
//! lease is held.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use ferrymail_dns::{LookupError, MessageAuthenticator};
use ferrymail_rpc::queue::{BodyType, Envelope, Notify, Recipient};
use ferrymail_store::blob::{MAX_SMALL_BLOB, SmallBlob};
use ferrymail_store::{StoreError, tuple};
use serde::de::DeserializeOwned;

use super::settings::AggregateSettings;
use crate::model::lease::Lease;
use crate::model::new_message::{Body, NewMessage, Written};
use crate::model::queue_id::{MessageId, unix_millis};
use crate::model::report_rows::{self, DuePeriod, ReportKind};
use crate::service::Queue;

/// Rows read per transaction.
const PAGE: usize = 500;
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
    /// TLS client settings, for reports posted to `https:` destinations.
    pub(crate) tls: ferrymail_tls::TlsSettings,
    /// The resolver of `resolver.*`, or why there is none.
    pub(crate) dns: Arc<dyn Fn() -> Result<Arc<MessageAuthenticator>, String> + Send + Sync>,
}

/// The kind's name in logs.
pub(crate) fn label(kind: ReportKind) -> &'static str {
    match kind {
        ReportKind::Dmarc => "DMARC aggregate report",
        ReportKind::Tls => "SMTP TLS report",
    }
}

/// Why a report cannot be sent now: it is tried again.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("the report message cannot be built: {0}")]
    Build(#[from] std::io::Error),
}

/// The lease of `period` was lost to another scheduler before the commit.
#[derive(Debug, thiserror::Error)]
#[error("the report's lease was taken over")]
pub(crate) struct LeaseLost;

/// What building one period's report needs: the queue, the settings, the period and the
/// lease it is built under.
pub(crate) struct Building<'a> {
    /// The queue.
    pub(crate) queue: &'a Queue,
    /// The sender's options (the resolver).
    pub(crate) options: &'a SenderOptions,
    /// The kind's settings.
    pub(crate) settings: &'a AggregateSettings,
    /// The period.
    pub(crate) period: &'a DuePeriod,
    /// The lease held.
    pub(crate) lease: &'a Lease,
}

impl Building<'_> {
    /// The resolver of `resolver.*`, or a temporary failure naming `name`.
    pub(crate) fn dns(&self, name: &str) -> Result<Arc<MessageAuthenticator>, LookupError> {
        (self.options.dns)().map_err(|reason| LookupError::Temporary {
            name: name.to_owned(),
            reason,
        })
    }

    /// Ends the period without a report, counted as dropped for `reason`.
    pub(crate) async fn drop_report(&self, reason: &'static str) -> Result<(), SendError> {
        self.queue.metrics.report_dropped(self.period.kind, reason);
        finish(self.queue, self.period, self.lease, None).await
    }

    /// Ends the period after the report went out by other means than mail.
    pub(crate) async fn send_without_message(&self) -> Result<(), SendError> {
        finish(self.queue, self.period, self.lease, None).await?;
        self.queue.metrics.report_sent(self.period.kind);
        Ok(())
    }

    /// Ends the period with `message` queued.
    pub(crate) async fn queue_report(&self, message: NewMessage) -> Result<(), SendError> {
        finish(self.queue, self.period, self.lease, Some(Arc::new(message))).await?;
        self.queue.metrics.report_sent(self.period.kind);
        Ok(())
    }
}

/// `raw` with the `DKIM-Signature` fields of the kind's `sign` in front.
pub(crate) fn signed(settings: &AggregateSettings, raw: Vec<u8>) -> Vec<u8> {
    let mut headers = Vec::new();
    for signer in &settings.signers {
        match signer.sign(&raw) {
            Ok(header) => headers.extend_from_slice(header.as_bytes()),
            Err(error) => {
                tracing::warn!(signature = %signer.id, %error, "DKIM signing of a report failed; it goes without this signature")
            }
        }
    }
    if headers.is_empty() {
        return raw;
    }
    headers.extend_from_slice(&raw);
    headers
}

/// The policy, the count of results left out, and every row of `period`, read a page per
/// transaction.
pub(crate) async fn read_period<P, R>(
    queue: &Queue,
    period: &DuePeriod,
) -> Result<(Option<P>, u64, Vec<(R, u64)>), StoreError>
where
    P: DeserializeOwned + Send + 'static,
    R: DeserializeOwned + Send + 'static,
{
    let (keys, owned) = (queue.keys.clone(), period.clone());
    let (policy, left_out) = queue
        .store
        .transact(move |tx| {
            let (keys, period) = (keys.clone(), owned.clone());
            Box::pin(async move {
                let policy = report_rows::policy::<P>(tx, &keys, &period).await?;
                let left_out = report_rows::overflow(tx, &keys, &period).await?;
                Ok((policy, left_out))
            })
        })
        .await?;
    let kind = period.kind;
    let mut rows = Vec::new();
    let mut range = Some(queue.keys.report_rows(kind, &period.domain, period.start));
    while let Some(current) = range.take() {
        let keys = queue.keys.clone();
        let page = queue
            .store
            .transact(move |tx| {
                let (keys, current) = (keys.clone(), current.clone());
                Box::pin(async move {
                    report_rows::read_rows::<R>(tx, &keys, kind, &current, PAGE).await
                })
            })
            .await?;
        if page.unreadable > 0 {
            tracing::warn!(domain = %period.domain, rows = page.unreadable, kind = label(kind), "report rows that cannot be read back: left out of the report");
        }
        rows.extend(page.rows);
        range = page.rest;
    }
    Ok((policy, left_out, rows))
}

/// A DNS failure at report time: the rows stay, and the report is tried again later, up to
/// [`MAX_DNS_ATTEMPTS`] times; then it is dropped.
pub(crate) async fn dns_failure(
    building: &Building<'_>,
    error: &LookupError,
) -> Result<(), SendError> {
    building
        .queue
        .metrics
        .report_dns_failure(building.period.kind);
    retry_later(building, "dns", error).await
}

/// A failure at report time that may pass (DNS, every endpoint unreachable): the rows stay,
/// and the report is tried again later, up to [`MAX_DNS_ATTEMPTS`] times; then it is dropped,
/// counted under `reason`.
pub(crate) async fn retry_later(
    building: &Building<'_>,
    reason: &'static str,
    error: &(dyn std::fmt::Display + Sync),
) -> Result<(), SendError> {
    let (queue, period, lease) = (building.queue, building.period, building.lease);
    let kind = period.kind;
    let base = building
        .settings
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
                let key = keys.report_retry(period.kind, &period.domain, period.start);
                let attempts = match tx.get(&key).await? {
                    Some(value) => decode_retry(&value)?.0,
                    None => 0,
                } + 1;
                if attempts >= MAX_DNS_ATTEMPTS {
                    report_rows::clear(tx, &keys, &period)?;
                    return Ok(attempts);
                }
                let wait = base
                    .saturating_mul(1 << attempts.min(16))
                    .min(MAX_RETRY_WAIT);
                let next_ms = now_ms.saturating_add(millis(wait));
                tx.set(&key, &tuple::pack(&(attempts, next_ms)))?;
                tx.clear(&keys.report_lease(period.kind, &period.domain, period.start))?;
                Ok(attempts)
            })
        })
        .await?;
    let kind_label = label(kind);
    match (attempts >= MAX_DNS_ATTEMPTS, reason) {
        (true, "dns") => {
            tracing::warn!(domain = %period.domain, period_start = period.start, attempts, %error, kind = kind_label, "DNS kept failing at report time: report dropped")
        }
        (true, _) => {
            tracing::warn!(domain = %period.domain, period_start = period.start, attempts, %error, reason, kind = kind_label, "no destination took the report on any try: report dropped")
        }
        (false, "dns") => {
            tracing::warn!(domain = %period.domain, period_start = period.start, attempts, %error, kind = kind_label, "DNS failed at report time: report kept, tried again later")
        }
        (false, _) => {
            tracing::warn!(domain = %period.domain, period_start = period.start, attempts, %error, reason, kind = kind_label, "no destination took the report: rows kept, tried again later")
        }
    }
    if attempts >= MAX_DNS_ATTEMPTS {
        queue.metrics.report_dropped(kind, reason);
    }
    Ok(())
}

/// Commits the end of `period` under `lease`: queues `message` if any, deletes the rows.
pub(crate) async fn finish(
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
                report_rows::clear(tx, &keys, &period)
            })
        })
        .await?;
    if let Some(entry) = due {
        queue.push_fresh(entry);
    }
    Ok(())
}

/// Aborts the transaction unless `period`'s lease is still the one under `token`.
pub(crate) async fn check_lease(
    tx: &ferrymail_store::Transaction,
    keys: &crate::model::keys::Keys,
    period: &DuePeriod,
    token: u64,
    now_ms: u64,
) -> Result<(), StoreError> {
    let held = tx
        .get(&keys.report_lease(period.kind, &period.domain, period.start))
        .await?
        .map(|v| Lease::decode(&v))
        .transpose()?;
    match held {
        Some(held) if held.token == token && held.expiry_ms > now_ms => Ok(()),
        _ => Err(StoreError::abort(LeaseLost)),
    }
}

/// The report message as a new message of the queue, from the reporting address.
pub(crate) async fn new_message(
    queue: &Queue,
    settings: &AggregateSettings,
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

pub(crate) fn decode_retry(value: &[u8]) -> Result<(u64, u64), StoreError> {
    tuple::unpack::<(u64, u64)>(value)
        .map_err(|e| StoreError::Corrupt(format!("report retry: {e}")))
}

pub(crate) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
