//! The [`DirectoryService`] contract.

use async_trait::async_trait;

use super::{
    Answer, AuthRequest, Expansion, LimitAnswer, LimitKey, RateRequest, RemoteState, SlotRequest,
};
use crate::RpcError;

/// Lookups against the remote servers behind a configured directory.
///
/// `Ok` is the remote's answer, including [`Verdict::TemporaryFailure`](super::Verdict) when the
/// remote could not answer. `Err` means the service itself could not be asked.
#[async_trait]
pub trait DirectoryService: Send + Sync + 'static {
    /// Checks credentials.
    async fn authenticate(&self, request: AuthRequest) -> Result<Answer, RpcError>;

    /// Whether `directory` accepts mail for `address` (RCPT TO).
    async fn verify_recipient(&self, directory: &str, address: &str) -> Result<Answer, RpcError>;

    /// SMTP VRFY of `address` through `directory`.
    async fn vrfy(&self, directory: &str, address: &str) -> Result<Expansion, RpcError>;

    /// SMTP EXPN of `address` through `directory`.
    async fn expn(&self, directory: &str, address: &str) -> Result<Expansion, RpcError>;

    /// Whether `domain` is served by `directory`.
    async fn is_local_domain(&self, directory: &str, domain: &str) -> Result<Answer, RpcError>;

    /// Whether `value` is in `list` (`"<directory>/<list>"` or `"remote/<id>"`).
    async fn in_list(&self, list: &str, value: &str) -> Result<Answer, RpcError>;

    /// What the last probe or lookup found about each `remote.<id>`, in id order; remotes not
    /// probed yet are absent.
    async fn remote_states(&self) -> Result<Vec<RemoteState>, RpcError>;

    /// Takes one event from an inbound limiter's rate, across every caller.
    ///
    /// A service that keeps no counters answers [`RpcError::Unavailable`]: callers let the
    /// client through, as when the counters cannot be reached.
    async fn take_rate(&self, _request: RateRequest) -> Result<LimitAnswer, RpcError> {
        Err(RpcError::Unavailable(
            "this service keeps no limiter counters".into(),
        ))
    }

    /// Takes, or renews, a concurrency slot of an inbound limiter.
    async fn take_slot(&self, _request: SlotRequest) -> Result<LimitAnswer, RpcError> {
        Err(RpcError::Unavailable(
            "this service keeps no limiter counters".into(),
        ))
    }

    /// Gives back a slot taken with [`take_slot`](Self::take_slot).
    async fn release_slot(&self, _key: LimitKey, _slot: &str) -> Result<(), RpcError> {
        Err(RpcError::Unavailable(
            "this service keeps no limiter counters".into(),
        ))
    }
}
