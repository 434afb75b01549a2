//! The keys a running process reads only when it starts: a reload takes them in, but they
//! take effect after a restart, and the reload says so.
//!
//! Everything else is applied live by the services (`Services::follow`): remotes,
//! directories, session rules, queue settings, certificates, the resolver, DKIM keys.

use std::collections::BTreeSet;

use ferrymail_config::Config;
use ferrymail_config::display_path;
use ferrymail_config::model::cluster::ClusterTls;
use ferrymail_config::model::server::{Listener, ListenerProtocol};
use ferrymail_config::model::store::{Store, StoreBackend};

use crate::role::Role;

/// A key whose new value waits for a restart, and how it changed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RestartKey {
    /// Dotted key path, e.g. `server.listener.smtp.bind`.
    pub key: String,
    /// `changed`, `added` or `removed`.
    pub change: &'static str,
}

impl RestartKey {
    fn new(path: &[&str], change: &'static str) -> Self {
        Self {
            key: display_path(path),
            change,
        }
    }

    /// Whether `other` is this key, or a key inside it or around it.
    fn overlaps(&self, other: &RestartKey) -> bool {
        let within = |a: &str, b: &str| a == b || a.starts_with(&format!("{b}."));
        within(&self.key, &other.key) || within(&other.key, &self.key)
    }
}

/// The keys that `role` reads only at start and that differ between `before` and `after`.
pub fn differing(role: Role, before: &Config, after: &Config) -> BTreeSet<RestartKey> {
    let mut keys = BTreeSet::new();
    listeners(role, before, after, &mut keys);
    if role.hosts_directory() || role.hosts_queue() {
        storage(before, after, &mut keys);
    }
    cluster(role, before, after, &mut keys);
    // The scheduler's claims and heartbeats are sized once, when it starts.
    if role.hosts_queue() && before.queue.lease != after.queue.lease {
        keys.insert(RestartKey::new(&["queue", "lease", "duration"], "changed"));
    }
    // The admin API's credentials and its plain-text rule are read when its server starts.
    if role.hosts_queue() {
        if before.authentication != after.authentication {
            keys.insert(RestartKey::new(&["authentication"], "changed"));
        }
        if before.server.http_allow_plain_text != after.server.http_allow_plain_text {
            let key = ["server", "http", "allow-plain-text"];
            keys.insert(RestartKey::new(&key, "changed"));
        }
    }
    let tracing = (&before.tracing, &after.tracing);
    if tracing.0.endpoint != tracing.1.endpoint {
        keys.insert(RestartKey::new(&["tracing", "endpoint"], "changed"));
    }
    if tracing.0.service_name != tracing.1.service_name {
        keys.insert(RestartKey::new(&["tracing", "service-name"], "changed"));
    }
    keys
}

/// The keys to warn about when `previous` is replaced by `next` in a process that started
/// with `started`: changed by this reload, and not back to what the process runs with.
pub fn to_warn(role: Role, started: &Config, previous: &Config, next: &Config) -> Vec<RestartKey> {
    let pending = differing(role, started, next);
    differing(role, previous, next)
        .into_iter()
        .filter(|key| pending.iter().any(|p| p.overlaps(key)))
        .collect()
}

/// Listeners are bound at start: their addresses and protocols, and which exist. Only those
/// of protocols the role serves matter; the rest it never binds.
fn listeners(role: Role, before: &Config, after: &Config, keys: &mut BTreeSet<RestartKey>) {
    let (old, new) = (&before.server.listeners, &after.server.listeners);
    let serves = |l: &Listener| role.serves(l.protocol);
    let ids: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    for id in ids {
        let path = |key: Option<&'static str>| {
            let mut path = vec!["server", "listener", id.as_str()];
            path.extend(key);
            path
        };
        match (old.get(id), new.get(id)) {
            (Some(o), Some(n)) if serves(o) || serves(n) => {
                if o.protocol != n.protocol {
                    keys.insert(RestartKey::new(&path(Some("protocol")), "changed"));
                }
                if o.bind != n.bind {
                    keys.insert(RestartKey::new(&path(Some("bind")), "changed"));
                }
            }
            (None, Some(n)) if serves(n) => {
                keys.insert(RestartKey::new(&path(None), "added"));
            }
            (Some(o), None) if serves(o) => {
                keys.insert(RestartKey::new(&path(None), "removed"));
            }
            _ => {}
        }
    }
}

