//! The channel a gRPC client talks over: lazily connected, with bounded connect time, in
//! plain text (`http://`) or mutual TLS (`https://`).

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::RpcError;
use crate::cluster_tls::{ChannelSecurity, Role, TlsConnector};

/// How long a client waits for a TCP connection before the call fails as a transport error.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Interval of HTTP/2 pings, so a peer pod that vanished is noticed without waiting for TCP.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// A channel to `endpoint` (`http://host:port` or `host:port` in plain text, `https://` with
/// mutual TLS), whose server must prove `server`, connected on first use.
///
/// Lazy, so a role can start while its peer is not up yet: calls made before the peer is
/// reachable fail with [`RpcError::Transport`], later ones reconnect.
pub(crate) fn lazy_channel(
    endpoint: &str,
    security: &ChannelSecurity,
    server: Role,
) -> Result<Channel, RpcError> {
    let invalid = |reason: &str| RpcError::InvalidEndpoint {
        endpoint: endpoint.to_owned(),
        reason: reason.to_owned(),
    };
    let uri = if endpoint.contains("://") {
        endpoint.to_owned()
    } else {
        format!("http://{endpoint}")
    };
    let tls = match security {
        ChannelSecurity::PlainText if uri.starts_with("http://") => None,
        ChannelSecurity::PlainText if uri.starts_with("https://") => {
            return Err(invalid(
                "https:// needs this process's certificate, key and the cluster's CA",
            ));
        }
        ChannelSecurity::MutualTls(tls) if uri.starts_with("https://") => Some(tls),
        ChannelSecurity::MutualTls(_) if uri.starts_with("http://") => {
            return Err(invalid(
                "gRPC between the roles is mutual TLS here: use https://",
            ));
        }
        _ => return Err(invalid("expected http:// or https://")),
    };
    let endpoint = Endpoint::from_shared(uri)
        .map_err(|error| invalid(&error.to_string()))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT);
    Ok(match tls {
        None => endpoint.connect_lazy(),
        Some(tls) => endpoint.connect_with_connector_lazy(TlsConnector::new(tls.clone(), server)),
    })
}
