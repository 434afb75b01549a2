//! `store.<id>` and `storage.data`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::bounds::{require_nonzero, require_positive};
use crate::keys;
use crate::reader::TableReader;
use crate::value::Secret;

// The values of this section's keys, where other crates have always found them.
pub use crate::value::StoreType;

/// Where a store keeps its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreBackend {
    /// `type = "embedded"`.
    Embedded {
        /// Directory of the database.
        path: PathBuf,
    },
    /// `type = "postgresql"`.
    PostgreSql {
        /// Server host name or address.
        host: String,
        /// Server port.
        port: u16,
        /// Database holding the store.
        database: String,
        /// User to log in as.
        user: String,
        /// That user's password, if any.
        password: Option<Secret>,
        /// Time limit for connecting and for a free pooled connection.
        timeout: Duration,
        /// `tls.enable`.
        tls: bool,
        /// `tls.allow-invalid-certs`.
        allow_invalid_certs: bool,
        /// `pool.max-connections`.
        max_connections: u32,
    },
    /// `type = "foundationdb"`.
    FoundationDb {
        /// Cluster file; `None` lets the client find it.
        cluster_file: Option<PathBuf>,
    },
}

/// `store.<id>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Store {
    /// Backend and its location.
    pub backend: StoreBackend,
    /// Key prefix of this installation.
    pub prefix: String,
}

/// The keys of a PostgreSQL store, as read (each `None` if absent or refused).
struct PostgresKeys<'a> {
    tls_table: TableReader<'a>,
    pool_table: TableReader<'a>,
    host: Option<String>,
    port: Option<u16>,
    database: Option<String>,
    user: Option<String>,
    password: Option<Secret>,
    timeout: Option<Duration>,
    tls: Option<bool>,
    allow_invalid_certs: Option<bool>,
    allow_plain_text: Option<bool>,
    max_connections: Option<u32>,
}

/// The keys that apply only to `type = "postgresql"`: of the store's table, of `tls`, of
/// `pool`.
const POSTGRES_ONLY: [&str; 6] = ["host", "port", "database", "user", "password", "timeout"];
const POSTGRES_ONLY_TLS: [&str; 3] = ["enable", "allow-invalid-certs", "allow-plain-text"];
const POSTGRES_ONLY_POOL: [&str; 1] = ["max-connections"];

pub(crate) fn read(t: &TableReader<'_>) -> Option<Store> {
    let kind = t.get(&keys::STORE_TYPE);
    let path = t.get(&keys::STORE_PATH);
    let cluster_file = t.get(&keys::STORE_CLUSTER_FILE);
    let prefix = t.get(&keys::STORE_PREFIX);
    let postgres = read_postgres_keys(t);
    if prefix.as_deref() == Some("") {
        t.report("prefix", "must not be empty");
    }
    let kind = kind?;
    if kind != StoreType::Postgresql {
        refuse_postgres_keys(t, &postgres, kind);
    }
    let backend = match kind {
        StoreType::Embedded => {
            if cluster_file.is_some() {
                t.report("cluster-file", "applies only to type = \"foundationdb\"");
            }
            match path {
                Some(path) if !path.is_empty() => StoreBackend::Embedded { path: path.into() },
                _ => {
                    t.report("path", "an embedded store needs a path");
                    return None;
                }
            }
        }
        StoreType::Postgresql => {
            if path.is_some() {
                t.report("path", "applies only to type = \"embedded\"");
            }
            if cluster_file.is_some() {
                t.report("cluster-file", "applies only to type = \"foundationdb\"");
            }
            postgres_backend(t, postgres)?
        }
        StoreType::Foundationdb => {
            if path.is_some() {
                t.report("path", "applies only to type = \"embedded\"");
            }
            StoreBackend::FoundationDb {
                cluster_file: cluster_file.map(PathBuf::from),
            }
        }
    };
    Some(Store {
        backend,
        prefix: prefix?,
    })
}

