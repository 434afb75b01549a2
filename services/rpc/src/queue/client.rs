//! [`GrpcQueue`]: a [`QueueService`] reached over gRPC.

use std::sync::Arc;

use async_trait::async_trait;
use tonic::Request;
use tonic::codegen::InterceptedService;
use tonic::transport::Channel;

use super::bulk_wire::{bulk_report_from_wire, bulk_request_to_wire};
use super::convert::{
    detail_from_wire, envelope_to_wire, list_page_from_wire, list_request_to_wire,
    queue_id_from_wire, stats_from_wire,
};
use super::destinations::{destinations_from_wire, scope_to_wire};
use super::upload::{BodyFailure, request_stream};
use super::{
    BodyStream, DestinationScope, Destinations, Envelope, ListPage, ListRequest, MessageDetail,
    QueueError, QueueId, QueueService, QueueStats, Resumed,
};
use super::{BulkReport, BulkRequest, DmarcEvaluation, dmarc_evaluation};
use crate::cluster_tls::{ChannelSecurity, Role};
use crate::endpoint::lazy_channel;
use crate::proto::{self, queue_client::QueueClient};
use crate::{PropagateTrace, RpcError};

/// Client of a remote queue-scheduler, implementing [`QueueService`].
#[derive(Clone, Debug)]
pub struct GrpcQueue {
    client: QueueClient<InterceptedService<Channel, PropagateTrace>>,
}

impl GrpcQueue {
    /// One `Cancel` call, with or without a notice to the sender.
    async fn cancel_call(
        &self,
        queue_id: &QueueId,
        recipients: &[String],
        notify_sender: bool,
    ) -> Result<u32, QueueError> {
        let request = proto::CancelRequest {
            queue_id: queue_id.as_str().to_owned(),
            recipients: recipients.to_vec(),
            notify_sender,
        };
        let reply = self.client.clone().cancel(request).await?;
        Ok(reply.into_inner().recipients_cancelled)
    }

    /// A client of the service at `endpoint` (`http://host:port` or `host:port`).
    ///
    /// Connects on first use, so the peer need not be up yet.
    pub fn connect(endpoint: &str) -> Result<Self, RpcError> {
        Self::connect_with(endpoint, &ChannelSecurity::PlainText)
    }

    /// A client of the queue at `endpoint`, secured as `security` says: with mutual TLS, the
    /// server must prove the queue-scheduler role.
    pub fn connect_with(endpoint: &str, security: &ChannelSecurity) -> Result<Self, RpcError> {
        Ok(Self::with_channel(lazy_channel(
            endpoint,
            security,
            Role::QueueScheduler,
        )?))
    }

    /// A client over a channel configured by the caller.
    pub fn with_channel(channel: Channel) -> Self {
        Self {
            client: QueueClient::with_interceptor(channel, PropagateTrace),
        }
    }
}

#[async_trait]
impl QueueService for GrpcQueue {
    /// Streams the body to the server as it is read; it is never held whole in memory.
    async fn enqueue(&self, envelope: Envelope, body: BodyStream) -> Result<QueueId, QueueError> {
        let failure = BodyFailure::default();
        let mut request = Request::new(());
        let cancel = request.cancellation_handle();
        let messages = request_stream(
            envelope_to_wire(envelope),
            body,
            cancel,
            Arc::clone(&failure),
        );
        let outcome = self
            .client
            .clone()
            .enqueue(request.map(|()| messages))
            .await;
        if let Some(error) = failure.get() {
            return Err(QueueError::Body(error.clone()));
        }
        Ok(queue_id_from_wire(outcome?.into_inner().queue_id)?)
    }

    async fn list(&self, request: ListRequest) -> Result<ListPage, QueueError> {
        let reply = self
            .client
            .clone()
            .list(list_request_to_wire(request))
            .await?;
        Ok(list_page_from_wire(reply.into_inner())?)
    }

