//! What a session needs from the configuration, read once per configuration version.

use std::time::Duration;

use std::collections::BTreeMap;
use std::sync::Arc;

use ferrymail_config::Config;
use ferrymail_config::model::aliases::Aliases;
use ferrymail_config::model::dnsbl::Dnsbl;
use ferrymail_config::model::hook::Hook;
use ferrymail_config::model::inbound_limits::InboundLimiter;
use ferrymail_config::model::message_auth::MessageAuth;
use ferrymail_config::model::milter::Milter;
use ferrymail_config::model::rules::Rules;
use ferrymail_config::model::server::{Listener, ListenerProtocol};
use ferrymail_config::model::stage_rules::StageRules;
use ferrymail_config::value::RewriteRules;
use ipnet::IpNet;

/// Settings of one listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSettings {
    /// `server.listener.<id>`.
    pub id: String,
    /// LMTP instead of SMTP.
    pub lmtp: bool,
    /// TLS from the first byte.
    pub tls_implicit: bool,
    /// Text after `220 <hostname>`.
    pub greeting: String,
    /// Connections from `proxy_trusted_networks` start with a PROXY protocol header.
    pub proxy_protocol: bool,
    /// The load balancers that send a PROXY header.
    pub proxy_trusted_networks: Vec<IpNet>,
}

impl ListenerSettings {
    /// The settings of listener `id`.
    pub fn new(id: &str, listener: &Listener) -> Self {
        Self {
            id: id.to_string(),
            lmtp: listener.protocol == ListenerProtocol::Lmtp,
            tls_implicit: listener.tls_implicit,
            greeting: listener
                .greeting
                .clone()
                .unwrap_or_else(|| "ESMTP ferrymail".to_string()),
            proxy_protocol: listener.proxy_protocol,
            proxy_trusted_networks: listener.proxy_trusted_networks.clone(),
        }
    }
}

/// The settings of every SMTP and LMTP listener of one configuration, by id.
pub(crate) type ListenerTable = BTreeMap<String, Arc<ListenerSettings>>;

/// The SMTP and LMTP listeners of `config`.
pub(crate) fn listener_table(config: &Config) -> ListenerTable {
    config
        .server
        .listeners
        .iter()
        .filter(|(_, l)| matches!(l.protocol, ListenerProtocol::Smtp | ListenerProtocol::Lmtp))
        .map(|(id, l)| (id.clone(), Arc::new(ListenerSettings::new(id, l))))
        .collect()
}

/// Session settings shared by every listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `server.hostname`.
    pub hostname: String,
    /// `session.auth.directory`: AUTH is offered only with one.
    pub auth_directory: Option<String>,
    /// `session.rcpt.directory`: without one, no domain is local.
    pub rcpt_directory: Option<String>,
    /// `session.auth.allow-plain-text`.
    pub auth_allow_plain_text: bool,
    /// `session.timeout`.
    pub timeout: Duration,
    /// `session.duration`.
    pub duration: Duration,
    /// `session.data.timeout`.
    pub data_timeout: Duration,
    /// `session.command-deadline`.
    pub command_deadline: Duration,
    /// `session.data.min-rate`, in bytes per second; 0 for none.
    pub data_min_rate: u32,
    /// `session.errors.total`.
    pub max_errors: u32,
    /// `session.auth.errors.total`.
    pub max_auth_errors: u32,
    /// `session.rcpt.relay`.
    pub relay: Rules<bool>,
    /// `session.<stage>.reject`.
    pub reject: StageRules,
    /// `session.mail.rewrite`.
    pub mail_rewrite: RewriteRules,
    /// `session.rcpt.rewrite`.
    pub rcpt_rewrite: RewriteRules,
    /// `session.rcpt.aliases`.
    pub aliases: Aliases,
    /// `session.rcpt.max-recipients`.
    pub max_recipients: usize,
    /// `session.data.limits.size`.
    pub max_message_size: u64,
    /// `session.data.limits.messages`.
    pub max_messages: u32,
    /// `server.max-connections`.
    pub max_connections: usize,
    /// `server.max-connections-per-ip`.
    pub max_connections_per_ip: usize,
    /// `auth.*`: message authentication.
    pub auth: MessageAuth,
    /// `report.dmarc.aggregate.send` is on: DMARC evaluations go to the queue for reports.
    pub dmarc_reports: bool,
    /// `session.dnsbl.*`: DNS blocklists.
    pub dnsbl: Dnsbl,
    /// `session.milter.<id>`, the enabled ones, by id.
    pub milters: Vec<Milter>,
    /// `session.hook.<id>`: the enabled MTA hooks, in the order of their ids.
    pub hooks: Vec<Arc<Hook>>,
    /// `queue.limiter.inbound.<id>`, the enabled ones, by id.
    pub limiters: Vec<(String, InboundLimiter)>,
}

impl Settings {
    /// The session settings of `config`.
    pub fn new(config: &Config) -> Self {
        let s = &config.session;
        Self {
            hostname: config.server.hostname.clone(),
            auth_directory: s.auth_directory.clone(),
            rcpt_directory: s.rcpt_directory.clone(),
            auth_allow_plain_text: s.auth_allow_plain_text,
            timeout: s.timeout,
            duration: s.duration,
            data_timeout: s.data_timeout,
            command_deadline: s.command_deadline,
            data_min_rate: s.data_min_rate,
            max_errors: s.max_errors,
            max_auth_errors: s.max_auth_errors,
            relay: s.relay.0.clone(),
            reject: s.reject.clone(),
            mail_rewrite: s.mail_rewrite.clone(),
            rcpt_rewrite: s.rcpt_rewrite.clone(),
            aliases: s.aliases.clone(),
            max_recipients: s.max_recipients as usize,
            max_message_size: s.max_message_size.0,
            max_messages: s.max_messages,
            max_connections: config.server.max_connections as usize,
            max_connections_per_ip: config.server.max_connections_per_ip as usize,
            auth: config.auth.clone(),
            dmarc_reports: config.dmarc_reports.enabled(),
            dnsbl: s.dnsbl.clone(),
            milters: s.milters.clone(),
            hooks: s.hooks.iter().cloned().map(Arc::new).collect(),
            limiters: config.queue.inbound_limiters.clone().into_iter().collect(),
        }
    }
}