/// The store is opened once, at start.
fn storage(before: &Config, after: &Config, keys: &mut BTreeSet<RestartKey>) {
    if before.data_store != after.data_store {
        keys.insert(RestartKey::new(&["storage", "data"], "changed"));
        return;
    }
    let Some(id) = before.data_store.as_deref() else {
        return;
    };
    let (old, new) = (before.stores.get(id), after.stores.get(id));
    for key in store_keys(old, new) {
        // A key of a sub-table (`tls.enable`) is a path of its own.
        let path: Vec<&str> = ["store", id].into_iter().chain(key.split('.')).collect();
        keys.insert(RestartKey::new(&path, "changed"));
    }
}

/// The keys of one `store.<id>` that differ.
fn store_keys(old: Option<&Store>, new: Option<&Store>) -> Vec<&'static str> {
    let (Some(old), Some(new)) = (old, new) else {
        return if old == new { Vec::new() } else { vec!["type"] };
    };
    let mut keys = Vec::new();
    match (&old.backend, &new.backend) {
        (StoreBackend::Embedded { path: a }, StoreBackend::Embedded { path: b }) if a != b => {
            keys.push("path");
        }
        (
            StoreBackend::FoundationDb { cluster_file: a },
            StoreBackend::FoundationDb { cluster_file: b },
        ) if a != b => keys.push("cluster-file"),
        (
            StoreBackend::PostgreSql {
                host,
                port,
                database,
                user,
                password,
                timeout,
                tls,
                allow_invalid_certs,
                max_connections,
            },
            StoreBackend::PostgreSql {
                host: host_b,
                port: port_b,
                database: database_b,
                user: user_b,
                password: password_b,
                timeout: timeout_b,
                tls: tls_b,
                allow_invalid_certs: allow_invalid_certs_b,
                max_connections: max_connections_b,
            },
        ) => {
            let changed = [
                ("host", host != host_b),
                ("port", port != port_b),
                ("database", database != database_b),
                ("user", user != user_b),
                ("password", password != password_b),
                ("timeout", timeout != timeout_b),
                ("tls.enable", tls != tls_b),
                (
                    "tls.allow-invalid-certs",
                    allow_invalid_certs != allow_invalid_certs_b,
                ),
                ("pool.max-connections", max_connections != max_connections_b),
            ];
            keys.extend(changed.iter().filter(|(_, c)| *c).map(|(key, _)| *key));
        }
        (a, b) if std::mem::discriminant(a) != std::mem::discriminant(b) => keys.push("type"),
        _ => {}
    }
    if old.prefix != new.prefix {
        keys.push("prefix");
    }
    keys
}

/// The gRPC clients of the other roles are made at start: by a split smtp-ingress (both
/// services) and by the operator (the directory-proxy's probe results).
fn cluster(role: Role, before: &Config, after: &Config, keys: &mut BTreeSet<RestartKey>) {
    let (old, new) = (&before.cluster, &after.cluster);
    let asks_directory = matches!(role, Role::SmtpIngress | Role::Operator);
    if asks_directory && old.directory_endpoint != new.directory_endpoint {
        keys.insert(RestartKey::new(
            &["cluster", "directory", "endpoint"],
            "changed",
        ));
    }
    if role == Role::SmtpIngress && old.queue_endpoint != new.queue_endpoint {
        keys.insert(RestartKey::new(
            &["cluster", "queue", "endpoint"],
            "changed",
        ));
    }
    // Plain text or TLS is how listeners and clients were built; a new certificate, key, CA
    // or domain is taken live.
    let speaks_grpc = role.serves(ListenerProtocol::Grpc) || asks_directory;
    if speaks_grpc
        && tls_on(&old.tls)
            .zip(tls_on(&new.tls))
            .is_some_and(|(a, b)| a != b)
    {
        keys.insert(RestartKey::new(&["cluster", "tls", "enable"], "changed"));
    }
}

