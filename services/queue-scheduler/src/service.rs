//! [`Queue`]: the queue model in the store, serving the `Queue` contract.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use arc_swap::{ArcSwap, ArcSwapOption};
use async_trait::async_trait;
use ferrymail_config::model::queue::Queue as QueueConfig;
use ferrymail_config::model::queue_limits::Quota;
use ferrymail_config::model::webhook::Webhook;
use ferrymail_rpc::queue::{
    BodyStream, BulkReport, BulkRequest, DestinationScope, Destinations, DmarcEvaluation, Envelope,
    ListPage, ListRequest, MessageDetail, QueueError, QueueId, QueueService, QueueStats, Resumed,
};
use ferrymail_store::Store;
use ferrymail_store::blob::BlobStore;

use crate::aggregate_report::settings::AggregateSettings;
use crate::events::Events;
use crate::handoff::Handoff;
use crate::metrics::QueueMetrics;
use crate::model::counters::read_stats;
use crate::model::due_index::{DueEntry, read_due};
use crate::model::keys::Keys;
use crate::model::queue_id::SHARDS;
use crate::model::queue_id::{MessageId, unix_millis};
use crate::model::report_rows::ReportKind;
use crate::model::stored_message::StoredMessage;
use crate::route::Router;
use crate::store_failure::from_store;

/// The durable mail queue, kept in the store and shared by every process that opens it.
///
/// Cheap to share behind an `Arc`; every operation is one or a few short transactions, so any
/// number of `Queue`s on any number of pods may work on the same store at once.
#[derive(Debug)]
pub struct Queue {
    pub(crate) store: Store,
    pub(crate) blobs: BlobStore,
    pub(crate) keys: Arc<Keys>,
    /// Messages enqueued (or retried) through this process, for its scheduler to attempt at
    /// once.
    pub(crate) handoff: Handoff,
    /// `queue.schedule.expire` in milliseconds, replaced on reload.
    expire_ms: AtomicU64,
    /// `queue.quota.<id>`, replaced on reload.
    pub(crate) quotas: ArcSwap<BTreeMap<String, Quota>>,
    /// Counters and gauges.
    pub(crate) metrics: QueueMetrics,
    /// `server.hostname`, which signs the notices of a bulk cancel; replaced on reload.
    pub(crate) hostname: ArcSwap<String>,
    /// `queue.outbound.next-hop`, for bulk actions by next hop and the next hops of events;
    /// replaced on reload.
    pub(crate) router: ArcSwapOption<Router>,
    /// Delivery events: the webhooks in force and the dispatcher's wake-up.
    pub(crate) events: Events,
    /// `report.dmarc.aggregate.*`, replaced on reload.
    pub(crate) dmarc: ArcSwap<AggregateSettings>,
    /// `report.tls.aggregate.*`, replaced on reload.
    pub(crate) tls_reports: ArcSwap<AggregateSettings>,
}

impl Queue {
    /// The queue kept in `store`, with the settings of `config`.
    pub fn new(store: Store, config: &QueueConfig) -> Self {
        Self::with_metrics(store, config, QueueMetrics::unregistered())
    }

    /// [`Queue::new`], recording into `metrics`.
    pub fn with_metrics(store: Store, config: &QueueConfig, metrics: QueueMetrics) -> Self {
        let keys = Arc::new(Keys::new(store.root()));
        let queue = Self {
            blobs: BlobStore::new(store.clone()),
            store,
            keys,
            handoff: Handoff::default(),
            expire_ms: AtomicU64::new(0),
            quotas: ArcSwap::from_pointee(BTreeMap::new()),
            metrics,
            hostname: ArcSwap::from_pointee("localhost".to_owned()),
            router: ArcSwapOption::empty(),
            events: Events::default(),
            dmarc: ArcSwap::from_pointee(AggregateSettings::default()),
            tls_reports: ArcSwap::from_pointee(AggregateSettings::default()),
        };
        queue.apply(config);
        queue
    }

    /// Applies a reloaded configuration; messages already queued keep their expiry.
    pub fn apply(&self, config: &QueueConfig) {
        let expire = u64::try_from(config.expire.as_millis()).unwrap_or(u64::MAX);
        self.expire_ms.store(expire, Ordering::Relaxed);
        self.quotas.store(Arc::new(config.quotas.clone()));
        self.events.apply_outbox(&config.events);
    }

    /// Sets the webhooks delivery events are sent to (`webhook.<id>`); with none, no event is
    /// recorded.
    pub fn set_webhooks(&self, webhooks: &BTreeMap<String, Webhook>) {
        self.events.apply_webhooks(webhooks);
    }

    /// Sets the name the queue's own notices are reported from (`server.hostname`).
    pub fn set_hostname(&self, hostname: &str) {
        self.hostname.store(Arc::new(hostname.to_owned()));
    }

    /// Sets the routing bulk actions match next hops against: the scheduler's.
    pub fn set_router(&self, router: Router) {
        self.router.store(Some(Arc::new(router)));
    }

    /// Hands `entry`, a message due now, to this process's scheduler, which claims it like
    /// any other (see [`Handoff`]).
    pub(crate) fn push_fresh(&self, entry: DueEntry) {
        self.handoff.push_due(entry);
    }

    /// How long a new message may stay queued.
    pub(crate) fn expire(&self) -> Duration {
        Duration::from_millis(self.expire_ms.load(Ordering::Relaxed))
    }

    /// This queue's metrics.
    pub fn metrics(&self) -> &QueueMetrics {
        &self.metrics
    }

