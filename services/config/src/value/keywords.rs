//! The keywords keys take, each a fixed set of lowercase words (`protocol = "smtp"`): what a
//! host or listener speaks, which backend or resolver, which transport-security policy, and
//! what quotas and throttles count separately.

use super::enum_value;

enum_value! {
    /// Protocol spoken to a remote host.
    pub enum RemoteProtocol {
        /// SMTP.
        Smtp = "smtp",
        /// LMTP.
        Lmtp = "lmtp",
        /// IMAP4 (authentication lookups only).
        Imap = "imap",
    }
}

enum_value! {
    /// Kind of server a directory delegates to.
    pub enum DirectoryType {
        /// IMAP4: authentication.
        Imap = "imap",
        /// SMTP: authentication (submission) and recipient validation.
        Smtp = "smtp",
        /// LMTP: recipient validation.
        Lmtp = "lmtp",
    }
}

enum_value! {
    /// What a listener speaks.
    pub enum ListenerProtocol {
        /// SMTP (ports 25, 465, 587).
        Smtp = "smtp",
        /// LMTP (port 24).
        Lmtp = "lmtp",
        /// The admin endpoints: `/healthz`, `/readyz`, `/metrics`.
        Http = "http",
        /// The role services (Directory, Queue).
        Grpc = "grpc",
    }
}

enum_value! {
    /// Backend of a store.
    pub enum StoreType {
        /// A durable single-node database in a local directory.
        Embedded = "embedded",
        /// A PostgreSQL database shared by every process that uses it.
        Postgresql = "postgresql",
        /// A FoundationDB cluster shared by every pod.
        Foundationdb = "foundationdb",
    }
}

enum_value! {
    /// Where the resolver sends its queries (`resolver.type`).
    pub enum ResolverType {
        /// The system's configuration (`/etc/resolv.conf`).
        System = "system",
        /// The name servers listed in `resolver.custom`.
        Custom = "custom",
        /// Cloudflare's public service.
        Cloudflare = "cloudflare",
        /// Cloudflare's public service over TLS.
        CloudflareTls = "cloudflare-tls",
        /// Quad9's public service.
        Quad9 = "quad9",
        /// Quad9's public service over TLS.
        Quad9Tls = "quad9-tls",
        /// Google's public service.
        Google = "google",
    }
}

enum_value! {
    /// Whether a transport-security mechanism is used: Stalwart's `optional | require | disable`.
    pub enum TlsPolicy {
        /// Use it when the peer offers it.
        Optional = "optional",
        /// Deliver only when it can be used.
        Require = "require",
        /// Never use it.
        Disable = "disable",
    }
}

enum_value! {
    /// `queue.outbound.ip-strategy`: which address families of an MX host are tried, in which
    /// order (Stalwart's names).
    pub enum IpStrategy {
        /// IPv4 addresses only.
        Ipv4Only = "ipv4_only",
        /// IPv6 addresses only.
        Ipv6Only = "ipv6_only",
        /// IPv4 addresses first, then IPv6.
        Ipv4ThenIpv6 = "ipv4_then_ipv6",
        /// IPv6 addresses first, then IPv4.
        Ipv6ThenIpv4 = "ipv6_then_ipv4",
    }
}

enum_value! {
    /// What a quota counts separately: one group per value of these.
    pub enum QuotaKey {
        /// The sender address.
        Sender = "sender",
        /// The sender's domain.
        SenderDomain = "sender-domain",
        /// Each recipient address.
        Rcpt = "rcpt",
        /// Each recipient's domain.
        RcptDomain = "rcpt-domain",
    }
}

enum_value! {
    /// What a throttle counts separately: one group per value of these.
    pub enum ThrottleKey {
        /// The sender address.
        Sender = "sender",
        /// The sender's domain.
        SenderDomain = "sender-domain",
        /// The recipient's domain.
        RcptDomain = "rcpt-domain",
        /// The next hop: the `remote.<id>` relayed through.
        Remote = "remote",
    }
}

enum_value! {
    /// What an inbound limiter counts separately (`queue.limiter.inbound.<id>.key`): one
    /// counter per value of these.
    pub enum LimiterKey {
        /// The client's IP address.
        RemoteIp = "remote-ip",
        /// The client's network: its IPv4 /24 or IPv6 /64 (ferrymail's own).
        RemoteNetwork = "remote-network",
        /// The name given in HELO/EHLO/LHLO.
        HeloDomain = "helo-domain",
        /// The envelope sender address.
        Sender = "sender",
        /// The domain of the envelope sender.
        SenderDomain = "sender-domain",
        /// Each recipient address.
        Rcpt = "rcpt",
        /// Each recipient's domain.
        RcptDomain = "rcpt-domain",
        /// The account the client authenticated as.
        AuthenticatedAs = "authenticated-as",
        /// The listener the session arrived on.
        Listener = "listener",
    }
}

enum_value! {
    /// What a DNS blocklist zone is asked about (`session.dnsbl.server.<id>.scope`).
    pub enum DnsblScope {
        /// The client's address, at connect.
        Ip = "ip",
        /// The EHLO/HELO name.
        Helo = "helo",
        /// The domain of the MAIL FROM address.
        SenderDomain = "sender-domain",
    }
}