/// Whether gRPC is mutual TLS (`Some(true)`) or plain text; `None` when nothing speaks it.
fn tls_on(tls: &ClusterTls) -> Option<bool> {
    match tls {
        ClusterTls::Mutual(_) => Some(true),
        ClusterTls::PlainText => Some(false),
        ClusterTls::Unused => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    const BASE: &str = "[server]\nhostname = \"mx.test\"\n[server.listener.smtp]\nbind = \"127.0.0.1:25\"\nprotocol = \"smtp\"\n[server.listener.grpc]\nbind = \"127.0.0.1:50051\"\nprotocol = \"grpc\"\n[server.listener.admin]\nbind = \"127.0.0.1:8080\"\nprotocol = \"http\"\n[store.local]\ntype = \"embedded\"\npath = \"data\"\n[storage]\ndata = \"local\"\n[cluster.directory]\nendpoint = \"http://directory:50051\"\n[cluster.queue]\nendpoint = \"http://queue:50051\"\n[cluster.tls]\nenable = false\n";

    fn config(text: &str) -> Config {
        ferrymail_config::load_str("config.toml", text).unwrap()
    }

    fn keys(role: Role, after: &str) -> Vec<String> {
        differing(role, &config(BASE), &config(after))
            .into_iter()
            .map(|k| format!("{} {}", k.key, k.change))
            .collect()
    }

    #[test]
    fn listeners_of_served_protocols_are_bound_at_start() {
        let moved = BASE
            .replace("127.0.0.1:25", "127.0.0.1:2525")
            .replace("127.0.0.1:50051", "127.0.0.1:50052");
        assert_eq!(
            keys(Role::All, &moved),
            [
                "server.listener.grpc.bind changed",
                "server.listener.smtp.bind changed"
            ]
        );
        // smtp-ingress never binds the gRPC listener.
        assert_eq!(
            keys(Role::SmtpIngress, &moved),
            ["server.listener.smtp.bind changed"]
        );
        let relabelled = BASE.replace("protocol = \"smtp\"", "protocol = \"lmtp\"");
        assert_eq!(
            keys(Role::All, &relabelled),
            ["server.listener.smtp.protocol changed"]
        );
        let more = format!(
            "{}[server.listener.\"lmtp.in\"]\nbind = \"127.0.0.1:24\"\nprotocol = \"lmtp\"\n",
            BASE.replace("[server.listener.admin]", "[server.listener.web]")
        );
        assert_eq!(
            keys(Role::All, &more),
            [
                "server.listener.\"lmtp.in\" added",
                "server.listener.admin removed",
                "server.listener.web added",
            ]
        );
    }

    #[test]
    fn the_store_is_opened_at_start_by_the_roles_that_use_it() {
        let moved = BASE.replace("path = \"data\"", "path = \"elsewhere\"");
        assert_eq!(keys(Role::All, &moved), ["store.local.path changed"]);
        assert_eq!(
            keys(Role::DirectoryProxy, &moved),
            ["store.local.path changed"]
        );
        assert!(keys(Role::SmtpIngress, &moved).is_empty());
        let prefixed = BASE.replace("path = \"data\"\n", "path = \"data\"\nprefix = \"other\"\n");
        assert_eq!(
            keys(Role::QueueScheduler, &prefixed),
            ["store.local.prefix changed"]
        );
        let other = BASE.replace("data = \"local\"", "data = \"other\"")
            + "[store.other]\ntype = \"embedded\"\npath = \"o\"\n";
        assert_eq!(keys(Role::All, &other), ["storage.data changed"]);
    }

    #[test]
    fn the_lease_is_sized_when_the_scheduler_starts() {
        let shorter = format!("{BASE}[queue.lease]\nduration = \"5s\"\nmax-clock-skew = \"1s\"\n");
        assert_eq!(
            keys(Role::QueueScheduler, &shorter),
            ["queue.lease.duration changed"]
        );
        assert_eq!(keys(Role::All, &shorter), ["queue.lease.duration changed"]);
        assert!(keys(Role::SmtpIngress, &shorter).is_empty());
    }

    #[test]
    fn each_changed_key_of_a_postgresql_store_is_named() {
        let postgres = |extra: &str| {
            BASE.replace(
                "type = \"embedded\"\npath = \"data\"\n",
                &format!(
                    "type = \"postgresql\"\nhost = \"127.0.0.1\"\ndatabase = \"mail\"\n\
                     user = \"mx\"\npassword = \"a\"\n{extra}"
                ),
            )
        };
        let before = config(&postgres(""));
        let after = config(
            &postgres("tls.enable = true\npool.max-connections = 3\n").replace("\"a\"", "\"b\""),
        );
        let named: Vec<String> = differing(Role::All, &before, &after)
            .into_iter()
            .map(|k| format!("{} {}", k.key, k.change))
            .collect();
        assert_eq!(
            named,
            [
                "store.local.password changed",
                "store.local.pool.max-connections changed",
                "store.local.tls.enable changed",
            ]
        );
        assert_eq!(
            differing(Role::All, &config(BASE), &before)
                .into_iter()
                .map(|k| k.key)
                .collect::<Vec<_>>(),
            ["store.local.type"]
        );
    }

    #[test]
    fn cluster_endpoints_are_connected_at_start_by_the_roles_that_ask() {
        let moved = BASE
            .replace("http://directory", "http://dir2")
            .replace("http://queue", "http://q2");
        assert_eq!(
            keys(Role::SmtpIngress, &moved),
            [
                "cluster.directory.endpoint changed",
                "cluster.queue.endpoint changed"
            ]
        );
        assert_eq!(
            keys(Role::Operator, &moved),
            ["cluster.directory.endpoint changed"]
        );
        assert!(keys(Role::All, &moved).is_empty());
    }

    #[test]
    fn turning_tls_on_or_off_needs_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["queue-scheduler.ferrymail.internal".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (cert_path, key_path) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        let mutual = BASE.replace("http://", "https://").replace(
            "[cluster.tls]\nenable = false\n",
            &format!(
                "[cluster.tls]\ncertificate = \"%{{file:{c}}}%\"\nprivate-key = \"%{{file:{k}}}%\"\nca = \"%{{file:{c}}}%\"\n",
                c = cert_path.display(),
                k = key_path.display()
            ),
        );
        assert!(
            keys(Role::QueueScheduler, &mutual).contains(&"cluster.tls.enable changed".to_owned())
        );
    }

    #[test]
    fn tracing_is_set_up_at_start() {
        let traced = format!("{BASE}[tracing]\nendpoint = \"http://otel:4317\"\n");
        assert_eq!(keys(Role::Operator, &traced), ["tracing.endpoint changed"]);
    }

    #[test]
    fn the_admin_api_s_credentials_are_read_at_start() {
        let keyed = format!(
            "{BASE}[authentication.api-key.ops]\nsecret = \"t\"\n[server.http]\nallow-plain-text = true\n"
        );
        assert_eq!(
            keys(Role::QueueScheduler, &keyed),
            [
                "authentication changed",
                "server.http.allow-plain-text changed"
            ]
        );
        // Roles without the queue serve no API.
        assert!(keys(Role::SmtpIngress, &keyed).is_empty());
    }

    #[test]
    fn keys_applied_live_need_no_restart() {
        let live = format!(
            "{}[remote.r]\naddress = \"a\"\nprotocol = \"smtp\"\n[session]\ntimeout = \"1m\"\n",
            BASE.replace("mx.test", "mx2.test")
        );
        assert!(keys(Role::All, &live).is_empty());
    }

    #[test]
    fn a_warning_is_given_once_and_not_for_a_change_back() {
        let started = config(BASE);
        let moved = config(&BASE.replace("127.0.0.1:25", "127.0.0.1:2525"));
        let warned = |previous: &Config, next: &Config| {
            to_warn(Role::All, &started, previous, next)
                .into_iter()
                .map(|k| k.key)
                .collect::<Vec<_>>()
        };
        assert_eq!(warned(&started, &moved), ["server.listener.smtp.bind"]);
        // Still pending, but not changed again: said already.
        let unrelated = config(
            &BASE
                .replace("127.0.0.1:25", "127.0.0.1:2525")
                .replace("mx.test", "mx2.test"),
        );
        assert!(warned(&moved, &unrelated).is_empty());
        // Back to what runs: nothing waits for a restart.
        assert!(warned(&moved, &started).is_empty());
    }
}
