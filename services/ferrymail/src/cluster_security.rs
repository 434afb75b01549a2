//! How this process speaks gRPC to the other roles, from `cluster.tls.*`: mutual TLS with its
//! certificate (replaced when the files change), or plain text where the configuration asks
//! for it.

use anyhow::Context as _;
use ferrymail_config::Config;
use ferrymail_config::model::cluster::{ClusterIdentity, ClusterTls as TlsSetting};
use ferrymail_config::model::server::ListenerProtocol;
use ferrymail_rpc::cluster_tls::{ChannelSecurity, ClusterTls, Credentials, TlsSetupError};
use ferrymail_telemetry::Metrics;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// This process's gRPC security, kept current with the configuration.
#[derive(Clone, Debug)]
pub struct ClusterSecurity {
    security: ChannelSecurity,
    reloads: Family<ResultLabel, Counter>,
}

impl ClusterSecurity {
    /// The security `config` asks for; its credentials must load.
    pub fn start(config: &Config, metrics: &Metrics) -> anyhow::Result<Self> {
        let security = match &config.cluster.tls {
            TlsSetting::Mutual(identity) => ChannelSecurity::MutualTls(ClusterTls::new(
                credentials(identity).context("cluster.tls")?,
            )),
            TlsSetting::PlainText | TlsSetting::Unused => ChannelSecurity::PlainText,
        };
        if config.cluster.tls.is_plain_text() {
            warn_of_plain_text(config);
        }
        let reloads = Family::default();
        metrics.register(
            "cluster_tls_reloads_total",
            "Reloads of this process's gRPC certificate after a configuration change, by result \
             (success, failure: the previous certificate stays in force).",
            reloads.clone(),
        );
        for result in ["success", "failure"] {
            drop(reloads.get_or_create(&ResultLabel { result }));
        }
        Ok(Self { security, reloads })
    }

    /// How gRPC connections are secured.
    pub fn channel(&self) -> &ChannelSecurity {
        &self.security
    }

    /// Takes the certificate of a reloaded configuration for new connections; one that does
    /// not load is logged and counted, and the previous one stays in force.
    pub fn apply(&self, config: &Config) {
        let (ChannelSecurity::MutualTls(tls), TlsSetting::Mutual(identity)) =
            (&self.security, &config.cluster.tls)
        else {
            return;
        };
        let result = match credentials(identity) {
            Ok(credentials) => {
                tls.replace(credentials);
                "success"
            }
            Err(error) => {
                tracing::error!(%error, "cluster.tls: the new certificate does not load; the previous one stays in force");
                "failure"
            }
        };
        self.reloads.get_or_create(&ResultLabel { result }).inc();
    }
}

fn credentials(identity: &ClusterIdentity) -> Result<Credentials, TlsSetupError> {
    Credentials::from_pem(
        &identity.certificate.0,
        identity.private_key.0.expose(),
        &identity.ca.0,
        &identity.domain,
    )
}

/// Plain text is for loopback: a `grpc` listener anywhere else is said to be open to anyone
/// who can reach it.
fn warn_of_plain_text(config: &Config) {
    for (id, listener) in config.server.listeners_of(ListenerProtocol::Grpc) {
        for address in &listener.bind {
            if !address.ip().is_loopback() {
                tracing::warn!(
                    listener = id,
                    %address,
                    "cluster.tls.enable = false: this gRPC listener speaks plain text to anyone who can reach it, with no identities and no permissions"
                );
            }
        }
    }
}
