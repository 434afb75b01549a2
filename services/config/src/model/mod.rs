//! The typed configuration and how it is read from the TOML tree.

pub mod aliases;
pub mod authentication;
pub mod certificate;
pub mod cluster;
pub mod dead_destinations;
pub mod directory;
pub mod dnsbl;
pub mod hook;
pub mod inbound_limits;
pub mod lists;
pub mod message_auth;
pub mod milter;
pub mod outbound;
pub mod queue;
pub mod queue_limits;
pub mod remote;
pub mod report;
pub mod resolver;
pub mod server;
pub mod session;
pub mod signature;
pub mod store;
pub mod telemetry;
pub mod webhook;

mod bounds;
pub mod cache;
mod references;
mod storage;

// The values of keys live in `value`; their modules stay reachable here, where other crates
// have always found them.
pub use crate::value::{auto_ban, rules, stage_rules};

use std::collections::BTreeMap;

use crate::reader::TableReader;

/// A whole, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `server.*`.
    pub server: server::Server,
    /// `remote.<id>`.
    pub remotes: BTreeMap<String, remote::Remote>,
    /// `directory.<name>`.
    pub directories: BTreeMap<String, directory::Directory>,
    /// `session.*`.
    pub session: session::Session,
    /// `store.<id>`.
    pub stores: BTreeMap<String, store::Store>,
    /// `storage.data`: the store holding queue and cache.
    pub data_store: Option<String>,
    /// `certificate.<id>`.
    pub certificates: BTreeMap<String, certificate::Certificate>,
    /// `queue.*`.
    pub queue: queue::Queue,
    /// `cluster.*`.
    pub cluster: cluster::Cluster,
    /// `auth.*`: message authentication.
    pub auth: message_auth::MessageAuth,
    /// `signature.<id>`: DKIM signing keys.
    pub signatures: BTreeMap<String, signature::Signature>,
    /// `resolver.*`.
    pub resolver: resolver::Resolver,
    /// `tracing.*`.
    pub tracing: telemetry::Tracing,
    /// `authentication.*`: credentials of the HTTP admin API.
    pub authentication: authentication::Authentication,
    /// `webhook.<id>`, the enabled ones: where delivery events are sent.
    pub webhooks: BTreeMap<String, webhook::Webhook>,
    /// `report.dmarc.aggregate.*`: DMARC aggregate reports.
    pub dmarc_reports: report::DmarcAggregate,
    /// `report.tls.aggregate.*`: SMTP TLS reports.
    pub tls_reports: report::TlsAggregate,
}

impl Config {
    /// The store named by `storage.data`, if set.
    pub fn data_store(&self) -> Option<(&str, &store::Store)> {
        let id = self.data_store.as_deref()?;
        self.stores.get(id).map(|store| (id, store))
    }
}

fn collection<T>(
    root: &TableReader<'_>,
    name: &str,
    read: impl Fn(&str, &TableReader<'_>) -> Option<T>,
) -> BTreeMap<String, T> {
    root.table(name)
        .entries()
        .into_iter()
        .filter_map(|(id, t)| Some((id.clone(), read(&id, &t)?)))
        .collect()
}

/// Reads every section; `None` when a problem was reported.
pub(crate) fn read(root: &TableReader<'_>) -> Option<Config> {
    let remotes = collection(root, "remote", |_, t| remote::read(t));
    let directories = collection(root, "directory", directory::read);
    let stores = collection(root, "store", |_, t| store::read(t));
    let certificates = collection(root, "certificate", |_, t| certificate::read(t));
    let certificate_ids: Vec<&str> = certificates.keys().map(String::as_str).collect();
    let server = server::read(root, &certificate_ids);
    let known = references::Known {
        remotes: &remotes,
        directories: &directories,
        stores: &stores,
    };
    let session = session::read(root, &known);
    let data_store = storage::read(root, &known);
    let queue = queue::read(root, &known);
    let uses_grpc = server.as_ref().is_some_and(|s| {
        s.listeners_of(server::ListenerProtocol::Grpc)
            .next()
            .is_some()
    });
    let cluster = cluster::read(root, uses_grpc);
    let signatures = collection(root, "signature", |_, t| signature::read(t));
    let auth = message_auth::read(root, &known, &signatures);
    let resolver = resolver::read(root);
    let tracing = telemetry::read(root);
    let authentication = authentication::read(root);
    let webhooks = webhook::read_all(root);
    let hostname = server.as_ref().map_or("localhost", |s| s.hostname.as_str());
    let (dmarc_reports, tls_reports) = report::read(root, hostname, &signatures);
    Some(Config {
        server: server?,
        remotes,
        directories,
        session: session?,
        stores,
        data_store,
        certificates,
        queue: queue?,
        cluster,
        auth: auth?,
        signatures,
        resolver: resolver?,
        tracing,
        authentication: authentication?,
        webhooks: webhooks?,
        dmarc_reports: dmarc_reports?,
        tls_reports: tls_reports?,
    })
}
