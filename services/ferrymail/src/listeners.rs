//! Binding the configured listeners.

use anyhow::Context as _;
use ferrymail_config::Config;
use ferrymail_config::model::server::ListenerProtocol;
use tokio::net::TcpListener;

/// Binds every address of every listener speaking `protocol`, logging each address actually
/// bound (the port is chosen by the system when the config says 0).
pub async fn bind(
    config: &Config,
    protocol: ListenerProtocol,
) -> anyhow::Result<Vec<(String, TcpListener)>> {
    let mut bound = Vec::new();
    for (id, listener) in config.server.listeners_of(protocol) {
        for address in &listener.bind {
            let socket = TcpListener::bind(address)
                .await
                .with_context(|| format!("server.listener.{id}: cannot bind {address}"))?;
            let address = socket.local_addr()?;
            tracing::info!(listener = id, %address, protocol = protocol.as_str(), "listener bound");
            bound.push((id.to_string(), socket));
        }
    }
    Ok(bound)
}
