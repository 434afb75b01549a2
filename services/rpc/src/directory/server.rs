//! Serves a [`DirectoryService`] over gRPC.

use std::sync::Arc;

use async_trait::async_trait;
use tonic::{Request, Response, Status};

use super::DirectoryService;
use super::convert::{
    answer_to_wire, auth_request_from_wire, expansion_to_wire, remote_state_to_wire,
};
use super::limit_convert::{
    answer_to_wire as limit_answer_to_wire, key_from_wire, rate_request_from_wire,
    slot_request_from_wire,
};
use crate::proto::{self, directory_server::DirectoryServer};
use crate::status::invalid_request;

/// The gRPC face of a [`DirectoryService`]: add [`server`]'s result to a tonic router.
pub struct DirectoryHandler {
    service: Arc<dyn DirectoryService>,
}

/// Wraps `service` as a tonic service, ready for `tonic::transport::Server::add_service`.
pub fn server(service: Arc<dyn DirectoryService>) -> DirectoryServer<DirectoryHandler> {
    DirectoryServer::new(DirectoryHandler { service })
}

#[async_trait]
impl proto::directory_server::Directory for DirectoryHandler {
    async fn authenticate(
        &self,
        request: Request<proto::AuthenticateRequest>,
    ) -> Result<Response<proto::Answer>, Status> {
        let request = auth_request_from_wire(request.into_inner()).map_err(invalid_request)?;
        let answer = self.service.authenticate(request).await?;
        Ok(Response::new(answer_to_wire(answer)))
    }

    async fn verify_recipient(
        &self,
        request: Request<proto::AddressRequest>,
    ) -> Result<Response<proto::Answer>, Status> {
        let request = request.into_inner();
        let answer = self
            .service
            .verify_recipient(&request.directory, &request.address)
            .await?;
        Ok(Response::new(answer_to_wire(answer)))
    }

    async fn vrfy(
        &self,
        request: Request<proto::AddressRequest>,
    ) -> Result<Response<proto::Expansion>, Status> {
        let request = request.into_inner();
        let expansion = self
            .service
            .vrfy(&request.directory, &request.address)
            .await?;
        Ok(Response::new(expansion_to_wire(expansion)))
    }

    async fn expn(
        &self,
        request: Request<proto::AddressRequest>,
    ) -> Result<Response<proto::Expansion>, Status> {
        let request = request.into_inner();
        let expansion = self
            .service
            .expn(&request.directory, &request.address)
            .await?;
        Ok(Response::new(expansion_to_wire(expansion)))
    }

    async fn is_local_domain(
        &self,
        request: Request<proto::DomainRequest>,
    ) -> Result<Response<proto::Answer>, Status> {
        let request = request.into_inner();
        let answer = self
            .service
            .is_local_domain(&request.directory, &request.domain)
            .await?;
        Ok(Response::new(answer_to_wire(answer)))
    }

    async fn in_list(
        &self,
        request: Request<proto::InListRequest>,
    ) -> Result<Response<proto::Answer>, Status> {
        let request = request.into_inner();
        let answer = self.service.in_list(&request.list, &request.value).await?;
        Ok(Response::new(answer_to_wire(answer)))
    }

    async fn remote_states(
        &self,
        _: Request<proto::RemoteStatesRequest>,
    ) -> Result<Response<proto::RemoteStatesReply>, Status> {
        let states = self.service.remote_states().await?;
        Ok(Response::new(proto::RemoteStatesReply {
            remotes: states.into_iter().map(remote_state_to_wire).collect(),
        }))
    }

    async fn take_rate(
        &self,
        request: Request<proto::TakeRateRequest>,
    ) -> Result<Response<proto::LimitReply>, Status> {
        let request = rate_request_from_wire(request.into_inner()).map_err(invalid_request)?;
        let answer = self.service.take_rate(request).await?;
        Ok(Response::new(limit_answer_to_wire(answer)))
    }

    async fn take_slot(
        &self,
        request: Request<proto::TakeSlotRequest>,
    ) -> Result<Response<proto::LimitReply>, Status> {
        let request = slot_request_from_wire(request.into_inner()).map_err(invalid_request)?;
        let answer = self.service.take_slot(request).await?;
        Ok(Response::new(limit_answer_to_wire(answer)))
    }

    async fn release_slot(
        &self,
        request: Request<proto::ReleaseSlotRequest>,
    ) -> Result<Response<proto::ReleaseSlotReply>, Status> {
        let request = request.into_inner();
        let key = key_from_wire(request.key).map_err(invalid_request)?;
        self.service.release_slot(key, &request.slot).await?;
        Ok(Response::new(proto::ReleaseSlotReply {}))
    }
}
