//! `server.*`: host name and listeners (seed 003).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use ipnet::IpNet;

use crate::keys;
use crate::reader::TableReader;
use crate::value::Rate;

// The values of this section's keys, where other crates have always found them.
pub use crate::value::ListenerProtocol;

/// `server.listener.<id>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// Addresses accepted on.
    pub bind: Vec<SocketAddr>,
    /// Protocol spoken.
    pub protocol: ListenerProtocol,
    /// Greeting text for SMTP/LMTP.
    pub greeting: Option<String>,
    /// TLS from the first byte.
    pub tls_implicit: bool,
    /// Connections from `proxy_trusted_networks` start with a PROXY protocol header.
    pub proxy_protocol: bool,
    /// The proxies allowed (and required) to send a PROXY header.
    pub proxy_trusted_networks: Vec<IpNet>,
}

/// `server.*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// `server.hostname`.
    pub hostname: String,
    /// `server.shutdown-timeout`.
    pub shutdown_timeout: Duration,
    /// Listeners by id.
    pub listeners: BTreeMap<String, Listener>,
    /// `server.tls.certificate`, or the only certificate there is.
    pub tls_certificate: Option<String>,
    /// `server.max-connections`.
    pub max_connections: u32,
    /// `server.max-connections-per-ip`.
    pub max_connections_per_ip: u32,
    /// `server.auto-ban.auth.rate`: most failed authentications per login name and per
    /// client address in a period; `None` for no limit.
    pub auto_ban_auth: Option<Rate>,
    /// `server.http.allow-plain-text`: admin API credentials accepted over plain HTTP from
    /// other hosts.
    pub http_allow_plain_text: bool,
}

impl Server {
    /// Listeners speaking one protocol, with their ids.
    pub fn listeners_of(
        &self,
        protocol: ListenerProtocol,
    ) -> impl Iterator<Item = (&str, &Listener)> {
        self.listeners
            .iter()
            .filter(move |(_, l)| l.protocol == protocol)
            .map(|(id, l)| (id.as_str(), l))
    }
}

pub(crate) fn read(root: &TableReader<'_>, certificates: &[&str]) -> Option<Server> {
    let t = root.table("server");
    let hostname = match t.get(&keys::SERVER_HOSTNAME) {
        None if !t.contains("hostname") => default_hostname(&t),
        set_or_refused => set_or_refused,
    };
    let shutdown_timeout = t.get(&keys::SERVER_SHUTDOWN_TIMEOUT);
    let max_connections = t.get(&keys::SERVER_MAX_CONNECTIONS);
    let max_connections_per_ip = t.get(&keys::SERVER_MAX_CONNECTIONS_PER_IP);
    let auto_ban_auth = t
        .table("auto-ban")
        .table("auth")
        .get(&keys::SERVER_AUTO_BAN_AUTH_RATE);
    let http_allow_plain_text = t.table("http").get(&keys::SERVER_HTTP_ALLOW_PLAIN_TEXT);
    let tls = t.table("tls");
    let tls_certificate = match tls.get(&keys::SERVER_TLS_CERTIFICATE) {
        Some(id) if !certificates.contains(&id.as_str()) => {
            tls.report(
                "certificate",
                format!(
                    "no certificate named {id:?} (configured: {})",
                    certificates.join(", ")
                ),
            );
            None
        }
        Some(id) => Some(id),
        None if certificates.len() == 1 => certificates.first().map(|id| id.to_string()),
        None => None,
    };
    let listeners = t.table("listener");
    let listeners: BTreeMap<_, _> = listeners
        .entries()
        .into_iter()
        .filter_map(|(id, l)| {
            let listener = read_listener(&l, tls_certificate.is_some(), certificates.len())?;
            Some((id, listener))
        })
        .collect();
    Some(Server {
        hostname: hostname?,
        shutdown_timeout: shutdown_timeout?,
        listeners,
        tls_certificate,
        max_connections: max_connections?,
        max_connections_per_ip: max_connections_per_ip?,
        auto_ban_auth: auto_ban_auth?.0,
        http_allow_plain_text: http_allow_plain_text?,
    })
}