    async fn get(&self, queue_id: &QueueId) -> Result<MessageDetail, QueueError> {
        let request = proto::GetRequest {
            queue_id: queue_id.as_str().to_owned(),
        };
        let reply = self.client.clone().get(request).await?;
        Ok(detail_from_wire(reply.into_inner())?)
    }

    async fn retry(&self, queue_id: &QueueId, recipients: &[String]) -> Result<u32, QueueError> {
        let request = proto::RetryRequest {
            queue_id: queue_id.as_str().to_owned(),
            recipients: recipients.to_vec(),
        };
        let reply = self.client.clone().retry(request).await?;
        Ok(reply.into_inner().recipients_rescheduled)
    }

    async fn cancel(&self, queue_id: &QueueId, recipients: &[String]) -> Result<u32, QueueError> {
        self.cancel_call(queue_id, recipients, false).await
    }

    async fn cancel_with_notice(
        &self,
        queue_id: &QueueId,
        recipients: &[String],
    ) -> Result<u32, QueueError> {
        self.cancel_call(queue_id, recipients, true).await
    }

    async fn stats(&self) -> Result<QueueStats, QueueError> {
        let reply = self.client.clone().stats(proto::StatsRequest {}).await?;
        Ok(stats_from_wire(reply.into_inner())?)
    }

    // Destinations: pause, resume, suspended.

    async fn pause(&self, scope: DestinationScope) -> Result<bool, QueueError> {
        let request = proto::PauseRequest {
            scope: Some(scope_to_wire(&scope)),
        };
        Ok(self
            .client
            .clone()
            .pause(request)
            .await?
            .into_inner()
            .paused)
    }

    async fn resume(&self, scope: DestinationScope) -> Result<Resumed, QueueError> {
        let request = proto::ResumeRequest {
            scope: Some(scope_to_wire(&scope)),
        };
        let reply = self.client.clone().resume(request).await?.into_inner();
        Ok(Resumed {
            resumed: reply.resumed,
            rescheduled: reply.recipients_rescheduled,
        })
    }

    async fn destinations(&self) -> Result<Destinations, QueueError> {
        let request = proto::DestinationsRequest {};
        let reply = self.client.clone().destinations(request).await?;
        Ok(destinations_from_wire(reply.into_inner())?)
    }

    // Queue operations: hold, release, bulk actions.

    async fn hold(&self, queue_id: &QueueId) -> Result<bool, QueueError> {
        let request = proto::HoldRequest {
            queue_id: queue_id.as_str().to_owned(),
        };
        Ok(self
            .client
            .clone()
            .hold(request)
            .await?
            .into_inner()
            .changed)
    }

    async fn release(&self, queue_id: &QueueId) -> Result<bool, QueueError> {
        let request = proto::ReleaseRequest {
            queue_id: queue_id.as_str().to_owned(),
        };
        Ok(self
            .client
            .clone()
            .release(request)
            .await?
            .into_inner()
            .changed)
    }

    async fn bulk(&self, request: BulkRequest) -> Result<BulkReport, QueueError> {
        let reply = self
            .client
            .clone()
            .bulk(bulk_request_to_wire(request))
            .await?;
        Ok(bulk_report_from_wire(reply.into_inner()))
    }

    async fn record_dmarc(&self, evaluation: DmarcEvaluation) -> Result<(), QueueError> {
        let request = proto::RecordDmarcRequest {
            evaluation: Some(dmarc_evaluation::to_wire(evaluation)),
        };
        self.client.clone().record_dmarc(request).await?;
        Ok(())
    }

    async fn find_by_message_id(&self, message_id: &str) -> Result<Vec<QueueId>, QueueError> {
        let request = proto::FindByMessageIdRequest {
            message_id: message_id.to_owned(),
        };
        let reply = self.client.clone().find_by_message_id(request).await?;
        reply
            .into_inner()
            .queue_ids
            .into_iter()
            .map(|id| Ok(queue_id_from_wire(id)?))
            .collect()
    }
}