    /// The blob store holding the bodies.
    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    /// Message `id` and its recipients, as stored (what delivery reads).
    pub async fn load(&self, id: &MessageId) -> Result<StoredMessage, QueueError> {
        let (keys, id) = (self.keys.clone(), *id);
        self.store
            .transact(move |tx| {
                let keys = keys.clone();
                Box::pin(async move { StoredMessage::read(tx, &keys, &id).await })
            })
            .await
            .map_err(|e| from_store("load", e))?
            .ok_or_else(|| not_found(&id))
    }

    /// Up to `limit` messages of `shard` due at or before `now`: highest priority first, then
    /// oldest due first. Reads only due entries, never the whole queue.
    pub async fn due(
        &self,
        shard: u16,
        now: SystemTime,
        limit: usize,
    ) -> Result<Vec<DueEntry>, QueueError> {
        self.due_in(&[shard], now, limit).await
    }

    /// [`Queue::due`] of each of `shards` (up to `limit` each), read in one transaction.
    pub async fn due_in(
        &self,
        shards: &[u16],
        now: SystemTime,
        limit: usize,
    ) -> Result<Vec<DueEntry>, QueueError> {
        if let Some(shard) = shards.iter().find(|&&shard| shard >= SHARDS) {
            return Err(QueueError::InvalidArgument(format!(
                "shard {shard} is not below {SHARDS}"
            )));
        }
        let (keys, now_ms) = (self.keys.clone(), unix_millis(now));
        let shards: Arc<[u16]> = shards.into();
        self.store
            .transact(move |tx| {
                let (keys, shards) = (keys.clone(), shards.clone());
                Box::pin(async move {
                    let mut due = Vec::new();
                    for &shard in shards.iter() {
                        due.extend(read_due(tx, &keys, shard, now_ms, limit).await?);
                    }
                    Ok(due)
                })
            })
            .await
            .map_err(|e| from_store("due", e))
    }
}

/// The error for a queue id naming no message.
pub(crate) fn not_found(id: &MessageId) -> QueueError {
    QueueError::NotFound(format!("no message {id} in the queue"))
}

/// The message a wire queue id names; `InvalidArgument` for garbage.
pub(crate) fn parse_id(id: &QueueId) -> Result<MessageId, QueueError> {
    MessageId::from_wire(id).map_err(|e| QueueError::InvalidArgument(e.to_string()))
}

#[async_trait]
impl QueueService for Queue {
    async fn record_dmarc(&self, evaluation: DmarcEvaluation) -> Result<(), QueueError> {
        self.record_refused(&evaluation).await
    }

    async fn enqueue(&self, envelope: Envelope, body: BodyStream) -> Result<QueueId, QueueError> {
        self.enqueue_message(envelope, body, SystemTime::now())
            .await
            .map(|id| id.to_wire())
    }

    async fn list(&self, request: ListRequest) -> Result<ListPage, QueueError> {
        self.list_messages(request).await
    }

    async fn get(&self, queue_id: &QueueId) -> Result<MessageDetail, QueueError> {
        Ok(self.load(&parse_id(queue_id)?).await?.detail())
    }

    async fn retry(&self, queue_id: &QueueId, recipients: &[String]) -> Result<u32, QueueError> {
        self.retry_now(&parse_id(queue_id)?, recipients, SystemTime::now())
            .await
    }

    async fn cancel(&self, queue_id: &QueueId, recipients: &[String]) -> Result<u32, QueueError> {
        self.cancel_recipients(&parse_id(queue_id)?, recipients, false)
            .await
    }

    async fn cancel_with_notice(
        &self,
        queue_id: &QueueId,
        recipients: &[String],
    ) -> Result<u32, QueueError> {
        self.cancel_recipients(&parse_id(queue_id)?, recipients, true)
            .await
    }

    async fn stats(&self) -> Result<QueueStats, QueueError> {
        let keys = self.keys.clone();
        self.store
            .transact(move |tx| {
                let keys = keys.clone();
                Box::pin(async move { read_stats(tx, &keys).await })
            })
            .await
            .map_err(|e| from_store("stats", e))
    }

    async fn pause(&self, scope: DestinationScope) -> Result<bool, QueueError> {
        self.pause_destination(scope, SystemTime::now()).await
    }

    async fn resume(&self, scope: DestinationScope) -> Result<Resumed, QueueError> {
        self.resume_destination(scope, SystemTime::now()).await
    }

    async fn destinations(&self) -> Result<Destinations, QueueError> {
        self.destinations_at(SystemTime::now()).await
    }

    async fn hold(&self, queue_id: &QueueId) -> Result<bool, QueueError> {
        self.set_held(&parse_id(queue_id)?, true).await
    }

    async fn release(&self, queue_id: &QueueId) -> Result<bool, QueueError> {
        self.set_held(&parse_id(queue_id)?, false).await
    }

    async fn bulk(&self, request: BulkRequest) -> Result<BulkReport, QueueError> {
        self.run_bulk(request, SystemTime::now()).await
    }

    async fn find_by_message_id(&self, message_id: &str) -> Result<Vec<QueueId>, QueueError> {
        self.find_message_id(message_id).await
    }
}

impl Queue {
    /// The settings of `kind`'s reports.
    pub(crate) fn report_settings(
        &self,
        kind: ReportKind,
    ) -> &arc_swap::ArcSwap<AggregateSettings> {
        match kind {
            ReportKind::Dmarc => &self.dmarc,
            ReportKind::Tls => &self.tls_reports,
        }
    }
}
