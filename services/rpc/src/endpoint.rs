//! The channel a gRPC client talks over: lazily connected, with bounded connect time.

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::RpcError;

/// How long a client waits for a TCP connection before the call fails as a transport error.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Interval of HTTP/2 pings, so a peer pod that vanished is noticed without waiting for TCP.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// A channel to `endpoint` (`http://host:port`, or `host:port`), connected on first use.
///
/// Lazy, so a role can start while its peer is not up yet: calls made before the peer is
/// reachable fail with [`RpcError::Transport`], later ones reconnect.
pub(crate) fn lazy_channel(endpoint: &str) -> Result<Channel, RpcError> {
    let invalid = |reason: String| RpcError::InvalidEndpoint {
        endpoint: endpoint.to_owned(),
        reason,
    };
    let uri = if endpoint.contains("://") {
        endpoint.to_owned()
    } else {
        format!("http://{endpoint}")
    };
    // No TLS backend is compiled in: fail here rather than at the first call.
    if !uri.starts_with("http://") {
        return Err(invalid("only http:// endpoints are supported".to_owned()));
    }
    let endpoint = Endpoint::from_shared(uri)
        .map_err(|error| invalid(error.to_string()))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT);
    Ok(endpoint.connect_lazy())
}
