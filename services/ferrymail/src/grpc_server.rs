//! The gRPC listener: the role services, and the standard gRPC health service that
//! Kubernetes probes and load balancers understand.

use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;
use tonic_health::ServingStatus;

use tokio::net::TcpListener;

/// Serves gRPC on one bound socket until `shutdown` is cancelled.
///
/// No role service is built yet, so every service is reported `NOT_SERVING` and its
/// methods answer `UNIMPLEMENTED` (tonic's answer for a service that is not mounted).
pub async fn serve(
    socket: TcpListener,
    services: &'static [&'static str],
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let (reporter, health) = tonic_health::server::health_reporter();
    for service in services {
        reporter
            .set_service_status(*service, ServingStatus::NotServing)
            .await;
    }
    // The empty service name is the server as a whole: up, but not serving its services.
    reporter
        .set_service_status("", ServingStatus::NotServing)
        .await;
    Server::builder()
        .add_service(health)
        .serve_with_incoming_shutdown(TcpListenerStream::new(socket), shutdown.cancelled())
        .await?;
    Ok(())
}
