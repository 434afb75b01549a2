//! Serves a [`QueueService`] over gRPC.

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use super::bulk_wire::{bulk_report_to_wire, bulk_request_from_wire};
use super::convert::{
    detail_to_wire, list_page_to_wire, list_request_from_wire, queue_id_from_wire, stats_to_wire,
};
use super::destinations::{destinations_to_wire, scope_from_wire};
use super::{QueueError, QueueId, QueueService, dmarc_evaluation, intake};
use crate::malformed::Malformed;
use crate::proto::{self, queue_server::QueueServer};
use crate::status::invalid_request;

/// The gRPC face of a [`QueueService`]: add [`server`]'s result to a tonic router.
pub struct QueueHandler {
    service: Arc<dyn QueueService>,
}

/// Wraps `service` as a tonic service, ready for `tonic::transport::Server::add_service`.
pub fn server(service: Arc<dyn QueueService>) -> QueueServer<QueueHandler> {
    QueueServer::new(QueueHandler { service })
}

/// Runs a call that changes the queue in its own task.
///
/// tonic drops a handler's future when the client resets the call; a commit, or the cleanup of
/// an abandoned message, must still run to its end rather than stop between two transactions.
async fn to_completion<T: Send + 'static>(
    call: impl Future<Output = Result<T, QueueError>> + Send + 'static,
) -> Result<T, QueueError> {
    // The task stays in the call's span, so the work it does joins the caller's trace.
    tokio::spawn(call.instrument(tracing::Span::current()))
        .await
        .unwrap_or_else(|error| Err(QueueError::Internal(format!("queue task failed: {error}"))))
}

#[async_trait]
impl proto::queue_server::Queue for QueueHandler {
    async fn enqueue(
        &self,
        request: Request<Streaming<proto::EnqueueRequest>>,
    ) -> Result<Response<proto::EnqueueReply>, Status> {
        let (envelope, body, violation) = intake::open(request.into_inner()).await?;
        let service = Arc::clone(&self.service);
        let outcome = to_completion(async move { service.enqueue(envelope, body).await }).await;
        if let Some(status) = violation.take() {
            if let Ok(queue_id) = &outcome {
                // The service was handed a body error and must not have committed.
                tracing::error!(
                    %queue_id,
                    "queue service committed a message whose body stream failed"
                );
            }
            return Err(status);
        }
        Ok(Response::new(proto::EnqueueReply {
            queue_id: outcome?.into_string(),
        }))
    }

    async fn list(
        &self,
        request: Request<proto::ListRequest>,
    ) -> Result<Response<proto::ListReply>, Status> {
        let request = list_request_from_wire(request.into_inner()).map_err(invalid_request)?;
        let page = self.service.list(request).await?;
        Ok(Response::new(list_page_to_wire(page)))
    }

    async fn get(
        &self,
        request: Request<proto::GetRequest>,
    ) -> Result<Response<proto::MessageDetail>, Status> {
        let queue_id =
            queue_id_from_wire(request.into_inner().queue_id).map_err(invalid_request)?;
        let detail = self.service.get(&queue_id).await?;
        Ok(Response::new(detail_to_wire(detail)))
    }

    async fn retry(
        &self,
        request: Request<proto::RetryRequest>,
    ) -> Result<Response<proto::RetryReply>, Status> {
        let request = request.into_inner();
        let queue_id = queue_id_from_wire(request.queue_id).map_err(invalid_request)?;
        let service = Arc::clone(&self.service);
        let recipients = request.recipients;
        let rescheduled =
            to_completion(async move { service.retry(&queue_id, &recipients).await }).await?;
        Ok(Response::new(proto::RetryReply {
            recipients_rescheduled: rescheduled,
        }))
    }

    async fn cancel(
        &self,
        request: Request<proto::CancelRequest>,
    ) -> Result<Response<proto::CancelReply>, Status> {
        let request = request.into_inner();
        let queue_id = queue_id_from_wire(request.queue_id).map_err(invalid_request)?;
        let service = Arc::clone(&self.service);
        let (recipients, notify) = (request.recipients, request.notify_sender);
        let cancelled = to_completion(async move {
            if notify {
                service.cancel_with_notice(&queue_id, &recipients).await
            } else {
                service.cancel(&queue_id, &recipients).await
            }
        })
        .await?;
        Ok(Response::new(proto::CancelReply {
            recipients_cancelled: cancelled,
        }))
    }

