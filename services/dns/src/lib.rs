//! ferrymail-dns: the DNS resolver described by `resolver.*`.
//!
//! [`authenticator`] builds a [`MessageAuthenticator`] — mail-auth's resolver, which checks
//! SPF, DKIM, ARC and DMARC — from the configuration: the system's settings by default, a
//! public service, or custom name servers such as `udp://127.0.0.1:5353` (what tests use).
//! The same value answers the lookups MX delivery needs (and [`mta_sts_id`], a domain's
//! MTA-STS record):
//!
//! ```no_run
//! # use ferrymail_config::model::outbound::IpStrategy;
//! # async fn deliver(resolver: &ferrymail_config::model::resolver::Resolver) -> Result<(), Box<dyn std::error::Error>> {
//! let dns = ferrymail_dns::authenticator(resolver)?;
//! for mx in ferrymail_dns::mx_hosts(&dns, "example.org").await? {
//!     let addresses = ferrymail_dns::ip_addresses(&dns, &mx.host, IpStrategy::Ipv4ThenIpv6).await?;
//!     println!("{} (preference {}): {addresses:?}", mx.host, mx.preference);
//! }
//! # Ok(()) }
//! ```
//!
//! A lookup fails either because the name has no such record ([`LookupError::NotFound`]: a
//! permanent answer) or because DNS could not be asked ([`LookupError::Temporary`]: try
//! again later). Callers must keep the two apart: only the first may bounce mail.
//!
//! [`dnssec_resolver`] asks the same name servers with the DNSSEC bits set and reports
//! whether each answer was authenticated: what DANE needs (see [`DnssecResolver`]).

mod blocklist_lookup;
mod dmarc_report;
mod dnssec;
mod lookups;
mod mta_sts;
mod tls_report;

use std::time::Duration;

use ferrymail_config::model::resolver::{NameServerProtocol, Resolver, ResolverType};
use hickory_resolver::config::{
    CLOUDFLARE, ConnectionConfig, GOOGLE, NameServerConfig, QUAD9, ResolverConfig, ResolverOpts,
};

pub use blocklist_lookup::{AddressRecords, address_records};
pub use dmarc_report::{ReportDestinations, dmarc_report_destinations};
pub use dnssec::{Authenticated, DnssecResolver, SecureAddresses, TlsaRecord, dnssec_resolver};
pub use lookups::{LookupError, MxHost, ip_addresses, mx_hosts};
pub use mail_auth::MessageAuthenticator;
pub use mta_sts::mta_sts_id;
pub use tls_report::{TlsReportDestinations, tls_report_destinations};

/// The resolver could not be built.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// `resolver.type = "system"` and the system's configuration cannot be read.
    #[error("cannot read the system's DNS configuration (resolver.type = \"system\"): {0}")]
    SystemConfig(String),
    /// The resolver refused the settings.
    #[error("cannot build the DNS resolver: {0}")]
    Build(String),
}

/// Builds the resolver `settings` describes, as mail-auth's authenticator.
pub fn authenticator(settings: &Resolver) -> Result<MessageAuthenticator, DnsError> {
    let (config, options) = resolver_parts(settings)?;
    MessageAuthenticator::new(config, options).map_err(|e| DnsError::Build(e.to_string()))
}

/// The name servers and options `settings` describes.
fn resolver_parts(settings: &Resolver) -> Result<(ResolverConfig, ResolverOpts), DnsError> {
    let (config, mut options) = match settings.kind {
        ResolverType::System => hickory_resolver::system_conf::read_system_conf()
            .map_err(|e| DnsError::SystemConfig(e.to_string()))?,
        ResolverType::Custom => (custom(settings), ResolverOpts::default()),
        ResolverType::Cloudflare => (
            ResolverConfig::udp_and_tcp(&CLOUDFLARE),
            ResolverOpts::default(),
        ),
        ResolverType::CloudflareTls => (ResolverConfig::tls(&CLOUDFLARE), ResolverOpts::default()),
        ResolverType::Quad9 => (ResolverConfig::udp_and_tcp(&QUAD9), ResolverOpts::default()),
        ResolverType::Quad9Tls => (ResolverConfig::tls(&QUAD9), ResolverOpts::default()),
        ResolverType::Google => (
            ResolverConfig::udp_and_tcp(&GOOGLE),
            ResolverOpts::default(),
        ),
    };
    apply(settings, &mut options);
    Ok((config, options))
}

/// The name servers of `resolver.custom`.
fn custom(settings: &Resolver) -> ResolverConfig {
    let servers = settings
        .custom
        .iter()
        .map(|server| {
            let mut connections = match server.protocol {
                // TCP is listed too so that truncated answers and `try-tcp-on-error` work.
                NameServerProtocol::Udp => vec![ConnectionConfig::udp(), ConnectionConfig::tcp()],
                NameServerProtocol::Tcp => vec![ConnectionConfig::tcp()],
            };
            for connection in &mut connections {
                connection.port = server.address.port();
            }
            NameServerConfig::new(server.address.ip(), true, connections)
        })
        .collect();
    ResolverConfig::from_name_servers(servers)
}

/// The tunables of `resolver.*`, over the defaults of the chosen source.
fn apply(settings: &Resolver, options: &mut ResolverOpts) {
    options.timeout = settings.timeout.max(Duration::from_millis(1));
    options.attempts = settings.attempts as usize;
    options.num_concurrent_reqs = settings.concurrency as usize;
    options.try_tcp_on_error = settings.try_tcp_on_error;
    options.preserve_intermediates = settings.preserve_intermediates;
}
