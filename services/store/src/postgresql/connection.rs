//! Where the server is and how to log in: the settings, and the pool of connections built
//! from them. The pool opens connections as they are needed and drops broken ones, so the
//! store resumes by itself once the server answers again.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Timeouts};
use tokio_postgres::config::SslMode;

use crate::error::{Result, StoreError};

/// How to reach a PostgreSQL database.
#[derive(Clone)]
pub struct PostgresSettings {
    /// Host name or address of the server.
    pub host: String,
    /// Its TCP port.
    pub port: u16,
    /// The database holding the store.
    pub database: String,
    /// The user to log in as.
    pub user: String,
    /// That user's password, if the server asks for one.
    pub password: Option<String>,
    /// Longest wait to connect, or for a free connection of the pool.
    pub timeout: Duration,
    /// TLS to the server with this client configuration; `None`: plain TCP.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Most connections open at once.
    pub max_connections: usize,
}

impl std::fmt::Debug for PostgresSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password never reaches a log.
        f.debug_struct("PostgresSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("database", &self.database)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .field("tls", &self.tls.is_some())
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

impl PostgresSettings {
    /// `host:port`, for messages.
    pub(super) fn endpoint(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The pool of connections to the server; connects lazily.
    pub(super) fn pool(&self) -> Result<Pool> {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&self.host)
            .port(self.port)
            .dbname(&self.database)
            .user(&self.user)
            .application_name("ferrymail")
            .connect_timeout(self.timeout)
            // A server that vanished without closing the connection is noticed.
            .keepalives_idle(Duration::from_secs(30));
        if let Some(password) = &self.password {
            config.password(password);
        }
        let manager_config = ManagerConfig {
            // A broken connection is noticed when used, and dropped by the pool then.
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match &self.tls {
            Some(tls) => {
                config.ssl_mode(SslMode::Require);
                let connector = tokio_postgres_rustls::MakeRustlsConnect::new((**tls).clone());
                Manager::from_config(config, connector, manager_config)
            }
            None => {
                config.ssl_mode(SslMode::Disable);
                Manager::from_config(config, tokio_postgres::NoTls, manager_config)
            }
        };
        Pool::builder(manager)
            .max_size(self.max_connections.max(1))
            .runtime(Runtime::Tokio1)
            .timeouts(Timeouts {
                wait: Some(self.timeout),
                create: Some(self.timeout),
                recycle: Some(self.timeout),
            })
            .build()
            .map_err(|e| StoreError::Storage(format!("cannot build the connection pool: {e}")))
    }
}
