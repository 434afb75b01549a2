//! The gRPC listener: the role services, and the standard gRPC health service that
//! Kubernetes probes and load balancers understand.

use ferrymail_rpc::cluster_tls::{self, ChannelSecurity, HandshakeMetrics, Permissions};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;
use tonic_health::ServingStatus;

use crate::services::Services;

/// The full gRPC name of the Directory service.
const DIRECTORY: &str = "ferrymail.v1.Directory";
/// The full gRPC name of the Queue service.
const QUEUE: &str = "ferrymail.v1.Queue";

/// How a gRPC listener secures its connections and checks its callers.
#[derive(Clone)]
pub struct Guard {
    /// Plain text or mutual TLS.
    pub security: ChannelSecurity,
    /// Counts refused handshakes.
    pub handshakes: HandshakeMetrics,
    /// Applies the permission table.
    pub permissions: Permissions,
}

/// Serves gRPC on one bound socket until `shutdown` is cancelled, each call passing `guard`.
///
/// Each service of `names` that this process does not host yet is reported `NOT_SERVING`,
/// and its methods answer `UNIMPLEMENTED` (tonic's answer for a service not mounted).
pub async fn serve(
    socket: TcpListener,
    names: &'static [&'static str],
    services: Services,
    guard: Guard,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let (reporter, health) = tonic_health::server::health_reporter();
    let mut all_serving = true;
    for name in names {
        let serving = match *name {
            DIRECTORY => services.directory.is_some(),
            QUEUE => services.queue.is_some(),
            _ => false,
        };
        all_serving &= serving;
        let status = if serving {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        reporter.set_service_status(*name, status).await;
    }
    // The empty service name is the server as a whole.
    let overall = if all_serving {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    };
    reporter.set_service_status("", overall).await;
    let directory = services
        .directory
        .map(|d| ferrymail_rpc::directory::server(d));
    let queue = services.queue.map(|q| ferrymail_rpc::queue::server(q));
    let incoming = cluster_tls::incoming(socket, guard.security, guard.handshakes);
    Server::builder()
        .trace_fn(ferrymail_rpc::server_span)
        .layer(guard.permissions)
        .add_service(health)
        .add_optional_service(directory)
        .add_optional_service(queue)
        .serve_with_incoming_shutdown(incoming, shutdown.cancelled())
        .await?;
    Ok(())
}