/// Reads every PostgreSQL key, whatever the type, so that none is taken for an unknown key.
fn read_postgres_keys<'a>(t: &TableReader<'a>) -> PostgresKeys<'a> {
    let tls = t.table("tls");
    let pool = t.table("pool");
    PostgresKeys {
        host: t.get(&keys::STORE_HOST),
        port: t.get(&keys::STORE_PORT),
        database: t.get(&keys::STORE_DATABASE),
        user: t.get(&keys::STORE_USER),
        password: t.get(&keys::STORE_PASSWORD),
        timeout: t.get(&keys::STORE_TIMEOUT),
        tls: tls.get(&keys::STORE_TLS_ENABLE),
        allow_invalid_certs: tls.get(&keys::STORE_TLS_ALLOW_INVALID_CERTS),
        allow_plain_text: tls.get(&keys::STORE_TLS_ALLOW_PLAIN_TEXT),
        max_connections: pool.get(&keys::STORE_POOL_MAX_CONNECTIONS),
        tls_table: tls,
        pool_table: pool,
    }
}

fn refuse_postgres_keys(t: &TableReader<'_>, keys: &PostgresKeys<'_>, kind: StoreType) {
    let message = format!(
        "applies only to type = \"postgresql\", not to type = \"{}\"",
        kind.as_str()
    );
    for (table, names) in [
        (t, &POSTGRES_ONLY[..]),
        (&keys.tls_table, &POSTGRES_ONLY_TLS[..]),
        (&keys.pool_table, &POSTGRES_ONLY_POOL[..]),
    ] {
        for name in names {
            if table.contains(name) {
                table.report(name, message.clone());
            }
        }
    }
}

fn postgres_backend(t: &TableReader<'_>, keys: PostgresKeys<'_>) -> Option<StoreBackend> {
    let (tls_table, pool) = (&keys.tls_table, &keys.pool_table);
    for (name, value) in [
        ("host", &keys.host),
        ("database", &keys.database),
        ("user", &keys.user),
    ] {
        match value {
            None if !t.contains(name) => {
                t.report(name, format!("a PostgreSQL store needs a {name}"));
            }
            Some(value) if value.is_empty() => t.report(name, "must not be empty"),
            _ => {}
        }
    }
    if keys.port == Some(0) {
        t.report("port", "must be between 1 and 65535");
    }
    require_nonzero(t, "timeout", keys.timeout);
    require_positive(pool, "max-connections", keys.max_connections);
    let tls = keys.tls?;
    let allow_invalid_certs = keys.allow_invalid_certs?;
    if allow_invalid_certs && !tls {
        tls_table.report("allow-invalid-certs", "applies only with tls.enable = true");
    }
    let allow_plain_text = keys.allow_plain_text?;
    if allow_plain_text && tls {
        tls_table.report("allow-plain-text", "applies only with tls.enable = false");
    }
    let host = keys.host?;
    // Passwords are never sent in clear over a network unless the administrator says so.
    if keys.password.is_some() && !tls && !allow_plain_text && !is_local(&host) {
        t.report(
            "password",
            format!(
                "would be sent to {host} without TLS: set tls.enable = true, or \
                 tls.allow-plain-text = true to send it in clear"
            ),
        );
    }
    let (port, database, user) = (keys.port?, keys.database?, keys.user?);
    if port == 0 || host.is_empty() || database.is_empty() || user.is_empty() {
        return None;
    }
    Some(StoreBackend::PostgreSql {
        host,
        port,
        database,
        user,
        password: keys.password,
        timeout: keys.timeout?,
        tls,
        allow_invalid_certs,
        max_connections: keys.max_connections?,
    })
}

/// Whether `host` is this machine: a loopback address, `localhost`, or a Unix socket
/// directory.
pub(crate) fn is_local(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.starts_with('/')
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::is_local;

    #[test]
    fn loopback_hosts_are_local() {
        for host in [
            "localhost",
            "127.0.0.1",
            "127.8.0.1",
            "::1",
            "[::1]",
            "/run/postgresql",
        ] {
            assert!(is_local(host), "{host}");
        }
        for host in ["db.example.org", "10.0.0.1", "::2", "localhost.example.org"] {
            assert!(!is_local(host), "{host}");
        }
    }
}