    async fn stats(
        &self,
        _request: Request<proto::StatsRequest>,
    ) -> Result<Response<proto::StatsReply>, Status> {
        let stats = self.service.stats().await?;
        Ok(Response::new(stats_to_wire(stats)))
    }

    // Destinations: pause, resume, suspended.

    async fn pause(
        &self,
        request: Request<proto::PauseRequest>,
    ) -> Result<Response<proto::PauseReply>, Status> {
        let scope = scope_from_wire(request.into_inner().scope).map_err(invalid_scope)?;
        let service = Arc::clone(&self.service);
        let paused = to_completion(async move { service.pause(scope).await }).await?;
        Ok(Response::new(proto::PauseReply { paused }))
    }

    async fn resume(
        &self,
        request: Request<proto::ResumeRequest>,
    ) -> Result<Response<proto::ResumeReply>, Status> {
        let scope = scope_from_wire(request.into_inner().scope).map_err(invalid_scope)?;
        let service = Arc::clone(&self.service);
        let resumed = to_completion(async move { service.resume(scope).await }).await?;
        Ok(Response::new(proto::ResumeReply {
            resumed: resumed.resumed,
            recipients_rescheduled: resumed.rescheduled,
        }))
    }

    async fn destinations(
        &self,
        _request: Request<proto::DestinationsRequest>,
    ) -> Result<Response<proto::DestinationsReply>, Status> {
        let destinations = self.service.destinations().await?;
        Ok(Response::new(destinations_to_wire(destinations)))
    }

    // Queue operations: hold, release, bulk actions.

    async fn hold(
        &self,
        request: Request<proto::HoldRequest>,
    ) -> Result<Response<proto::HoldReply>, Status> {
        let queue_id =
            queue_id_from_wire(request.into_inner().queue_id).map_err(invalid_request)?;
        let service = Arc::clone(&self.service);
        let changed = to_completion(async move { service.hold(&queue_id).await }).await?;
        Ok(Response::new(proto::HoldReply { changed }))
    }

    async fn release(
        &self,
        request: Request<proto::ReleaseRequest>,
    ) -> Result<Response<proto::ReleaseReply>, Status> {
        let queue_id =
            queue_id_from_wire(request.into_inner().queue_id).map_err(invalid_request)?;
        let service = Arc::clone(&self.service);
        let changed = to_completion(async move { service.release(&queue_id).await }).await?;
        Ok(Response::new(proto::ReleaseReply { changed }))
    }

    async fn bulk(
        &self,
        request: Request<proto::BulkRequest>,
    ) -> Result<Response<proto::BulkReply>, Status> {
        let request = bulk_request_from_wire(request.into_inner()).map_err(invalid_request)?;
        let service = Arc::clone(&self.service);
        let report = to_completion(async move { service.bulk(request).await }).await?;
        Ok(Response::new(bulk_report_to_wire(report)))
    }

    async fn record_dmarc(
        &self,
        request: Request<proto::RecordDmarcRequest>,
    ) -> Result<Response<proto::RecordDmarcReply>, Status> {
        let evaluation = request
            .into_inner()
            .evaluation
            .ok_or_else(|| invalid_request(Malformed::missing("evaluation")))?;
        let evaluation = dmarc_evaluation::from_wire(evaluation).map_err(invalid_request)?;
        self.service.record_dmarc(evaluation).await?;
        Ok(Response::new(proto::RecordDmarcReply {}))
    }

    async fn find_by_message_id(
        &self,
        request: Request<proto::FindByMessageIdRequest>,
    ) -> Result<Response<proto::FindByMessageIdReply>, Status> {
        let message_id = request.into_inner().message_id;
        let ids = self.service.find_by_message_id(&message_id).await?;
        Ok(Response::new(proto::FindByMessageIdReply {
            queue_ids: ids.into_iter().map(QueueId::into_string).collect(),
        }))
    }
}

/// A scope the client got wrong is its invalid argument, not a protocol failure of ours.
fn invalid_scope(error: crate::RpcError) -> Status {
    crate::RpcError::InvalidArgument(error.to_string()).into()
}