/// The machine's host name, as Stalwart defaults `server.hostname`; one that cannot be had or
/// is no valid host name is reported, since it would be announced in every greeting and EHLO.
fn default_hostname(t: &TableReader<'_>) -> Option<String> {
    let problem = match t.env().hostname() {
        Some(name) if is_host_name(&name) => return Some(name),
        Some(name) => format!(
            "not set, and the machine's host name {name:?} is not a valid host name: set it"
        ),
        None => "not set, and the machine's host name cannot be found: set it".to_string(),
    };
    t.report("hostname", problem);
    None
}

/// Whether `name` is a host name (RFC 1123): dot-separated labels of letters, digits and
/// hyphens, none starting or ending with a hyphen, at most 63 bytes each and 253 in all.
fn is_host_name(name: &str) -> bool {
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    (1..=253).contains(&name.len()) && name.split('.').all(label_ok)
}

fn read_listener(
    t: &TableReader<'_>,
    has_certificate: bool,
    certificates: usize,
) -> Option<Listener> {
    let bind = t.get(&keys::LISTENER_BIND);
    let protocol = t.get(&keys::LISTENER_PROTOCOL);
    let greeting = t.get(&keys::LISTENER_GREETING);
    let tls_implicit = t.table("tls").get(&keys::LISTENER_TLS_IMPLICIT);
    let proxy_protocol = t.get(&keys::LISTENER_PROXY_PROTOCOL);
    let proxy = t.table("proxy");
    let proxy_trusted_networks = proxy.get(&keys::LISTENER_PROXY_TRUSTED_NETWORKS);
    let protocol = protocol?;
    let mail = matches!(protocol, ListenerProtocol::Smtp | ListenerProtocol::Lmtp);
    if greeting.is_some() && !mail {
        t.report(
            "greeting",
            format!("a greeting applies only to smtp and lmtp listeners, not {protocol}"),
        );
    }
    let tls_implicit = tls_implicit?;
    if tls_implicit && !has_certificate {
        let why = if certificates > 1 {
            "set server.tls.certificate to choose one"
        } else {
            "add a certificate.<id>"
        };
        t.report("tls", format!("implicit TLS needs a certificate: {why}"));
    }
    let proxy_protocol = proxy_protocol?;
    let proxy_trusted_networks = proxy_trusted_networks?;
    if !mail {
        if proxy_protocol {
            t.report(
                "proxy-protocol",
                format!(
                    "the PROXY protocol applies only to smtp and lmtp listeners, not {protocol}"
                ),
            );
        }
        if !proxy_trusted_networks.is_empty() {
            proxy.report(
                "trusted-networks",
                format!(
                    "the PROXY protocol applies only to smtp and lmtp listeners, not {protocol}"
                ),
            );
        }
    } else if proxy_protocol && proxy_trusted_networks.is_empty() {
        // Trusting every source would let any client forge its address.
        t.report(
            "proxy-protocol",
            "the PROXY protocol needs proxy.trusted-networks, the networks of the load balancers \
             (a header accepted from anyone would let any client choose its own address)",
        );
    }
    Some(Listener {
        bind: bind?.0,
        protocol,
        greeting,
        tls_implicit,
        proxy_protocol,
        proxy_trusted_networks,
    })
}

#[cfg(test)]
mod tests {
    use super::is_host_name;

    #[test]
    fn host_names_are_labels_of_letters_digits_and_hyphens() {
        for good in [
            "mx",
            "mx1.example.org",
            "ferrymail-smtp-ingress-7d9c",
            "0.example",
        ] {
            assert!(is_host_name(good), "{good}");
        }
        let long_label = "a".repeat(64);
        let long_name = ["a".repeat(63).as_str(); 5].join(".");
        for bad in [
            "",
            "mx example",
            "-mx.example",
            "mx-.example",
            "mx..example",
            "mx.example.",
            "mx_1.example",
            long_label.as_str(),
            long_name.as_str(),
        ] {
            assert!(!is_host_name(bad), "{bad}");
        }
    }
}
