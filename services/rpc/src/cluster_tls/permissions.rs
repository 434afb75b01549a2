//! Who may call what: each RPC answers only the roles the table names; everyone else gets
//! `UNAUTHENTICATED` (no certificate) or `PERMISSION_DENIED` (the wrong role), counted by
//! caller and logged once per caller and minute.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use ferrymail_telemetry::{LogLimit, Metrics};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tonic::codegen::http;

use super::role::{Caller, Role};
use super::server_side::Peer;

/// How often each caller's refusals are logged.
const LOG_EVERY: Duration = Duration::from_secs(60);

/// The roles that may call `path` (`/package.Service/Method`); `None` when anyone may (the
/// gRPC health service, which tells nothing).
pub fn allowed_roles(path: &str) -> Option<&'static [Role]> {
    const INGRESS: &[Role] = &[Role::SmtpIngress];
    const ADMIN: &[Role] = &[Role::Admin];
    const OPERATOR: &[Role] = &[Role::Operator];
    const NOBODY: &[Role] = &[];
    let (service, method) = path
        .trim_start_matches('/')
        .split_once('/')
        .unwrap_or((path, ""));
    Some(match (service, method) {
        ("grpc.health.v1.Health", _) => return None,
        // The ingress enqueues, and counts the DMARC evaluations of mail it refused.
        ("ferrymail.v1.Queue", "Enqueue" | "RecordDmarc") => INGRESS,
        ("ferrymail.v1.Queue", "List" | "Get" | "Retry" | "Cancel" | "Stats") => ADMIN,
        // Destinations: pause, resume, suspended.
        ("ferrymail.v1.Queue", "Pause" | "Resume" | "Destinations") => ADMIN,
        // Queue operations: hold, release, bulk actions.
        ("ferrymail.v1.Queue", "Hold" | "Release" | "Bulk" | "FindByMessageId") => ADMIN,
        (
            "ferrymail.v1.Directory",
            "Authenticate" | "VerifyRecipient" | "Vrfy" | "Expn" | "IsLocalDomain" | "InList",
        ) => INGRESS,
        // Inbound limiters: only the ingress counts sessions and commands.
        ("ferrymail.v1.Directory", "TakeRate" | "TakeSlot" | "ReleaseSlot") => INGRESS,
        ("ferrymail.v1.Directory", "RemoteStates") => OPERATOR,
        _ => NOBODY,
    })
}

/// Whether `caller` may call `path`: `None` if so, else the status to answer.
fn refusal(path: &str, caller: &Caller) -> Option<tonic::Status> {
    let allowed = allowed_roles(path)?;
    match caller {
        Caller::PlainText => None,
        Caller::Anonymous => Some(tonic::Status::unauthenticated(
            "a client certificate issued by the cluster's authorities is required",
        )),
        Caller::Certified(roles) if roles.iter().any(|r| allowed.contains(r)) => None,
        Caller::Certified(_) => Some(tonic::Status::permission_denied(format!(
            "{path} is for {} only, and the caller is {}",
            names(allowed),
            caller.label()
        ))),
    }
}

fn names(roles: &[Role]) -> String {
    if roles.is_empty() {
        return "nobody".to_owned();
    }
    roles
        .iter()
        .map(|r| r.name())
        .collect::<Vec<_>>()
        .join(", ")
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    caller: String,
    method: String,
    code: &'static str,
}

/// `grpc_requests_refused_total{caller,method,code}`, and the log of refusals.
#[derive(Clone, Debug, Default)]
pub struct RefusalMetrics {
    refused: Family<RefusalLabels, Counter>,
    logged: Arc<Mutex<HashMap<String, Arc<LogLimit>>>>,
}

impl RefusalMetrics {
    /// Registers the metric in `metrics`.
    pub fn register(metrics: &Metrics) -> Self {
        let this = Self::default();
        metrics.register(
            "grpc_requests_refused_total",
            "gRPC calls refused by the permission table, by caller (its roles, `anonymous` \
             without a certificate, `no-role`), method and code (unauthenticated, \
             permission_denied).",
            this.refused.clone(),
        );
        this
    }

    fn refused(&self, caller: &Caller, peer: Option<&Peer>, path: &str, status: &tonic::Status) {
        let label = caller.label();
        let code = match status.code() {
            tonic::Code::Unauthenticated => "unauthenticated",
            _ => "permission_denied",
        };
        // Only known methods become labels: a caller cannot grow the metric without end.
        let method = if allowed_roles(path).is_some_and(|r| !r.is_empty()) {
            path.to_owned()
        } else {
            "other".to_owned()
        };
        self.refused
            .get_or_create(&RefusalLabels {
                caller: label.clone(),
                method,
                code,
            })
            .inc();
        let limit = self
            .logged
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(label.clone())
            .or_insert_with(|| Arc::new(LogLimit::new(LOG_EVERY)))
            .clone();
        if let Some(left_out) = limit.admit() {
            let client = peer.and_then(|p| p.address).map(|a| a.ip().to_string());
            tracing::warn!(caller = %label, client, method = path, code, left_out, "gRPC call refused: {}", status.message());
        }
    }
}

