//! smtp-ingress: the stateless SMTP/LMTP front door.
//!
//! It accepts sessions on the `smtp` and `lmtp` listeners, checks logins and recipients
//! through the `Directory` service and hands messages to the `Queue` service, answering
//! `250` only once the queue has made a message durable. It keeps no state of its own.

mod address;
mod dnsbl;
mod error;
mod filter;
mod hook;
mod listener;
mod message_auth;
mod metrics;
mod milter;
mod proxy_protocol;
mod received;
mod session;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod session_harness;
mod settings;
mod tls;

use std::sync::{Arc, RwLock};

use ferrymail_config::Config;
use ferrymail_config::model::server::ListenerProtocol;
use ferrymail_rpc::directory::DirectoryService;
use ferrymail_rpc::queue::QueueService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use error::IngressError;
pub use metrics::IngressMetrics;
pub use settings::{ListenerSettings, Settings};
/// The server side of TLS with the configured certificates, also used by the admin API's
/// HTTPS listeners.
pub use tls::acceptor as server_tls_acceptor;

use listener::Connections;

/// State shared by every session of a process.
pub(crate) struct Shared {
    settings: RwLock<Arc<Settings>>,
    /// The listeners of the current configuration: each new connection takes its
    /// listener's settings from here, so a reload applies to it.
    listeners: RwLock<Arc<settings::ListenerTable>>,
    tls: RwLock<Option<TlsAcceptor>>,
    auth: RwLock<Arc<message_auth::Authenticator>>,
    pub(crate) directory: Arc<dyn DirectoryService>,
    pub(crate) queue: Arc<dyn QueueService>,
    pub(crate) metrics: IngressMetrics,
    pub(crate) connections: Arc<Connections>,
    /// Blocklist answers and warnings, kept across sessions.
    pub(crate) blocklists: dnsbl::Blocklists,
    /// The HTTP client of every MTA hook.
    pub(crate) hook_client: hook::HookClient,
}

impl Shared {
    pub(crate) fn settings(&self) -> Arc<Settings> {
        self.settings
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The settings of SMTP/LMTP listener `id` in the current configuration, if it has one.
    pub(crate) fn listener(&self, id: &str) -> Option<Arc<ListenerSettings>> {
        self.listeners
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(id)
            .cloned()
    }

    /// The resolver and signing keys of the current configuration.
    pub(crate) fn authenticator(&self) -> Arc<message_auth::Authenticator> {
        self.auth
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn tls(&self) -> Option<TlsAcceptor> {
        self.tls
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// The ingress of one process: serves its SMTP/LMTP listeners.
pub struct Ingress {
    shared: Arc<Shared>,
    sessions: TaskTracker,
}

impl Ingress {
    /// An ingress for `config`, asking `directory` and handing messages to `queue`.
    pub fn new(
        config: &Config,
        directory: Arc<dyn DirectoryService>,
        queue: Arc<dyn QueueService>,
        metrics: IngressMetrics,
    ) -> Result<Self, IngressError> {
        metrics.limiters_configured(config.queue.inbound_limiters.keys());
        let shared = Shared {
            settings: RwLock::new(Arc::new(Settings::new(config))),
            listeners: RwLock::new(Arc::new(settings::listener_table(config))),
            tls: RwLock::new(tls::acceptor(config)?),
            auth: RwLock::new(Arc::new(message_auth::Authenticator::new(config)?)),
            directory,
            queue,
            metrics,
            connections: Arc::default(),
            blocklists: dnsbl::Blocklists::default(),
            hook_client: hook::HookClient::new(ferrymail_tls::TlsSettings::new()),
        };
        Ok(Self {
            shared: Arc::new(shared),
            sessions: TaskTracker::new(),
        })
    }

    /// Takes a new configuration for new sessions (limits, directories, listener greetings,
    /// PROXY protocol and implicit TLS, certificate, resolver, DKIM keys); sessions in
    /// progress keep what they started with. A certificate, key or resolver that cannot be
    /// used is logged and the previous one stays. Bound sockets are not changed here: a
    /// listener whose id is gone, or whose protocol changed, keeps serving with its last
    /// settings until the caller stops it.
    pub fn apply(&self, config: &Config) {
        self.shared
            .metrics
            .limiters_configured(config.queue.inbound_limiters.keys());
        *self
            .shared
            .settings
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(Settings::new(config));
        *self
            .shared
            .listeners
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            Arc::new(settings::listener_table(config));
        match tls::acceptor(config) {
            Ok(acceptor) => {
                *self
                    .shared
                    .tls
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = acceptor;
            }
            Err(error) => {
                tracing::error!(%error, "new TLS certificate refused; the previous one stays")
            }
        }
        match self.shared.authenticator().renew(config) {
            Ok(authenticator) => {
                *self
                    .shared
                    .auth
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(authenticator);
            }
            Err(error) => {
                tracing::error!(%error, "new resolver or DKIM keys refused; the previous ones stay")
            }
        }
    }

    /// Serves one bound socket of listener `id` until `stop` is cancelled; each connection
    /// gets the listener's settings of the configuration in force when it arrives (those of
    /// `config` until a newer one names the listener).
    pub async fn serve(
        &self,
        id: &str,
        config: &Config,
        socket: TcpListener,
        stop: CancellationToken,
    ) {
        let Some(listener) = config.server.listeners.get(id) else {
            return;
        };
        if !matches!(
            listener.protocol,
            ListenerProtocol::Smtp | ListenerProtocol::Lmtp
        ) {
            return;
        }
        let settings = Arc::new(ListenerSettings::new(id, listener));
        listener::accept_loop(
            self.shared.clone(),
            settings,
            socket,
            stop,
            self.sessions.clone(),
        )
        .await;
    }

    /// Waits for every session to end (after the listeners stopped accepting).
    pub async fn drained(&self) {
        self.sessions.close();
        self.sessions.wait().await;
    }
}
