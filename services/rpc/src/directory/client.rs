//! [`GrpcDirectory`]: a [`DirectoryService`] reached over gRPC.

use async_trait::async_trait;
use tonic::codegen::InterceptedService;
use tonic::transport::Channel;

use super::convert::{
    answer_from_wire, auth_request_to_wire, expansion_from_wire, remote_state_from_wire,
};
use super::limit_convert::{
    answer_from_wire as limit_answer_from_wire, key_to_wire, rate_request_to_wire,
    slot_request_to_wire,
};
use super::{
    Answer, AuthRequest, DirectoryService, Expansion, LimitAnswer, LimitKey, RateRequest,
    RemoteState, SlotRequest,
};
use crate::cluster_tls::{ChannelSecurity, Role};
use crate::endpoint::lazy_channel;
use crate::proto::{self, directory_client::DirectoryClient};
use crate::{PropagateTrace, RpcError};

/// Client of a remote directory-proxy, implementing [`DirectoryService`].
#[derive(Clone, Debug)]
pub struct GrpcDirectory {
    client: DirectoryClient<InterceptedService<Channel, PropagateTrace>>,
}

impl GrpcDirectory {
    /// A client of the service at `endpoint` (`http://host:port` or `host:port`).
    ///
    /// Connects on first use, so the peer need not be up yet.
    pub fn connect(endpoint: &str) -> Result<Self, RpcError> {
        Self::connect_with(endpoint, &ChannelSecurity::PlainText)
    }

    /// A client of the directory at `endpoint`, secured as `security` says: with mutual TLS, the
    /// server must prove the directory-proxy role.
    pub fn connect_with(endpoint: &str, security: &ChannelSecurity) -> Result<Self, RpcError> {
        Ok(Self::with_channel(lazy_channel(
            endpoint,
            security,
            Role::DirectoryProxy,
        )?))
    }

    /// A client over a channel configured by the caller.
    pub fn with_channel(channel: Channel) -> Self {
        Self {
            client: DirectoryClient::with_interceptor(channel, PropagateTrace),
        }
    }

    fn address_request(directory: &str, address: &str) -> proto::AddressRequest {
        proto::AddressRequest {
            directory: directory.to_owned(),
            address: address.to_owned(),
        }
    }
}

#[async_trait]
impl DirectoryService for GrpcDirectory {
    async fn authenticate(&self, request: AuthRequest) -> Result<Answer, RpcError> {
        let reply = self
            .client
            .clone()
            .authenticate(auth_request_to_wire(request))
            .await?;
        Ok(answer_from_wire(reply.into_inner())?)
    }

    async fn verify_recipient(&self, directory: &str, address: &str) -> Result<Answer, RpcError> {
        let reply = self
            .client
            .clone()
            .verify_recipient(Self::address_request(directory, address))
            .await?;
        Ok(answer_from_wire(reply.into_inner())?)
    }

    async fn vrfy(&self, directory: &str, address: &str) -> Result<Expansion, RpcError> {
        let reply = self
            .client
            .clone()
            .vrfy(Self::address_request(directory, address))
            .await?;
        Ok(expansion_from_wire(reply.into_inner())?)
    }

    async fn expn(&self, directory: &str, address: &str) -> Result<Expansion, RpcError> {
        let reply = self
            .client
            .clone()
            .expn(Self::address_request(directory, address))
            .await?;
        Ok(expansion_from_wire(reply.into_inner())?)
    }

    async fn is_local_domain(&self, directory: &str, domain: &str) -> Result<Answer, RpcError> {
        let request = proto::DomainRequest {
            directory: directory.to_owned(),
            domain: domain.to_owned(),
        };
        let reply = self.client.clone().is_local_domain(request).await?;
        Ok(answer_from_wire(reply.into_inner())?)
    }

    async fn in_list(&self, list: &str, value: &str) -> Result<Answer, RpcError> {
        let request = proto::InListRequest {
            list: list.to_owned(),
            value: value.to_owned(),
        };
        let reply = self.client.clone().in_list(request).await?;
        Ok(answer_from_wire(reply.into_inner())?)
    }

    /// Entries that break the contract are left out (and logged): one bad entry says nothing
    /// about the others.
    async fn remote_states(&self) -> Result<Vec<RemoteState>, RpcError> {
        let reply = self
            .client
            .clone()
            .remote_states(proto::RemoteStatesRequest {})
            .await?;
        Ok(reply
            .into_inner()
            .remotes
            .into_iter()
            .filter_map(|wire| match remote_state_from_wire(wire) {
                Ok(state) => Some(state),
                Err(error) => {
                    tracing::warn!(%error, "directory-proxy sent a malformed remote state; ignored");
                    None
                }
            })
            .collect())
    }

    async fn take_rate(&self, request: RateRequest) -> Result<LimitAnswer, RpcError> {
        let reply = self
            .client
            .clone()
            .take_rate(rate_request_to_wire(request))
            .await?;
        Ok(limit_answer_from_wire(reply.into_inner()))
    }

    async fn take_slot(&self, request: SlotRequest) -> Result<LimitAnswer, RpcError> {
        let reply = self
            .client
            .clone()
            .take_slot(slot_request_to_wire(request))
            .await?;
        Ok(limit_answer_from_wire(reply.into_inner()))
    }

    async fn release_slot(&self, key: LimitKey, slot: &str) -> Result<(), RpcError> {
        let request = proto::ReleaseSlotRequest {
            key: Some(key_to_wire(key)),
            slot: slot.to_owned(),
        };
        self.client.clone().release_slot(request).await?;
        Ok(())
    }
}