/// The tower layer that applies the permission table to every call of a server.
#[derive(Clone, Debug, Default)]
pub struct Permissions {
    metrics: RefusalMetrics,
}

impl Permissions {
    /// Checks every call, counting refusals in `metrics`.
    pub fn new(metrics: RefusalMetrics) -> Self {
        Self { metrics }
    }
}

impl<S> tower_layer::Layer<S> for Permissions {
    type Service = Checked<S>;

    fn layer(&self, inner: S) -> Checked<S> {
        Checked {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// A service whose calls pass the permission table first.
#[derive(Clone, Debug)]
pub struct Checked<S> {
    inner: S,
    metrics: RefusalMetrics,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B, R> tower_service::Service<http::Request<B>> for Checked<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let peer = request.extensions().get::<Peer>().cloned();
        // A connection this layer did not make (none in ferrymail) has proved nothing.
        let caller = peer
            .as_ref()
            .map_or(Caller::Anonymous, |p| p.caller.clone());
        let path = request.uri().path().to_owned();
        match refusal(&path, &caller) {
            None => Box::pin(self.inner.call(request)),
            Some(status) => {
                self.metrics.refused(&caller, peer.as_ref(), &path, &status);
                Box::pin(std::future::ready(Ok(status.into_http())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certified(roles: &[Role]) -> Caller {
        Caller::Certified(roles.iter().copied().collect())
    }

    #[test]
    fn each_rpc_answers_only_its_roles() {
        let enqueue = "/ferrymail.v1.Queue/Enqueue";
        assert!(refusal(enqueue, &certified(&[Role::SmtpIngress])).is_none());
        for wrong in [
            Role::Admin,
            Role::Operator,
            Role::QueueScheduler,
            Role::DirectoryProxy,
        ] {
            let status = refusal(enqueue, &certified(&[wrong])).map(|s| s.code());
            assert_eq!(status, Some(tonic::Code::PermissionDenied), "{wrong}");
        }
        assert_eq!(
            refusal(enqueue, &Caller::Anonymous).map(|s| s.code()),
            Some(tonic::Code::Unauthenticated)
        );
        for admin in [
            "List",
            "Get",
            "Retry",
            "Cancel",
            "Stats",
            "Pause",
            "Resume",
            "Destinations",
            "Hold",
            "Release",
            "Bulk",
            "FindByMessageId",
        ] {
            let path = format!("/ferrymail.v1.Queue/{admin}");
            assert!(refusal(&path, &certified(&[Role::Admin])).is_none());
            assert!(refusal(&path, &certified(&[Role::SmtpIngress])).is_some());
        }
        let auth = "/ferrymail.v1.Directory/Authenticate";
        assert!(refusal(auth, &certified(&[Role::SmtpIngress])).is_none());
        assert!(refusal(auth, &certified(&[Role::Admin])).is_some());
        for limit in ["TakeRate", "TakeSlot", "ReleaseSlot"] {
            let path = format!("/ferrymail.v1.Directory/{limit}");
            assert!(refusal(&path, &certified(&[Role::SmtpIngress])).is_none());
            for wrong in [Role::Admin, Role::QueueScheduler, Role::Operator] {
                let status = refusal(&path, &certified(&[wrong])).map(|s| s.code());
                assert_eq!(
                    status,
                    Some(tonic::Code::PermissionDenied),
                    "{limit} {wrong}"
                );
            }
        }
        let states = "/ferrymail.v1.Directory/RemoteStates";
        assert!(refusal(states, &certified(&[Role::Operator])).is_none());
        assert!(refusal(states, &certified(&[Role::SmtpIngress])).is_some());
    }

    #[test]
    fn only_the_ingress_records_dmarc_evaluations() {
        let path = "/ferrymail.v1.Queue/RecordDmarc";
        assert!(refusal(path, &certified(&[Role::SmtpIngress])).is_none());
        for wrong in [
            Role::Admin,
            Role::Operator,
            Role::QueueScheduler,
            Role::DirectoryProxy,
        ] {
            let status = refusal(path, &certified(&[wrong])).map(|s| s.code());
            assert_eq!(status, Some(tonic::Code::PermissionDenied), "{wrong}");
        }
        assert_eq!(
            refusal(path, &Caller::Anonymous).map(|s| s.code()),
            Some(tonic::Code::Unauthenticated)
        );
    }

    #[test]
    fn unknown_methods_answer_nobody_and_health_everybody() {
        let unknown = "/ferrymail.v1.Queue/DropEverything";
        assert!(refusal(unknown, &certified(&Role::ALL)).is_some());
        assert!(refusal("/grpc.health.v1.Health/Check", &Caller::Anonymous).is_none());
        assert!(refusal("/ferrymail.v1.Queue/Enqueue", &Caller::PlainText).is_none());
        assert!(refusal("/ferrymail.v1.Queue/Stats", &certified(&[])).is_some());
    }
}
