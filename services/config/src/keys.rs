//! The catalogue of every configuration key. The reference in the README is generated
//! from this list (`ferrymail config-reference`), and a test keeps the two identical.
//!
//! It names only the types of values (`value`): the sections of `model` read their keys from
//! here, so the dependency goes from the sections to the catalogue, never back.

use std::time::Duration;

use ipnet::IpNet;

use crate::key::{Presence::*, keys};
use crate::value::auto_ban::BanRate;
use crate::value::limiter_match::LimiterMatch;
use crate::value::rules::Match;
use crate::value::stage_rules::{RejectRule, Stage};
use crate::value::{
    Bind, ByteSize, Canonicalization, CertificateChain, DirectoryType, DnsblScope, IpStrategy,
    LimiterKey, ListenerProtocol, LookupList, NameServer, NextHop, PrivateKey, QuotaKey, Rate,
    RelayRule, RemoteProtocol, ReportFrequency, ResolverType, RewriteRules, SealRule, Secret,
    SignRule, SignatureAlgorithm, SignatureList, StoreType, StoredPassword, ThrottleKey, TlsPolicy,
    VerifyRule,
};

keys! {
    SERVER_HOSTNAME: String = "server.hostname", Derived("the machine's host name"),
        "Host name this server announces in greetings, EHLO and Received headers; when unset, the machine's host name (on Kubernetes, the pod's name), which must then be a valid host name.";
    SERVER_SHUTDOWN_TIMEOUT: Duration = "server.shutdown-timeout", Default("\"30s\""),
        "How long a stopping process lets in-flight sessions and deliveries finish before it exits.";
    SERVER_TLS_CERTIFICATE: String = "server.tls.certificate", Derived("the only `certificate.<id>`, when there is one"),
        "Certificate (a `certificate.<id>`) offered by STARTTLS and implicit-TLS listeners.";
    SERVER_MAX_CONNECTIONS: u32 = "server.max-connections", Default("8192"),
        "Most SMTP/LMTP sessions served at once by one process; more are answered `421` and closed.";
    SERVER_MAX_CONNECTIONS_PER_IP: u32 = "server.max-connections-per-ip", Default("32"),
        "Most SMTP/LMTP sessions from one client address at once.";
    SERVER_HTTP_ALLOW_PLAIN_TEXT: bool = "server.http.allow-plain-text", Default("false"),
        "Accept credentials for the HTTP admin API over plain HTTP from clients other than this host. By default a request that carries an `Authorization` header over plain HTTP is answered `403` unless it comes from a loopback address (such as `kubectl port-forward`): use an `http` listener with `tls.implicit = true` instead (ferrymail's own key).";
    AUTH_FALLBACK_ADMIN_USER: String = "authentication.fallback-admin.user", Optional,
        "User name of the HTTP admin API's administrator (HTTP Basic authentication, `curl -u user:secret`); set together with `secret`. Stalwart's key.";
    AUTH_FALLBACK_ADMIN_SECRET: StoredPassword = "authentication.fallback-admin.secret", Optional,
        "Password of `authentication.fallback-admin.user`: its argon2 hash (`$argon2id$…`, as `argon2` prints it), or the password itself. Stalwart's key.";
    AUTH_API_KEY_SECRET: StoredPassword = "authentication.api-key.<id>.secret", Required,
        "A bearer token for the HTTP admin API (`Authorization: Bearer <token>`), with the `admin` role's permissions: the argon2 hash of the token, or the token itself (ferrymail's own key).";
    SERVER_AUTO_BAN_AUTH_RATE: BanRate = "server.auto-ban.auth.rate", Default("\"100/1d\""),
        "Most failed authentications a login name, and a client address (IPv6: its /64), may have within the period, counted in the store across every replica, e.g. `\"100/1d\"`; past it, AUTH from that address or as that login is answered `454 4.7.0` without asking the directory, until older failures leave the period. `false` turns the limit off. Stalwart's key and default; Stalwart bans the address from every service instead (see [Brute force](#brute-force)).";
    LISTENER_BIND: Bind = "server.listener.<id>.bind", Required,
        "Address or addresses the listener accepts connections on.";
    LISTENER_PROTOCOL: ListenerProtocol = "server.listener.<id>.protocol", Required,
        "What the listener speaks: SMTP or LMTP for mail, HTTP for the admin endpoints, gRPC for the role services.";
    LISTENER_GREETING: String = "server.listener.<id>.greeting", Optional,
        "Text after `220 <hostname>` in the SMTP/LMTP greeting.";
    LISTENER_TLS_IMPLICIT: bool = "server.listener.<id>.tls.implicit", Default("false"),
        "Start TLS as soon as a client connects (port 465 style) instead of offering STARTTLS.";
    LISTENER_PROXY_PROTOCOL: bool = "server.listener.<id>.proxy-protocol", Default("false"),
        "Read a PROXY protocol v1 or v2 header (sent by a load balancer) before the greeting and TLS on connections from `proxy.trusted-networks`, and take the client address from it (SMTP/LMTP listeners).";
    LISTENER_PROXY_TRUSTED_NETWORKS: Vec<IpNet> = "server.listener.<id>.proxy.trusted-networks", Default("[]"),
        "Networks of the proxies that must send a PROXY header (at least one when `proxy-protocol` is on); clients from elsewhere keep their own address, and a header from them is answered as an unknown command.";

    REMOTE_ADDRESS: String = "remote.<id>.address", Required,
        "Host name or IP address of the remote server.";
    REMOTE_PORT: u16 = "remote.<id>.port", Derived("465/25 for smtp, 24 for lmtp, 993/143 for imap (implicit TLS / not)"),
        "Port on the remote server.";
    REMOTE_PROTOCOL: RemoteProtocol = "remote.<id>.protocol", Required,
        "Protocol spoken to the remote server.";
    REMOTE_CONCURRENCY: u32 = "remote.<id>.concurrency", Default("10"),
        "Most connections open to the remote host at any time.";
    REMOTE_TIMEOUT: Duration = "remote.<id>.timeout", Default("\"60s\""),
        "Time limit for connecting to the remote host and for each command.";
    REMOTE_LOOKUP: bool = "remote.<id>.lookup", Default("false"),
        "Whether the host may be used for lookups: authentication, RCPT validation, VRFY, EXPN and `in-list = \"remote/<id>\"`.";
    REMOTE_PROBE_INTERVAL: Duration = "remote.<id>.probe.interval", Default("\"1m\""),
        "How often the directory-proxy checks that the host answers as a lookup would use it (connect, greeting, TLS, EHLO/LHLO or CAPABILITY); the result is the `directory_remote_up` metric and the `Reachable` condition of a `RemoteHost`.";
    REMOTE_TLS_IMPLICIT: bool = "remote.<id>.tls.implicit", Default("true"),
        "Use TLS from the start of the connection; when false, upgrade with STARTTLS if the server offers it.";
    REMOTE_TLS_ALLOW_INVALID_CERTS: bool = "remote.<id>.tls.allow-invalid-certs", Default("false"),
        "Accept self-signed and otherwise invalid certificates (testing only).";
    REMOTE_TLS_ALLOW_PLAIN_TEXT: bool = "remote.<id>.tls.allow-plain-text", Default("false"),
        "Send passwords (AUTH lookups, and `auth.secret` when relaying) over a connection that is not encrypted, when the host offers no STARTTLS. By default such a lookup fails temporarily (`454` at the SMTP door) and such a delivery is retried, without the password being sent (ferrymail's own key).";
    REMOTE_AUTH_USERNAME: String = "remote.<id>.auth.username", Optional,
        "User name to authenticate with (SMTP and LMTP hosts); set together with `secret`.";
    REMOTE_AUTH_SECRET: Secret = "remote.<id>.auth.secret", Optional,
        "Password to authenticate with; prefer `%{file:…}%` or `%{env:…}%` to writing it here.";
    REMOTE_LIMITS_ERRORS: u32 = "remote.<id>.limits.errors", Default("3"),
        "Errors after which a pooled connection is closed.";
    REMOTE_LIMITS_REQUESTS: u32 = "remote.<id>.limits.requests", Default("50"),
        "Requests sent on one connection before it is replaced.";
    REMOTE_CACHE_ENTRIES: u64 = "remote.<id>.cache.entries", Default("1024"),
        "Most entries in the host's LRU lookup cache.";
    REMOTE_CACHE_TTL_POSITIVE: Duration = "remote.<id>.cache.ttl.positive", Default("\"1d\""),
        "How long a successful lookup is cached.";
    REMOTE_CACHE_TTL_NEGATIVE: Duration = "remote.<id>.cache.ttl.negative", Default("\"1h\""),
        "How long a failed or non-existent lookup is cached.";

    DIRECTORY_TYPE: DirectoryType = "directory.<name>.type", Required,
        "Kind of server the directory delegates to.";
    DIRECTORY_ADDRESS: String = "directory.<name>.address", Required,
        "Host name or IP address of the server.";
    DIRECTORY_PORT: u16 = "directory.<name>.port", Derived("993/143 for imap, 465/25 for smtp, 24 for lmtp (implicit TLS / not)"),
        "Port on the server.";
    DIRECTORY_TIMEOUT: Duration = "directory.<name>.timeout", Default("\"30s\""),
        "Time limit for connecting and for each command.";
    DIRECTORY_POOL_MAX_CONNECTIONS: u32 = "directory.<name>.pool.max-connections", Default("10"),
        "Most connections open to the server at any time.";
    DIRECTORY_TLS_IMPLICIT: bool = "directory.<name>.tls.implicit", Default("false"),
        "Use TLS from the start of the connection; when false, upgrade with STARTTLS if the server offers it.";
    DIRECTORY_TLS_ALLOW_INVALID_CERTS: bool = "directory.<name>.tls.allow-invalid-certs", Default("false"),
        "Accept self-signed and otherwise invalid certificates (testing only).";
    DIRECTORY_TLS_ALLOW_PLAIN_TEXT: bool = "directory.<name>.tls.allow-plain-text", Default("false"),
        "Send passwords (AUTH lookups) over a connection that is not encrypted, when the server offers no STARTTLS. By default such a lookup fails temporarily (`454` at the SMTP door) without the password being sent; recipient lookups, which carry none, are not affected (ferrymail's own key).";
    DIRECTORY_LIMITS_RCPT: u32 = "directory.<name>.limits.rcpt", Default("10"),
        "Recipients tested in one session before it is reset (`RSET` and a new `MAIL FROM:<>`).";
    DIRECTORY_LIMITS_AUTH_ERRORS: u32 = "directory.<name>.limits.auth-errors", Default("3"),
        "Authentication errors after which the connection is closed.";
    DIRECTORY_CACHE_ENTRIES: u64 = "directory.<name>.cache.entries", Default("1024"),
        "Most entries in the directory's LRU lookup cache.";
    DIRECTORY_CACHE_TTL_POSITIVE: Duration = "directory.<name>.cache.ttl.positive", Default("\"1d\""),
        "How long a successful lookup is cached.";
    DIRECTORY_CACHE_TTL_NEGATIVE: Duration = "directory.<name>.cache.ttl.negative", Default("\"1h\""),
        "How long a failed or non-existent lookup is cached.";
    DIRECTORY_LOOKUP_LIST: LookupList = "directory.<name>.lookup.<list>", Optional,
        "A lookup list: values inline, or entries `file:///path` naming a file with one value per line. `lookup.domains` lists the local domains.";

    SESSION_TIMEOUT: Duration = "session.timeout", Default("\"5m\""),
        "How long the server waits for a client's next command.";
    SESSION_DURATION: Duration = "session.duration", Default("\"10m\""),
        "Longest a session may last.";
    SESSION_COMMAND_DEADLINE: Duration = "session.command-deadline", Default("\"30s\""),
        "How long a client has to send the rest of a command line once its first byte arrived, however the bytes trickle in (`session.timeout` restarts on every byte; this does not); `421 4.4.2` beyond. Also the allowance a message body starts with (see `session.data.min-rate`). Like Postfix's `smtpd_per_record_deadline` (ferrymail's own key).";
    SESSION_ERRORS_TOTAL: u32 = "session.errors.total", Default("10"),
        "Refused commands after which the session is ended (`421`).";
    SESSION_CONNECT_REJECT: RejectRule = "session.connect.reject", Default("false"),
        "Reply sent instead of the greeting, closing the connection (a 4xx is sent as `421`), e.g. `[{ if = \"remote-ip\", in-list = \"corp/blocked\", then = \"554 5.7.1 Your address is blocked\" }, { else = false }]`; `false` accepts. Variables: `remote-ip`, `listener`.";
    SESSION_EHLO_REJECT: RejectRule = "session.ehlo.reject", Default("false"),
        "Reply that refuses EHLO/HELO/LHLO (`false` accepts). Variables: those of `connect` and `helo-domain`.";
    SESSION_AUTH_DIRECTORY: String = "session.auth.directory", Optional,
        "Directory that checks AUTH credentials; AUTH is not offered without one.";
    SESSION_AUTH_ALLOW_PLAIN_TEXT: bool = "session.auth.allow-plain-text", Default("false"),
        "Offer AUTH on connections that are not encrypted (passwords would cross the network in clear).";
    SESSION_AUTH_ERRORS_TOTAL: u32 = "session.auth.errors.total", Default("3"),
        "Failed AUTH attempts after which the session is ended (`421`).";
    SESSION_MAIL_REWRITE: RewriteRules = "session.mail.rewrite", Default("false"),
        "Rules that rewrite the envelope sender at MAIL FROM, before `session.mail.reject` and SPF: `[ { if = \"sender\", matches = \"<regex>\", then = \"<new address, $1 for captures>\" }, { else = false } ]`; `if` is `sender` or `sender-domain`. The first matching rule decides; the null sender is never rewritten. Stalwart's key; Stalwart writes the rule as an expression.";
    SESSION_MAIL_REJECT: RejectRule = "session.mail.reject", Default("false"),
        "Reply that refuses MAIL FROM (`false` accepts). Variables: those of `ehlo`, `sender`, `sender-domain`, `authenticated-as`.";
    SESSION_RCPT_DIRECTORY: String = "session.rcpt.directory", Optional,
        "Directory that validates recipients and lists the local domains; without one, only authenticated clients can send.";
    SESSION_RCPT_RELAY: RelayRule = "session.rcpt.relay", Default("false"),
        "Whether unauthenticated clients may send to domains that are not local, e.g. `[{ if = \"remote-ip\", in-list = \"corp/trusted\", then = true }, { else = false }]`; authenticated clients always may.";
    SESSION_RCPT_REWRITE: RewriteRules = "session.rcpt.rewrite", Default("false"),
        "Rules that rewrite a recipient at RCPT TO, before `session.rcpt.reject`, relay control and recipient validation, which then see the new address: as `session.mail.rewrite`, with `if` = `rcpt` or `rcpt-domain`. A rule that makes an invalid address refuses the recipient with `550 5.1.3`. Stalwart's key; Stalwart writes the rule as an expression.";
    SESSION_RCPT_ALIASES: String = "session.rcpt.aliases", Optional,
        "A lookup list (`\"<directory>/<list>\"`) of aliases, each entry `alias@domain = target@domain, …`: a recipient that is an alias (after `session.rcpt.rewrite`) is replaced by its targets, as Postfix's virtual alias maps do, one level deep. The alias is accepted without relay control or asking the directory, and its targets (the administrator's) are queued as they are; each counts against `session.rcpt.max-recipients`; at most 1000 per alias (ferrymail's own key).";
    SESSION_RCPT_REJECT: RejectRule = "session.rcpt.reject", Default("false"),
        "Reply that refuses RCPT TO, before the recipient is checked or relayed (`false` accepts). Variables: those of `mail`, `rcpt`, `rcpt-domain`.";
    SESSION_RCPT_MAX_RECIPIENTS: u32 = "session.rcpt.max-recipients", Default("100"),
        "Most recipients of one message (`452` beyond).";
    SESSION_DATA_LIMITS_SIZE: ByteSize = "session.data.limits.size", Default("\"100MB\""),
        "Largest message accepted (announced as SIZE; `552` beyond).";
    SESSION_DATA_LIMITS_MESSAGES: u32 = "session.data.limits.messages", Default("10"),
        "Most messages in one session (`452` beyond).";
    SESSION_DATA_TIMEOUT: Duration = "session.data.timeout", Default("\"10m\""),
        "How long the server waits for the next piece of a message body.";
    SESSION_DATA_MIN_RATE: u32 = "session.data.min-rate", Default("500"),
        "Lowest average rate, in bytes per second, at which a message body (DATA, or the BDAT chunks and commands of one message) must arrive: its deadline is `session.command-deadline` after its first byte, extended by one second per `min-rate` bytes received; `421 4.4.2` beyond. `0` turns it off. Like Postfix's `smtpd_min_data_rate` (ferrymail's own key).";
    SESSION_DATA_REJECT: RejectRule = "session.data.reject", Default("false"),
        "Reply that refuses DATA or BDAT before the body is read (`false` accepts). Variables: those of `mail`.";
    SESSION_DNSBL_THRESHOLD: u32 = "session.dnsbl.threshold", Default("1"),
        "Score at or above which a client is refused: the weights of the zones that list it are added up, separately for each scope (`554 5.7.1` at connect for `ip`, `550 5.7.1` at EHLO or MAIL FROM for `helo` and `sender-domain`). At least 1. Like Postfix's `postscreen_dnsbl_threshold` (see [DNS blocklists](#dns-blocklists)).";
    SESSION_DNSBL_ALLOW_THRESHOLD: i32 = "session.dnsbl.allow-threshold", Default("0"),
        "A client whose `ip` score is at or below this negative value (allow lists have negative weights) skips the `helo` and `sender-domain` checks; `0` turns this off. Like Postfix's `postscreen_dnsbl_allowlist_threshold`.";
    SESSION_DNSBL_TIMEOUT: Duration = "session.dnsbl.timeout", Default("\"5s\""),
        "How long the blocklist lookups of one stage may take together; a zone that has not answered by then counts as not listing (fail open).";
    SESSION_DNSBL_SERVER_ZONE: String = "session.dnsbl.server.<id>.zone", Required,
        "DNS zone of the blocklist or allow list, e.g. `zen.spamhaus.org`; asked about `<reversed address>.<zone>` (RFC 5782 §2.1, IPv6 by nibbles) or `<domain>.<zone>` (§2.3). Stalwart's `spam-filter.dnsbl.server.<id>.zone`.";
    SESSION_DNSBL_SERVER_SCOPE: DnsblScope = "session.dnsbl.server.<id>.scope", Default("\"ip\""),
        "What the zone is asked about: the client's address at connect, the EHLO/HELO name, or the domain of the MAIL FROM address.";
    SESSION_DNSBL_SERVER_WEIGHT: i32 = "session.dnsbl.server.<id>.weight", Default("1"),
        "What a listing adds to the score; negative for an allow list (a DNSWL). Postfix's `*weight` suffix in `postscreen_dnsbl_sites`.";
    SESSION_DNSBL_SERVER_REPLIES: Vec<String> = "session.dnsbl.server.<id>.replies", Default("[\"127.0.0.0/8\"]"),
        "A records that mean \"listed\": addresses, networks (`127.0.0.0/24`) or ranges (`127.0.0.2-127.0.0.11`), all within 127.0.0.0/8. The blocklists' error answers (`127.0.0.1`, `127.255.255.0/24`) never list, whatever this says. Postfix's `=127.0.0.[2..11]` filter in `postscreen_dnsbl_sites`.";
    SESSION_DNSBL_SERVER_ENABLE: bool = "session.dnsbl.server.<id>.enable", Default("true"),
        "Whether the zone is asked.";
    SESSION_MILTER_ENABLE: bool = "session.milter.<id>.enable", Default("true"),
        "Whether the milter is used. Stalwart's key; Stalwart also takes an expression here, ferrymail a boolean (see [Milters](#milters)).";
    SESSION_MILTER_HOSTNAME: String = "session.milter.<id>.hostname", Required,
        "Host name or IP address of the milter (rspamd's proxy worker, OpenDKIM, clamav-milter...).";
    SESSION_MILTER_PORT: u16 = "session.milter.<id>.port", Default("11332"),
        "TCP port of the milter (11332 is rspamd's proxy worker).";
    SESSION_MILTER_STAGES: Vec<Stage> = "session.milter.<id>.stages", Default("[\"data\"]"),
        "Stages at which the milter is asked: any of `connect`, `ehlo`, `mail`, `rcpt`, `data`. The connection lasts the session; the first time the milter is asked it is also told the earlier steps it was not asked about (connect, HELO, MAIL, the recipients so far), as the protocol requires them in order, and a refusal it gives to one of them refuses at that stage. Stalwart's key and default.";
    SESSION_MILTER_TLS: bool = "session.milter.<id>.tls", Default("false"),
        "Speak to the milter over TLS.";
    SESSION_MILTER_ALLOW_INVALID_CERTS: bool = "session.milter.<id>.allow-invalid-certs", Default("false"),
        "Accept self-signed and otherwise invalid certificates from the milter (testing only).";
    SESSION_MILTER_TIMEOUT_CONNECT: Duration = "session.milter.<id>.timeout.connect", Default("\"30s\""),
        "Longest wait to connect to the milter and negotiate options.";
    SESSION_MILTER_TIMEOUT_COMMAND: Duration = "session.milter.<id>.timeout.command", Default("\"30s\""),
        "Longest wait for the milter to take a command and answer it (connect, HELO, MAIL, RCPT, headers).";
    SESSION_MILTER_TIMEOUT_DATA: Duration = "session.milter.<id>.timeout.data", Default("\"60s\""),
        "Longest wait for the milter to take the message body and give its end-of-message answer with its modifications.";
    SESSION_MILTER_TEMPFAIL_ON_ERROR: bool = "session.milter.<id>.options.tempfail-on-error", Default("true"),
        "When the milter is down, slow, or answers something broken: `true` refuses for now (`451 4.3.0`), `false` goes on as if it had said continue. A broken milter never causes a `5xx`.";
    SESSION_MILTER_MAX_RESPONSE_SIZE: ByteSize = "session.milter.<id>.options.max-response-size", Default("52428800"),
        "Largest single packet accepted from the milter (a replaced body arrives in packets of at most 64 KiB, so this bounds headers and replies); a larger one counts as a milter error.";
    SESSION_MILTER_VERSION: u32 = "session.milter.<id>.options.version", Default("6"),
        "Milter protocol version offered: `6` (Sendmail 8.14+, Postfix 2.6+) or `2`.";
    SESSION_MILTER_FLAGS_ACTIONS: u32 = "session.milter.<id>.options.flags.actions", Derived("every action this server carries out: `0xff` with version 6 (Stalwart's default), `0x3f` with 2"),
        "Actions (SMFIF_* bits) the milter may take; a milter that asks for one outside them, or does one it did not negotiate, counts as a milter error.";
    SESSION_MILTER_FLAGS_PROTOCOL: u32 = "session.milter.<id>.options.flags.protocol", Default("66"),
        "Protocol steps (SMFIP_* bits) offered to the milter, which it may ask to be spared. Stalwart's default `0x42` (no HELO, no end of header). As in Postfix and Stalwart, the steps the milter answers with are honoured (rspamd asks not to answer any step but the end of message), as long as they are steps of the protocol.";
    SESSION_HOOK_URL: String = "session.hook.<id>.url", Required,
        "Endpoint (`http://` or `https://`) of an MTA hook: at each of its `stages` the session `POST`s a JSON description of the session, envelope and (at `data`) message, and applies the JSON answer: accept, reject, discard or quarantine, with envelope and header changes (Stalwart's format; see [MTA hooks](#mta-hooks)). Hooks are asked in the order of their ids, after any milter.";
    SESSION_HOOK_ENABLE: bool = "session.hook.<id>.enable", Default("true"),
        "Whether the hook is asked. Stalwart also accepts an expression here; ferrymail takes `true` or `false`.";
    SESSION_HOOK_STAGES: Vec<Stage> = "session.hook.<id>.stages", Default("[\"data\"]"),
        "The stages at which the hook is asked: `connect`, `ehlo`, `mail`, `rcpt`, `data` (after the whole message is received). At least one.";
    SESSION_HOOK_TIMEOUT: Duration = "session.hook.<id>.timeout", Default("\"30s\""),
        "Longest time one request may take, connection and TLS included; past it the hook counts as failed (see `tempfail-on-error`).";
    SESSION_HOOK_TEMPFAIL_ON_ERROR: bool = "session.hook.<id>.tempfail-on-error", Default("true"),
        "When the hook cannot be asked or answers something unusable (down, too slow, not `2xx`, not valid JSON, too large, or an action or change that is invalid at that stage): `true` refuses the command or message with `451 4.3.0`, `false` goes on as if the hook had not been configured. A broken hook never causes a `5xx`, and none of its changes is applied.";
    SESSION_HOOK_MAX_RESPONSE_SIZE: ByteSize = "session.hook.<id>.max-response-size", Default("\"50MB\""),
        "Largest answer read from the hook; a longer one counts as a failure.";
    SESSION_HOOK_ALLOW_INVALID_CERTS: bool = "session.hook.<id>.allow-invalid-certs", Default("false"),
        "Accept self-signed and otherwise invalid certificates from an `https://` hook (testing only).";
    SESSION_HOOK_HEADERS: Vec<String> = "session.hook.<id>.headers", Default("[]"),
        "Extra request headers, each `\"Name: value\"`.";
    SESSION_HOOK_AUTH_USERNAME: String = "session.hook.<id>.auth.username", Optional,
        "User name sent with HTTP Basic authentication; set together with `secret`. Credentials are sent only over `https://`, or over `http://` to a loopback address.";
    SESSION_HOOK_AUTH_SECRET: Secret = "session.hook.<id>.auth.secret", Optional,
        "Password of `auth.username`; prefer `%{file:…}%` or `%{env:…}%` to writing it here.";

    AUTH_SPF_VERIFY_EHLO: VerifyRule = "auth.spf.verify.ehlo", Default("\"relaxed\""),
        "SPF check of the EHLO/HELO name (RFC 7208 §2.3) of unauthenticated clients: `relaxed` records the result in `Authentication-Results`, `strict` also refuses EHLO on `fail` (`550 5.7.23`; `451 4.7.24` on a DNS timeout), `disable` skips it; or a rule list (variables of `session.ehlo.reject`).";
    AUTH_SPF_VERIFY_MAIL_FROM: VerifyRule = "auth.spf.verify.mail-from", Default("\"relaxed\""),
        "SPF check of the MAIL FROM domain of unauthenticated clients, as `ehlo` (`strict` refuses MAIL FROM on `fail`); or a rule list (variables of `session.mail.reject`).";
    AUTH_DKIM_VERIFY: VerifyRule = "auth.dkim.verify", Default("\"relaxed\""),
        "DKIM check of unauthenticated mail: `strict` refuses mail with no passing signature (`550 5.7.20`, `451 4.7.20` when a key lookup timed out); or a rule list (variables of `session.data.reject`).";
    AUTH_DKIM_STRICT: bool = "auth.dkim.strict", Default("true"),
        "Ignore DKIM signatures that cover only part of the body (`l=`), which a forger can append to.";
    AUTH_DKIM_SIGN: SignRule = "auth.dkim.sign", Derived("every `signature.<id>` whose `domain` is the envelope sender's domain"),
        "Signatures (`signature.<id>` ids) added to mail from authenticated clients, e.g. `[\"rsa\", \"ed25519\"]`, `false`, or a rule list choosing a list; mail from unauthenticated clients is never signed.";
    AUTH_ARC_VERIFY: VerifyRule = "auth.arc.verify", Default("\"relaxed\""),
        "ARC chain check of unauthenticated mail: `strict` refuses a broken chain (`550 5.7.29`); or a rule list.";
    AUTH_ARC_SEAL: SealRule = "auth.arc.seal", Default("false"),
        "Signature (`signature.<id>` id) that ARC-seals (RFC 8617) mail an unauthenticated client sends to at least one recipient outside the local domains of `session.rcpt.directory` (relayed, or an alias expanded to an outside address); `false`, or a rule list (variables of `session.data.reject`) choosing one. The seal records this server's `Authentication-Results` and the ARC result it verified (`cv=`); messages larger than 16 MiB are not sealed.";
    AUTH_DMARC_VERIFY: VerifyRule = "auth.dmarc.verify", Default("\"relaxed\""),
        "DMARC check of unauthenticated mail: `strict` enforces the sender domain's `p=reject` (`550 5.7.1`; `451 4.7.1` when DNS timed out); `p=quarantine` is only recorded (`policy.dmarc=quarantine`) for the mailbox server to file as junk; or a rule list.";

    REPORT_DMARC_AGGREGATE_SEND: ReportFrequency = "report.dmarc.aggregate.send", Default("\"daily\""),
        "How often DMARC aggregate reports (RFC 7489 §7.2) are sent to the `rua` addresses of the domains whose mail was checked (`auth.dmarc.verify`): `hourly`, `daily`, `weekly`, or `never` (also `false`) to neither record evaluations nor send reports. Stalwart's key and default; ferrymail also takes a duration of at least `10s` (e.g. `\"1m\"` for tests). Periods are aligned on multiples of their length since the Unix epoch (a day starts at 00:00 UTC).";
    REPORT_DMARC_AGGREGATE_FROM_NAME: String = "report.dmarc.aggregate.from-name", Default("\"Report Subsystem\""),
        "Display name of the reports' `From` header.";
    REPORT_DMARC_AGGREGATE_FROM_ADDRESS: String = "report.dmarc.aggregate.from-address", Derived("`noreply-dmarc@` followed by `server.hostname`"),
        "Address the reports come from (`From` header and envelope sender).";
    REPORT_DMARC_AGGREGATE_ORG_NAME: String = "report.dmarc.aggregate.org-name", Derived("`server.hostname`"),
        "Organization named in the reports (`org_name`); also the receiver part of the report file's name.";
    REPORT_DMARC_AGGREGATE_CONTACT_INFO: String = "report.dmarc.aggregate.contact-info", Optional,
        "Further contact information in the reports (`extra_contact_info`).";
    REPORT_DMARC_AGGREGATE_MAX_SIZE: ByteSize = "report.dmarc.aggregate.max-size", Default("26214400"),
        "Largest report message; a `rua` URI's own limit (`!10m`) applies when smaller. A report over the limit for a destination is not sent to it (logged and counted).";
    REPORT_DMARC_AGGREGATE_SIGN: SignatureList = "report.dmarc.aggregate.sign", Default("[]"),
        "DKIM signatures (`signature.<id>` ids) the reports are signed with; none by default (Stalwart's default names its own generated keys).";
    REPORT_DMARC_AGGREGATE_MAX_RECORDS: u32 = "report.dmarc.aggregate.max-records", Default("10000"),
        "Most distinct report rows (source address, results and disposition) kept per domain and period; evaluations past it are counted in the report's row count no more and logged (ferrymail's own key, bounding the store and each report).";
    REPORT_TLS_AGGREGATE_SEND: ReportFrequency = "report.tls.aggregate.send", Default("\"daily\""),
        "How often SMTP TLS reports (RFC 8460) are sent to the `rua` of the `_smtp._tls` record of each domain mail was delivered to over MX: `hourly`, `daily`, `weekly`, or `never` (also `false`) to neither record TLS results nor send reports. Stalwart's key and default; ferrymail also takes a duration of at least `10s`. Periods are aligned as DMARC's are.";
    REPORT_TLS_AGGREGATE_FROM_NAME: String = "report.tls.aggregate.from-name", Default("\"Report Subsystem\""),
        "Display name of the TLS reports' `From` header.";
    REPORT_TLS_AGGREGATE_FROM_ADDRESS: String = "report.tls.aggregate.from-address", Derived("`noreply-tls@` followed by `server.hostname`"),
        "Address the TLS reports come from (`From` header and envelope sender).";
    REPORT_TLS_AGGREGATE_ORG_NAME: String = "report.tls.aggregate.org-name", Derived("`server.hostname`"),
        "Organization named in the TLS reports (`organization-name`).";
    REPORT_TLS_AGGREGATE_CONTACT_INFO: String = "report.tls.aggregate.contact-info", Optional,
        "Contact information in the TLS reports (`contact-info`).";
    REPORT_TLS_AGGREGATE_MAX_SIZE: ByteSize = "report.tls.aggregate.max-size", Default("26214400"),
        "Largest TLS report (the message for `mailto:`, the gzipped JSON for `https:`); a report over it is not sent (logged and counted).";
    REPORT_TLS_AGGREGATE_SIGN: SignatureList = "report.tls.aggregate.sign", Default("[]"),
        "DKIM signatures (`signature.<id>` ids) the mailed TLS reports are signed with; none by default.";
    REPORT_TLS_AGGREGATE_MAX_RECORDS: u32 = "report.tls.aggregate.max-records", Default("10000"),
        "Most distinct result rows (policy, result type and hosts) kept per policy domain and period; results past it are left out and logged (ferrymail's own key, bounding the store and each report).";

    SIGNATURE_PRIVATE_KEY: PrivateKey = "signature.<id>.private-key", Required,
        "PEM private key of a DKIM signature (PKCS#8, or PKCS#1 for RSA), usually `%{file:/path/dkim.key}%`.";
    SIGNATURE_DOMAIN: String = "signature.<id>.domain", Required,
        "Signing domain (`d=`).";
    SIGNATURE_SELECTOR: String = "signature.<id>.selector", Required,
        "Selector (`s=`): the public key is published in TXT at `<selector>._domainkey.<domain>`.";
    SIGNATURE_HEADERS: Vec<String> = "signature.<id>.headers", Default("[\"From\", \"To\", \"Date\", \"Subject\", \"Message-ID\"]"),
        "Header fields signed; must include `From`.";
    SIGNATURE_ALGORITHM: SignatureAlgorithm = "signature.<id>.algorithm", Required,
        "Signing algorithm; must match the key.";
    SIGNATURE_CANONICALIZATION: Canonicalization = "signature.<id>.canonicalization", Default("\"relaxed/relaxed\""),
        "Header and body canonicalization.";
    SIGNATURE_EXPIRE: Duration = "signature.<id>.expire", Optional,
        "How long a signature stays valid (`x=`); unlimited when unset.";

    RESOLVER_TYPE: ResolverType = "resolver.type", Default("\"system\""),
        "DNS resolver for SPF, DKIM, ARC and DMARC: the system's configuration, a public service, or `custom`.";
    RESOLVER_CUSTOM: Vec<NameServer> = "resolver.custom", Default("[]"),
        "Name servers of `type = \"custom\"`, e.g. `[\"udp://192.0.2.1:53\", \"tcp://192.0.2.2\"]`.";
    RESOLVER_CONCURRENCY: u32 = "resolver.concurrency", Default("2"),
        "Name servers asked at once for one query.";
    RESOLVER_TIMEOUT: Duration = "resolver.timeout", Default("\"5s\""),
        "How long one query waits for an answer.";
    RESOLVER_ATTEMPTS: u32 = "resolver.attempts", Default("2"),
        "Tries of a query before it fails (a failure is a temporary error: mail is never refused with 5xx for it).";
    RESOLVER_TRY_TCP_ON_ERROR: bool = "resolver.try-tcp-on-error", Default("true"),
        "Retry a query over TCP when UDP fails.";
    RESOLVER_PRESERVE_INTERMEDIATES: bool = "resolver.preserve-intermediates", Default("true"),
        "Keep the intermediate records (CNAME) of an answer.";

    STORE_TYPE: StoreType = "store.<id>.type", Required,
        "Backend of the store.";
    STORE_PATH: String = "store.<id>.path", Optional,
        "Directory of an embedded store (required for `type = \"embedded\"`).";
    STORE_CLUSTER_FILE: String = "store.<id>.cluster-file", Optional,
        "FoundationDB cluster file; when unset, `FDB_CLUSTER_FILE` or the client's default applies.";
    STORE_PREFIX: String = "store.<id>.prefix", Default("\"ferrymail\""),
        "Key prefix, so that several installations can share one cluster.";
    STORE_HOST: String = "store.<id>.host", Optional,
        "PostgreSQL server's host name or address (required for `type = \"postgresql\"`).";
    STORE_PORT: u16 = "store.<id>.port", Default("5432"),
        "PostgreSQL server's port.";
    STORE_DATABASE: String = "store.<id>.database", Optional,
        "PostgreSQL database holding the store (required for `type = \"postgresql\"`); ferrymail creates its tables there, in the schema `ferrymail`, on first start.";
    STORE_USER: String = "store.<id>.user", Optional,
        "PostgreSQL user to log in as (required for `type = \"postgresql\"`).";
    STORE_PASSWORD: Secret = "store.<id>.password", Optional,
        "That user's password; prefer `%{file:…}%` or `%{env:…}%` to writing it here. Sent to a host other than loopback only with `tls.enable = true`, unless `tls.allow-plain-text = true`.";
    STORE_TIMEOUT: Duration = "store.<id>.timeout", Default("\"15s\""),
        "Time limit for connecting to the PostgreSQL server, and for waiting for a free connection of the pool.";
    STORE_TLS_ENABLE: bool = "store.<id>.tls.enable", Default("false"),
        "Connect to the PostgreSQL server over TLS (refused when the server does not offer it).";
    STORE_TLS_ALLOW_INVALID_CERTS: bool = "store.<id>.tls.allow-invalid-certs", Default("false"),
        "Accept self-signed and otherwise invalid certificates from the PostgreSQL server (testing only).";
    STORE_TLS_ALLOW_PLAIN_TEXT: bool = "store.<id>.tls.allow-plain-text", Default("false"),
        "Send `password` to a PostgreSQL server other than loopback without TLS; refused by default (ferrymail's own key).";
    STORE_POOL_MAX_CONNECTIONS: u32 = "store.<id>.pool.max-connections", Default("10"),
        "Most connections one process opens to the PostgreSQL server; each running store transaction holds one.";
    STORAGE_DATA: String = "storage.data", Optional,
        "Store holding the queue and the shared lookup cache (required by `queue-scheduler`, `directory-proxy` and `all`).";

    CERTIFICATE_CERT: CertificateChain = "certificate.<id>.cert", Required,
        "PEM certificate chain, usually `%{file:/path/cert.pem}%`.";
    CERTIFICATE_PRIVATE_KEY: PrivateKey = "certificate.<id>.private-key", Required,
        "PEM private key, usually `%{file:/path/key.pem}%`.";

    QUEUE_NEXT_HOP: NextHop = "queue.outbound.next-hop", Default("\"mx\""),
        "Where outbound mail goes: a `remote.<id>`, `\"mx\"` for DNS MX delivery, or a rule list choosing one.";
    QUEUE_OUTBOUND_MX_PORT: u16 = "queue.outbound.mx-port", Default("25"),
        "Port MX hosts are connected on. Leave it at 25 on the Internet: it exists for tests and for networks whose mail exchangers listen elsewhere (ferrymail's own key).";
    QUEUE_OUTBOUND_LIMITS_MX: u32 = "queue.outbound.limits.mx", Default("5"),
        "Most MX hosts of a domain tried on one delivery attempt, in preference order.";
    QUEUE_OUTBOUND_LIMITS_MULTIHOMED: u32 = "queue.outbound.limits.multihomed", Default("2"),
        "Most addresses of one MX host tried on one delivery attempt.";
    QUEUE_OUTBOUND_IP_STRATEGY: IpStrategy = "queue.outbound.ip-strategy", Default("\"ipv4_then_ipv6\""),
        "Address families of MX hosts and in which order they are tried: `ipv4_only`, `ipv6_only`, `ipv4_then_ipv6` or `ipv6_then_ipv4`.";
    QUEUE_OUTBOUND_TLS_STARTTLS: TlsPolicy = "queue.outbound.tls.starttls", Default("\"optional\""),
        "STARTTLS towards MX hosts: `optional` encrypts when offered (certificates are not verified, and a failed handshake is retried in clear text), `require` fails the attempt temporarily unless a verified TLS session is set up, `disable` never uses it.";
    QUEUE_OUTBOUND_TLS_ALLOW_INVALID_CERTS: bool = "queue.outbound.tls.allow-invalid-certs", Default("false"),
        "Accept invalid certificates from MX hosts even when `starttls = \"require\"` (testing only).";
    QUEUE_OUTBOUND_TLS_DANE: TlsPolicy = "queue.outbound.tls.dane", Default("\"optional\""),
        "DANE (RFC 7672) for MX hosts. `optional`: a host whose DNSSEC-secure TLSA records (`_<mx-port>._tcp.<host>`, usages DANE-TA and DANE-EE) exist must offer STARTTLS with a matching certificate, whatever `starttls` and `allow-invalid-certs` say, or is passed over; hosts without such records follow `starttls`. `require`: only hosts with usable records are delivered to. `disable`: TLSA is never looked up. DNSSEC status is the AD bit of the `resolver.*` replies, so that resolver must be a validating one you trust, on a path nobody can tamper with.";
    QUEUE_OUTBOUND_TLS_MTA_STS: TlsPolicy = "queue.outbound.tls.mta-sts", Default("\"optional\""),
        "MTA-STS (RFC 8461) policies of recipient domains: `optional` applies the policies domains publish (an `enforce` policy delivers only to its MX hosts over verified TLS), `require` delivers only to domains with an `enforce` policy (others fail temporarily), `disable` never looks them up.";
    QUEUE_OUTBOUND_TIMEOUTS_CONNECT: Duration = "queue.outbound.timeouts.connect", Default("\"5m\""),
        "Time limit for connecting to an MX host.";
    QUEUE_OUTBOUND_TIMEOUTS_GREETING: Duration = "queue.outbound.timeouts.greeting", Default("\"5m\""),
        "Time limit for an MX host's greeting.";
    QUEUE_OUTBOUND_TIMEOUTS_TLS: Duration = "queue.outbound.timeouts.tls", Default("\"3m\""),
        "Time limit for STARTTLS and the TLS handshake with an MX host.";
    QUEUE_OUTBOUND_TIMEOUTS_EHLO: Duration = "queue.outbound.timeouts.ehlo", Default("\"5m\""),
        "Time limit for an MX host's reply to EHLO.";
    QUEUE_OUTBOUND_TIMEOUTS_MTA_STS: Duration = "queue.outbound.timeouts.mta-sts", Default("\"10m\""),
        "Time limit for fetching a recipient domain's MTA-STS policy over HTTPS (connection, handshake and the whole answer).";
    QUEUE_OUTBOUND_TIMEOUTS_MAIL_FROM: Duration = "queue.outbound.timeouts.mail-from", Default("\"5m\""),
        "Time limit for an MX host's reply to MAIL FROM.";
    QUEUE_OUTBOUND_TIMEOUTS_RCPT_TO: Duration = "queue.outbound.timeouts.rcpt-to", Default("\"5m\""),
        "Time limit for an MX host's reply to each RCPT TO.";
    QUEUE_OUTBOUND_TIMEOUTS_DATA: Duration = "queue.outbound.timeouts.data", Default("\"10m\""),
        "Time limit for DATA at an MX host: the command, each write of the body and the final reply.";
    QUEUE_OUTBOUND_DEAD_FAILED_COHORT_LIMIT: u32 = "queue.outbound.dead.failed-cohort-limit", Default("1"),
        "Connections to one destination (a `remote.<id>`, or an MX host address) that must fail in a row, without a success between them, before it is marked dead: its recipients are then deferred without a connection until its backoff ends (Postfix's `destination_concurrency_failed_cohort_limit`). Only connection failures count: refused, timed out, a greeting other than `220`, a failed TLS handshake (a relay's; for an MX host only reaching it counts); never a recipient's reply. `0` turns dead destinations off (ferrymail's own key).";
    QUEUE_OUTBOUND_DEAD_MIN_BACKOFF: Duration = "queue.outbound.dead.min-backoff", Default("\"300s\""),
        "How long a destination stays dead the first time; after it, one delivery probes it (Postfix's `minimal_backoff_time`). Longer than zero (ferrymail's own key).";
    QUEUE_OUTBOUND_DEAD_MAX_BACKOFF: Duration = "queue.outbound.dead.max-backoff", Default("\"4000s\""),
        "Longest time a destination stays dead: each failed probe doubles the backoff up to it (Postfix's `maximal_backoff_time`). At least `min-backoff` (ferrymail's own key).";
    QUEUE_SCHEDULE_RETRY: Vec<Duration> = "queue.schedule.retry", Default("[\"2m\", \"5m\", \"10m\", \"15m\", \"30m\", \"1h\", \"2h\"]"),
        "Waits between delivery attempts of a recipient; the last repeats.";
    QUEUE_SCHEDULE_NOTIFY: Vec<Duration> = "queue.schedule.notify", Default("[\"1d\", \"3d\"]"),
        "Times after arrival at which the sender is told of a delay.";
    QUEUE_SCHEDULE_EXPIRE: Duration = "queue.schedule.expire", Default("\"5d\""),
        "Time after arrival at which undelivered recipients fail and are bounced.";
    QUEUE_LEASE_DURATION: Duration = "queue.lease.duration", Default("\"30s\""),
        "How long a scheduler's claim on a message lasts: renewed every third of it while the delivery runs (each renewal confirmed within a sixth of it), and how long the messages and shards of a scheduler that stopped wait before another takes them over. At least `1s`; read at start-up (ferrymail's own key).";
    QUEUE_LEASE_MAX_CLOCK_SKEW: Duration = "queue.lease.max-clock-skew", Default("\"1s\""),
        "Largest difference between the clocks of the nodes sharing a queue. Delivery leases are judged by each node's clock, so this is kept as a margin: a scheduler stops handing a message over this long before its lease ends, and takes over another's lease only this long after it ended. Shorter than a third of `queue.lease.duration`; keep the clocks synchronised (NTP) well within it (ferrymail's own key).";
    QUEUE_EVENTS_OUTBOX_MAX_SIZE: u64 = "queue.events.outbox.max-size", Default("100000"),
        "Most delivery events waiting in the store's outbox for one `webhook.<id>`. When it is full, new events for that webhook are dropped, counted in `queue_events_dropped_total` and logged (a warning at most once a minute): delivery never waits for, or fails because of, events. The bound is checked against a count refreshed every second, so several busy schedulers may overshoot it by about a second's events (ferrymail's own key).";
    QUEUE_EVENTS_BATCH_SIZE: u32 = "queue.events.batch-size", Default("500"),
        "Most events sent in one webhook request (ferrymail's own key).";
    QUEUE_EVENTS_RETRY_MIN_BACKOFF: Duration = "queue.events.retry.min-backoff", Default("\"1s\""),
        "Wait after a webhook request failed (no answer within `timeout`, or not `2xx`) before the events are sent again; doubled after each further failure (ferrymail's own key).";
    QUEUE_EVENTS_RETRY_MAX_BACKOFF: Duration = "queue.events.retry.max-backoff", Default("\"5m\""),
        "Longest wait between two failed webhook requests (ferrymail's own key).";
    QUEUE_QUOTA_MESSAGES: u64 = "queue.quota.<id>.messages", Optional,
        "Most messages waiting in the queue per group (see `key`); more are refused with `452 4.3.1` at the SMTP level.";
    QUEUE_QUOTA_SIZE: ByteSize = "queue.quota.<id>.size", Optional,
        "Most bytes waiting in the queue per group; more are refused with `452 4.3.1`.";
    QUEUE_QUOTA_KEY: Vec<QuotaKey> = "queue.quota.<id>.key", Default("[]"),
        "What the quota counts separately: any of `sender`, `sender-domain`, `rcpt`, `rcpt-domain` (a message is charged to each of its recipients' groups); empty for one limit over the whole queue.";
    QUEUE_QUOTA_ENABLE: bool = "queue.quota.<id>.enable", Default("true"),
        "Whether the quota is enforced.";
    QUEUE_QUOTA_MATCH: Match = "queue.quota.<id>.match", Optional,
        "Which messages the quota applies to: a condition `{ if = \"sender-domain\", in-list = \"<directory>/<list>\" }` or a list of them that must all hold (variables `sender`, `sender-domain`, `rcpt`, `rcpt-domain`; a recipient condition selects the recipients charged by a recipient `key`, and otherwise needs one recipient that meets it); absent, every message.";
    QUEUE_THROTTLE_CONCURRENCY: u32 = "queue.throttle.<id>.concurrency", Optional,
        "Most deliveries under way at once per group, counted across every scheduler sharing the queue.";
    QUEUE_THROTTLE_RATE: Rate = "queue.throttle.<id>.rate", Optional,
        "Most deliveries started per period per group across every scheduler, such as `\"100/1m\"`; the rest wait for the next period.";
    QUEUE_THROTTLE_KEY: Vec<ThrottleKey> = "queue.throttle.<id>.key", Default("[]"),
        "What the throttle counts separately: any of `sender`, `sender-domain`, `rcpt-domain`, `remote`; empty for one limit over all deliveries.";
    QUEUE_THROTTLE_ENABLE: bool = "queue.throttle.<id>.enable", Default("true"),
        "Whether the throttle is enforced.";
    QUEUE_THROTTLE_MATCH: Match = "queue.throttle.<id>.match", Optional,
        "Which deliveries the throttle applies to, in the form of `queue.quota.<id>.match`; a recipient condition needs one recipient of the delivery that meets it (with the `rcpt-domain` key, selects the groups counted); absent, every delivery.";
    QUEUE_LIMITER_INBOUND_RATE: Rate = "queue.limiter.inbound.<id>.rate", Optional,
        "Most events per period per counter (see `key`) across every ingress, such as `\"100/1m\"`: connections, greetings, transactions or recipients, whichever stage the limiter is taken at (the first at which all of its `key` and `match` variables are known: connect for `remote-ip`, `remote-network`, `listener`; EHLO with `helo-domain`; MAIL with `sender`, `sender-domain`, `authenticated-as`; RCPT with `rcpt`, `rcpt-domain`). Past it the client is answered `421 4.4.5` at connect (then disconnected), `451 4.4.5` at EHLO and MAIL, `452 4.4.5` at RCPT, until the sliding window (the last period, in tenths) frees. Counted in the store through the directory-proxy; when the counters cannot be reached the client is let through (see [Inbound limits](#inbound-limits)). Stalwart's key.";
    QUEUE_LIMITER_INBOUND_CONCURRENCY: u32 = "queue.limiter.inbound.<id>.concurrency", Optional,
        "Most sessions (a limiter taken at connect or EHLO) or transactions (at MAIL or RCPT) at once per counter across every ingress; more are refused like a rate. Each is a slot with a `lease`, renewed while it lasts, so a pod that dies does not keep its slots (ferrymail's own key; Stalwart 0.15 limits only rates inbound).";
    QUEUE_LIMITER_INBOUND_KEY: Vec<LimiterKey> = "queue.limiter.inbound.<id>.key", Default("[]"),
        "What the limiter counts separately: any of `remote-ip`, `remote-network` (the client's IPv4 /24 or IPv6 /64; ferrymail's own), `helo-domain`, `sender`, `sender-domain`, `rcpt`, `rcpt-domain`, `authenticated-as`, `listener`; empty for one counter over everything. Stalwart's key, with ferrymail's kebab-case names.";
    QUEUE_LIMITER_INBOUND_MATCH: LimiterMatch = "queue.limiter.inbound.<id>.match", Optional,
        "Which sessions and commands the limiter counts: a condition, or a list that must all hold, each `{ if = \"<variable>\", in-list = \"<directory>/<list>\" }`, `not-in-list = …`, or `is-empty = true|false` (variables as in `session.<stage>.reject`). `{ if = \"sender\", is-empty = false }` spares DSNs (null sender), `{ if = \"authenticated-as\", is-empty = true }` authenticated clients; absent, everything. Stalwart's key, written in ferrymail's rule form.";
    QUEUE_LIMITER_INBOUND_LEASE: Duration = "queue.limiter.inbound.<id>.lease", Default("\"30s\""),
        "How long a concurrency slot lasts without renewal: its holder renews it every third of this, and the slots of an ingress that died stop counting at most this long after it died. At least `1s` (ferrymail's own key).";
    QUEUE_LIMITER_INBOUND_ENABLE: bool = "queue.limiter.inbound.<id>.enable", Default("true"),
        "Whether the limiter is enforced.";

    WEBHOOK_URL: String = "webhook.<id>.url", Required,
        "Endpoint (`http://` or `https://`) that delivery events are sent to, as `POST` requests with a JSON body `{\"events\": [...]}` (see [Delivery events](#delivery-events)). Configuring a webhook turns the event outbox on; without any, no event is recorded.";
    WEBHOOK_EVENTS: Vec<String> = "webhook.<id>.events", Default("[\"*\"]"),
        "Event types sent: `delivery.delivered`, `delivery.deferred`, `delivery.bounced`, `delivery.expired`, `queue.held`, `queue.released`, `queue.cancelled`, or patterns such as `\"*\"` and `\"delivery.*\"`, as in Stalwart (whose list has no default).";
    WEBHOOK_ENABLE: bool = "webhook.<id>.enable", Default("true"),
        "Whether the webhook is used; a disabled one records no events.";
    WEBHOOK_TIMEOUT: Duration = "webhook.<id>.timeout", Default("\"30s\""),
        "Longest time one request may take, from connecting to the status line; a request that takes longer counts as failed and its events are sent again.";
    WEBHOOK_THROTTLE: Duration = "webhook.<id>.throttle", Default("\"1s\""),
        "Shortest time between two requests to the webhook; events that arrive meanwhile go in the next request (up to `queue.events.batch-size`).";
    WEBHOOK_SIGNATURE_KEY: Secret = "webhook.<id>.signature-key", Optional,
        "Key of the HMAC-SHA256 of each request body, sent base64-encoded in the `X-Signature` header as Stalwart does; unset, requests are not signed.";
    WEBHOOK_HEADERS: Vec<String> = "webhook.<id>.headers", Default("[]"),
        "Extra request headers, each `\"Name: value\"`.";
    WEBHOOK_AUTH_USERNAME: String = "webhook.<id>.auth.username", Optional,
        "User name of HTTP Basic authentication; set together with `auth.secret`.";
    WEBHOOK_AUTH_SECRET: Secret = "webhook.<id>.auth.secret", Optional,
        "Password of HTTP Basic authentication; prefer `%{file:…}%` or `%{env:…}%` to writing it here.";
    WEBHOOK_ALLOW_INVALID_CERTS: bool = "webhook.<id>.allow-invalid-certs", Default("false"),
        "Accept self-signed and otherwise invalid certificates from an `https://` webhook (testing only).";

    TRACING_ENDPOINT: String = "tracing.endpoint", Optional,
        "OTLP/gRPC endpoint of an OpenTelemetry collector to export traces to, e.g. `http://otel-collector:4317`; `OTEL_EXPORTER_OTLP_ENDPOINT` wins when set, and without either nothing is exported. Read at start-up.";
    TRACING_SERVICE_NAME: String = "tracing.service-name", Optional,
        "Service name of the exported spans (default `ferrymail-<role>`); `OTEL_SERVICE_NAME` wins when set. Read at start-up.";

    CLUSTER_DIRECTORY_ENDPOINT: String = "cluster.directory.endpoint", Optional,
        "gRPC address of the directory-proxy service used by split roles, e.g. `https://directory-proxy:50051` (`http://` only with `cluster.tls.enable = false`).";
    CLUSTER_QUEUE_ENDPOINT: String = "cluster.queue.endpoint", Optional,
        "gRPC address of the queue-scheduler service used by split roles, e.g. `https://queue-scheduler:50051` (`http://` only with `cluster.tls.enable = false`).";
    CLUSTER_TLS_ENABLE: bool = "cluster.tls.enable", Default("true"),
        "Whether gRPC between the roles is mutual TLS. `false` speaks plain text, with no identity and no permissions: only for a process on loopback or a test (a warning says so when a `grpc` listener binds another address).";
    CLUSTER_TLS_CERTIFICATE: CertificateChain = "cluster.tls.certificate", Optional,
        "This process's certificate chain (PEM, `\"%{file:/path}%\"`), presented by its `grpc` listeners and by its calls to other roles; a DNS name `<role>.<cluster.tls.domain>` among its subject alternative names says which role it is. Required with TLS on when the process serves or calls gRPC. Reloaded when the file changes.";
    CLUSTER_TLS_PRIVATE_KEY: PrivateKey = "cluster.tls.private-key", Optional,
        "The private key of `cluster.tls.certificate` (PEM; secret).";
    CLUSTER_TLS_CA: CertificateChain = "cluster.tls.ca", Optional,
        "The certificate authorities (PEM bundle) that issue the roles' certificates: a peer whose certificate they did not issue is refused, both ways.";
    CLUSTER_TLS_DOMAIN: String = "cluster.tls.domain", Default("\"ferrymail.internal\""),
        "The DNS domain of role identities: a certificate is role `<role>` when it names `<role>.<domain>` (`smtp-ingress`, `queue-scheduler`, `directory-proxy`, `operator`, `admin`).";
    CLUSTER_CACHE_KEY: Secret = "cluster.cache-key", Optional,
        "Secret key (at least 32 bytes, `\"%{file:/path}%\"` or `\"%{env:NAME}%\"`) of the HMAC that keys the shared lookup cache; kept outside the store, so that a copy of the store reveals nothing usable. Changing it empties the cache.";
}
