//! Every kind of bad configuration is refused with the file, line and key path.

use ferrymail_config::{ConfigError, load_str};

const BASE: &str = r#"
[server]
hostname = "mx.example.org"
"#;

fn errors(text: &str) -> Vec<ConfigError> {
    match load_str("bad.toml", &format!("{BASE}{text}")) {
        Ok(_) => panic!("configuration was accepted:\n{text}"),
        Err(errors) => errors.0,
    }
}

/// Line numbers in `text` as written in the test, counting the 3-line BASE.
fn line_of(text: &str, needle: &str) -> usize {
    let base_lines = BASE.lines().count();
    let index = text
        .lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in text"));
    base_lines + index + 1
}

#[track_caller]
fn assert_error(text: &str, key: &str, at: &str, message: &str) {
    let errors = errors(text);
    let line = line_of(text, at);
    assert!(
        errors.iter().any(|e| e.key == key
            && e.line == line
            && e.message.contains(message)
            && e.file == "bad.toml"),
        "expected {key} at line {line} containing {message:?}, got:\n{}",
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn unknown_key_with_suggestion() {
    let text = "[remote.lmtp]\nadress = \"localhost\"\naddress = \"localhost\"\nport = 24\nprotocol = \"lmtp\"\n";
    assert_error(
        text,
        "remote.lmtp.adress",
        "adress",
        "unknown key (did you mean `address`?)",
    );
}

#[test]
fn unknown_top_level_section() {
    assert_error("[serverr]\nx = 1\n", "serverr", "[serverr]", "unknown key");
}

#[test]
fn wrong_type() {
    let text = "[remote.a]\naddress = \"h\"\nprotocol = \"smtp\"\nconcurrency = \"ten\"\n";
    assert_error(
        text,
        "remote.a.concurrency",
        "concurrency",
        "expected an integer, found a string",
    );
}

#[test]
fn bad_duration() {
    let text = "[remote.a]\naddress = \"h\"\nprotocol = \"smtp\"\ntimeout = \"60 parsecs\"\n";
    assert_error(
        text,
        "remote.a.timeout",
        "timeout",
        "unknown unit \"parsecs\"",
    );
}

#[test]
fn duration_without_unit() {
    let text = "[remote.a]\naddress = \"h\"\nprotocol = \"smtp\"\ntimeout = 60\n";
    assert_error(
        text,
        "remote.a.timeout",
        "timeout",
        "with a unit, e.g. \"60s\"",
    );
}

#[test]
fn bad_duration_inside_a_list_points_at_the_element() {
    let text = "[queue.schedule]\nretry = [\n  \"2m\",\n  \"5 fortnights\",\n]\n";
    assert_error(text, "queue.schedule.retry", "fortnights", "unknown unit");
}

#[test]
fn inline_ttl_with_bad_value() {
    let text = "[remote.a]\naddress = \"h\"\nprotocol = \"smtp\"\n[remote.a.cache]\nttl = { positive = \"1d\", negative = \"soon\" }\n";
    assert_error(
        text,
        "remote.a.cache.ttl.negative",
        "ttl =",
        "invalid duration \"soon\"",
    );
}

#[test]
fn missing_required_key() {
    let text = "[remote.a]\nprotocol = \"smtp\"\n";
    assert_error(
        text,
        "remote.a.address",
        "[remote.a]",
        "missing required key",
    );
}

#[test]
fn unknown_enum_value() {
    let text = "[remote.a]\naddress = \"h\"\nprotocol = \"pop3\"\n";
    assert_error(
        text,
        "remote.a.protocol",
        "pop3",
        "expected \"smtp\" | \"lmtp\" | \"imap\"",
    );
}

#[test]
fn port_out_of_range() {
    let text = "[remote.a]\naddress = \"h\"\nprotocol = \"smtp\"\nport = 70000\n";
    assert_error(text, "remote.a.port", "70000", "out of range");
}

#[test]
fn missing_remote_reference() {
    let text = "[queue.outbound]\nnext-hop = \"relay\"\n";
    assert_error(
        text,
        "queue.outbound.next-hop",
        "next-hop",
        "no remote named \"relay\"",
    );
}

#[test]
fn missing_directory_reference() {
    let text = "[session.rcpt]\ndirectory = \"ldap\"\n";
    assert_error(
        text,
        "session.rcpt.directory",
        "directory =",
        "no directory named \"ldap\"",
    );
}

#[test]
fn missing_store_reference() {
    let text = "[storage]\ndata = \"rocksdb\"\n";
    assert_error(text, "storage.data", "data =", "no store named \"rocksdb\"");
}

#[test]
fn rule_list_referring_to_missing_list() {
    let text = "[directory.corp]\ntype = \"lmtp\"\naddress = \"h\"\n[directory.corp.lookup]\ndomains = [\"example.org\"]\n[remote.lmtp]\naddress = \"h\"\nprotocol = \"lmtp\"\n[queue.outbound]\nnext-hop = [ { if = \"rcpt-domain\", in-list = \"corp/local\", then = \"lmtp\" }, { else = \"mx\" } ]\n";
    assert_error(
        text,
        "queue.outbound.next-hop",
        "next-hop",
        "directory \"corp\" has no lookup list \"local\"",
    );
}

#[test]
fn rule_list_without_else() {
    let text = "[queue.outbound]\nnext-hop = [ { if = \"rcpt-domain\", in-list = \"corp/domains\", then = \"mx\" } ]\n";
    assert_error(
        text,
        "queue.outbound.next-hop",
        "next-hop",
        "the last rule must be { else = … }",
    );
}

#[test]
fn rule_with_unknown_variable() {
    let text = "[queue.outbound]\nnext-hop = [ { if = \"weather\", in-list = \"corp/domains\", then = \"mx\" }, { else = \"mx\" } ]\n";
    assert_error(
        text,
        "queue.outbound.next-hop",
        "next-hop",
        "unknown value \"weather\"",
    );
}

#[test]
fn invalid_bind_address() {
    let text =
        "[server.listener.smtp]\nbind = [\"[::]:25\", \"localhost:25\"]\nprotocol = \"smtp\"\n";
    assert_error(
        text,
        "server.listener.smtp.bind",
        "bind",
        "invalid address \"localhost:25\"",
    );
}

#[test]
fn greeting_on_an_http_listener() {
    let text = "[server.listener.admin]\nbind = \"127.0.0.1:8080\"\nprotocol = \"http\"\ngreeting = \"hi\"\n";
    assert_error(
        text,
        "server.listener.admin.greeting",
        "greeting",
        "only to smtp and lmtp",
    );
}

#[test]
fn half_configured_credentials() {
    let text =
        "[remote.a]\naddress = \"h\"\nprotocol = \"smtp\"\n[remote.a.auth]\nusername = \"relay\"\n";
    assert_error(
        text,
        "remote.a.auth.secret",
        "[remote.a.auth]",
        "auth.secret is not",
    );
}

#[test]
fn reserved_directory_name() {
    let text = "[directory.remote]\ntype = \"smtp\"\naddress = \"h\"\n";
    assert_error(
        text,
        "directory.remote.type",
        "type =",
        "\"remote\" is reserved",
    );
}

#[test]
fn embedded_store_without_path() {
    let text = "[store.db]\ntype = \"embedded\"\n";
    assert_error(text, "store.db.path", "[store.db]", "needs a path");
}

#[test]
fn zero_concurrency() {
    let text = "[remote.a]\naddress = \"h\"\nprotocol = \"smtp\"\nconcurrency = 0\n";
    assert_error(text, "remote.a.concurrency", "concurrency", "at least 1");
}

#[test]
fn unset_environment_variable() {
    let text = "[remote.a]\naddress = \"h\"\nprotocol = \"smtp\"\n[remote.a.auth]\nusername = \"u\"\nsecret = \"%{env:FERRYMAIL_TEST_SURELY_UNSET}%\"\n";
    assert_error(
        text,
        "remote.a.auth.secret",
        "secret",
        "\"FERRYMAIL_TEST_SURELY_UNSET\" is not set",
    );
}

#[test]
fn unreadable_substituted_file() {
    let text =
        "[certificate.default]\ncert = \"%{file:/nonexistent/cert.pem}%\"\nprivate-key = \"x\"\n";
    assert_error(
        text,
        "certificate.default.cert",
        "cert =",
        "cannot read /nonexistent/cert.pem",
    );
}

#[test]
fn certificate_that_is_not_pem() {
    let text = "[certificate.default]\ncert = \"hello\"\nprivate-key = \"not a key either\"\n";
    assert_error(
        text,
        "certificate.default.cert",
        "cert =",
        "no CERTIFICATE block",
    );
}

#[test]
fn toml_syntax_error() {
    assert_error(
        "[remote.a\naddress = \"h\"\n",
        "",
        "[remote.a",
        "invalid TOML",
    );
}

#[test]
fn a_table_where_a_value_belongs() {
    let text = "[server.listener.smtp]\nbind = \"127.0.0.1:25\"\nprotocol = \"smtp\"\n[server.listener.smtp.greeting]\ntext = \"hi\"\n";
    assert_error(
        text,
        "server.listener.smtp.greeting",
        "[server.listener.smtp.greeting]",
        "expected a string, found a table",
    );
}

#[test]
fn every_problem_is_reported_together() {
    let text = "[remote.a]\naddress = 1\nprotocol = \"x\"\ntimeout = \"1y\"\nfoo = 1\n[storage]\ndata = \"none\"\n";
    let errors = errors(text);
    let keys: Vec<_> = errors.iter().map(|e| e.key.as_str()).collect();
    for key in [
        "remote.a.address",
        "remote.a.protocol",
        "remote.a.timeout",
        "remote.a.foo",
        "storage.data",
    ] {
        assert!(keys.contains(&key), "{key} missing from {keys:?}");
    }
    let lines: Vec<_> = errors.iter().map(|e| e.line).collect();
    assert!(
        lines.windows(2).all(|w| w[0] <= w[1]),
        "errors are sorted by line: {lines:?}"
    );
}

#[test]
fn errors_display_as_file_line_column_key_message() {
    let errors = errors("[remote.a]\naddress = \"h\"\nprotocol = \"smtp\"\nlookup = \"yes\"\n");
    assert_eq!(
        errors[0].to_string(),
        format!(
            "bad.toml:{}:10: remote.a.lookup: expected a boolean (true or false), found a string",
            BASE.lines().count() + 4
        )
    );
}

#[test]
fn quoted_ids_keep_their_quotes_in_paths() {
    let text = "[remote.\"mx.example\"]\naddress = \"h\"\nprotocol = \"smtp\"\nlookup = 3\n";
    assert_error(
        text,
        "remote.\"mx.example\".lookup",
        "lookup",
        "expected a boolean",
    );
}

#[test]
fn implicit_tls_without_a_certificate() {
    let text = "[server.listener.submissions]\nbind = \"127.0.0.1:465\"\nprotocol = \"smtp\"\ntls.implicit = true\n";
    assert_error(
        text,
        "server.listener.submissions.tls",
        "tls.implicit",
        "implicit TLS needs a certificate",
    );
}

#[test]
fn a_default_certificate_that_does_not_exist() {
    let text = "[server.tls]\ncertificate = \"nope\"\n";
    assert_error(
        text,
        "server.tls.certificate",
        "certificate =",
        "no certificate named \"nope\"",
    );
}

#[test]
fn a_message_size_that_is_not_a_size() {
    let text = "[session.data.limits]\nsize = \"big\"\n";
    assert_error(
        text,
        "session.data.limits.size",
        "size =",
        "invalid size \"big\"",
    );
}

#[test]
fn proxy_trusted_network_that_is_not_a_network() {
    let text = "[server.listener.smtp]\nbind = \"127.0.0.1:25\"\nprotocol = \"smtp\"\nproxy-protocol = true\nproxy.trusted-networks = [\n  \"10.0.0.0/8\",\n  \"10.0.0.0/33\",\n]\n";
    assert_error(
        text,
        "server.listener.smtp.proxy.trusted-networks",
        "10.0.0.0/33",
        "invalid network \"10.0.0.0/33\": expected an address and prefix length",
    );
    let text = "[server.listener.smtp]\nbind = \"127.0.0.1:25\"\nprotocol = \"smtp\"\nproxy-protocol = true\nproxy.trusted-networks = [\"load-balancer\"]\n";
    assert_error(
        text,
        "server.listener.smtp.proxy.trusted-networks",
        "trusted-networks",
        "invalid network \"load-balancer\"",
    );
}

#[test]
fn proxy_trusted_network_with_host_bits() {
    let text = "[server.listener.smtp]\nbind = \"127.0.0.1:25\"\nprotocol = \"smtp\"\nproxy-protocol = true\nproxy.trusted-networks = [\"192.168.1.7/16\"]\n";
    assert_error(
        text,
        "server.listener.smtp.proxy.trusted-networks",
        "trusted-networks",
        "has host bits set: write \"192.168.0.0/16\"",
    );
}

#[test]
fn proxy_protocol_on_an_http_listener() {
    let text = "[server.listener.admin]\nbind = \"127.0.0.1:8080\"\nprotocol = \"http\"\nproxy-protocol = true\nproxy.trusted-networks = [\"10.0.0.0/8\"]\n";
    assert_error(
        text,
        "server.listener.admin.proxy-protocol",
        "proxy-protocol",
        "PROXY protocol applies only to smtp and lmtp listeners, not http",
    );
    let text = "[server.listener.roles]\nbind = \"127.0.0.1:50051\"\nprotocol = \"grpc\"\n[server.listener.roles.proxy]\ntrusted-networks = [\"10.0.0.0/8\"]\n";
    assert_error(
        text,
        "server.listener.roles.proxy.trusted-networks",
        "trusted-networks",
        "not grpc",
    );
}

#[test]
fn proxy_protocol_without_trusted_networks() {
    let text = "[server.listener.smtp]\nbind = \"127.0.0.1:25\"\nprotocol = \"smtp\"\nproxy-protocol = true\n";
    assert_error(
        text,
        "server.listener.smtp.proxy-protocol",
        "proxy-protocol",
        "needs proxy.trusted-networks",
    );
    let text = "[server.listener.smtp]\nbind = \"127.0.0.1:25\"\nprotocol = \"smtp\"\nproxy-protocol = true\nproxy.trusted-networks = []\n";
    assert_error(
        text,
        "server.listener.smtp.proxy-protocol",
        "proxy-protocol",
        "would let any client choose its own address",
    );
}

#[test]
fn relay_rule_naming_a_missing_list() {
    let text = "[session.rcpt]\nrelay = [ { if = \"remote-ip\", in-list = \"corp/trusted\", then = true }, { else = false } ]\n";
    assert_error(
        text,
        "session.rcpt.relay",
        "relay =",
        "no directory named \"corp\"",
    );
}

/// A directory with one lookup list, for the stage rules below.
const BLOCKED: &str = "[directory.corp]\ntype = \"lmtp\"\naddress = \"127.0.0.1\"\nlookup.blocked = [\"192.0.2.0/24\"]\n";

#[test]
fn stage_rule_reply_that_is_not_a_refusal() {
    let text = format!(
        "{BLOCKED}[session.connect]\nreject = [ {{ if = \"remote-ip\", in-list = \"corp/blocked\", then = \"250 2.0.0 Welcome\" }}, {{ else = false }} ]\n"
    );
    assert_error(
        &text,
        "session.connect.reject",
        "250 2.0.0",
        "reply code 250 does not refuse anything: use 4xx (try again later) or 5xx (permanent)",
    );
    let text = "[session.mail]\nreject = \"5.7.1 Blocked\"\n";
    assert_error(
        text,
        "session.mail.reject",
        "reject =",
        "expected \"<code> <enhanced code> <text>\"",
    );
    let text = "[session.mail]\nreject = true\n";
    assert_error(
        text,
        "session.mail.reject",
        "reject =",
        "true is not a reply",
    );
    let text = "[session.data]\nreject = \"554 5.7.1\"\n";
    assert_error(text, "session.data.reject", "reject =", "has no text");
}

#[test]
fn stage_rule_enhanced_code_of_another_class() {
    let text = format!(
        "{BLOCKED}[session.rcpt]\nreject = [ {{ if = \"remote-ip\", in-list = \"corp/blocked\", then = \"450 5.7.1 Try later\" }}, {{ else = false }} ]\n"
    );
    assert_error(
        &text,
        "session.rcpt.reject",
        "450 5.7.1",
        "enhanced status code 5.7.1 does not match reply code 450: its class must be 4",
    );
    let text = "[session.ehlo]\nreject = \"550 5.7 Bad\"\n";
    assert_error(
        text,
        "session.ehlo.reject",
        "reject =",
        "invalid enhanced status code \"5.7\"",
    );
}

#[test]
fn stage_rule_variable_not_known_at_its_stage() {
    let text = format!(
        "{BLOCKED}[session.connect]\nreject = [ {{ if = \"sender-domain\", in-list = \"corp/blocked\", then = \"554 5.7.1 No\" }}, {{ else = false }} ]\n"
    );
    assert_error(
        &text,
        "session.connect.reject",
        "reject =",
        "variable \"sender-domain\" is not known at the connect stage; use remote-ip, listener",
    );
    let text = format!(
        "{BLOCKED}[session.data]\nreject = [ {{ if = \"rcpt\", in-list = \"corp/blocked\", then = \"554 5.7.1 No\" }}, {{ else = false }} ]\n"
    );
    assert_error(
        &text,
        "session.data.reject",
        "reject =",
        "variable \"rcpt\" is not known at the data stage",
    );
    let text = format!(
        "{BLOCKED}[session.ehlo]\nreject = [ {{ if = \"authenticated-as\", in-list = \"corp/blocked\", then = \"554 5.7.1 No\" }}, {{ else = false }} ]\n"
    );
    assert_error(
        &text,
        "session.ehlo.reject",
        "reject =",
        "variable \"authenticated-as\" is not known at the ehlo stage; use remote-ip, listener, helo-domain",
    );
}

#[test]
fn stage_rule_naming_a_missing_list() {
    let text = "[session.mail]\nreject = [ { if = \"sender-domain\", in-list = \"corp/blocked\", then = \"550 5.7.1 No\" }, { else = false } ]\n";
    assert_error(
        text,
        "session.mail.reject",
        "reject =",
        "in-list corp/blocked: no directory named \"corp\"",
    );
    let text = format!(
        "{BLOCKED}[session.mail]\nreject = [ {{ if = \"sender-domain\", in-list = \"corp/spammers\", then = \"550 5.7.1 No\" }}, {{ else = false }} ]\n"
    );
    assert_error(
        &text,
        "session.mail.reject",
        "reject =",
        "directory \"corp\" has no lookup list \"spammers\"",
    );
}

#[test]
fn bad_queue_quotas_and_throttles() {
    let cases: [(&str, &str, &str, &str); 10] = [
        (
            "[queue.quota.q]\nkey = [\"sender\"]\n",
            "queue.quota.q.messages",
            "[queue.quota.q]",
            "needs `messages`, `size` or both",
        ),
        (
            "[queue.quota.q]\nmessages = 0\n",
            "queue.quota.q.messages",
            "messages = 0",
            "more than zero",
        ),
        (
            "[queue.quota.q]\nsize = \"lots\"\n",
            "queue.quota.q.size",
            "size =",
            "lots",
        ),
        (
            "[queue.quota.q]\nmessages = 5\nkey = [\"rcpt\", \"mx\"]\n",
            "queue.quota.q.key",
            "key =",
            "mx",
        ),
        (
            "[queue.quota.q]\nmessages = 5\nmatch = \"true\"\n",
            "queue.quota.q.match",
            "match =",
            "condition table",
        ),
        (
            "[queue.quota.q]\nmessages = 5\nmatch = []\n",
            "queue.quota.q.match",
            "match =",
            "at least one condition",
        ),
        (
            "[queue.throttle.t]\nkey = [\"remote\"]\n",
            "queue.throttle.t.concurrency",
            "[queue.throttle.t]",
            "needs `concurrency`, `rate` or both",
        ),
        (
            "[queue.throttle.t]\nrate = \"100\"\n",
            "queue.throttle.t.rate",
            "rate =",
            "expected count/period",
        ),
        (
            "[queue.throttle.t]\nrate = \"0/1m\"\n",
            "queue.throttle.t.rate",
            "rate =",
            "more than zero",
        ),
        (
            "[queue.throttle.t]\nconcurrency = -2\n",
            "queue.throttle.t.concurrency",
            "concurrency =",
            "out of range",
        ),
    ];
    for (text, key, at, message) in cases {
        assert_error(text, key, at, message);
    }
}

#[test]
fn quota_and_throttle_match_conditions() {
    const LISTS: &str = "[remote.r]\naddress = \"127.0.0.1\"\nprotocol = \"lmtp\"\nlookup = true\n\
        [directory.d]\ntype = \"lmtp\"\naddress = \"127.0.0.1\"\nlookup.domains = [\"example.org\"]\n";
    let cases = [
        (
            "[queue.quota.q]\nmessages = 5\nmatch = { if = \"listener\", in-list = \"d/domains\" }\n",
            "queue.quota.q.match",
            "match =",
            "not known to the queue",
        ),
        (
            "[queue.quota.q]\nmessages = 5\nmatch = { if = \"rcpt\", in-list = \"remote/r\" }\n",
            "queue.quota.q.match",
            "match =",
            "remote lists need a lookup over the network",
        ),
        (
            "[queue.quota.q]\nmessages = 5\nmatch = [{ if = \"rcpt\", in-list = \"nowhere/domains\" }]\n",
            "queue.quota.q.match",
            "match =",
            "no directory named \"nowhere\"",
        ),
        (
            "[queue.quota.q]\nmessages = 5\nmatch = { if = \"rcpt\", in-list = \"d/vips\" }\n",
            "queue.quota.q.match",
            "match =",
            "has no lookup list \"vips\"",
        ),
        (
            "[queue.quota.q]\nmessages = 5\nmatch = { if = \"rcpt\", in-list = \"d/domains\", then = \"x\" }\n",
            "queue.quota.q.match",
            "match =",
            "unknown key \"then\"",
        ),
        (
            "[queue.throttle.t]\nrate = \"5/1m\"\nmatch = [{ if = \"sender\" }]\n",
            "queue.throttle.t.match",
            "match =",
            "missing \"in-list\"",
        ),
        (
            "[queue.throttle.t]\nrate = \"5/1m\"\nmatch = { if = \"weather\", in-list = \"d/domains\" }\n",
            "queue.throttle.t.match",
            "match =",
            "weather",
        ),
        (
            "[queue.throttle.t]\nrate = \"5/1m\"\nmatch = { if = \"sender\", in-list = \"d\" }\n",
            "queue.throttle.t.match",
            "match =",
            "expected \"<directory>/<list>\"",
        ),
    ];
    for (text, key, at, message) in cases {
        let text = format!("{LISTS}{text}");
        assert_error(&text, key, at, message);
    }
}

#[test]
fn a_tracing_endpoint_must_be_a_url() {
    assert_error(
        "[tracing]\nendpoint = \"otel-collector:4317\"\n",
        "tracing.endpoint",
        "endpoint =",
        "not an http:// or https:// URL",
    );
}

#[test]
fn probe_interval_must_be_a_positive_duration() {
    let zero = "[remote.a]\naddress = \"h\"\nprotocol = \"smtp\"\nprobe.interval = \"0s\"\n";
    assert_error(
        zero,
        "remote.a.probe.interval",
        "probe.interval",
        "longer than zero",
    );
    let no_unit =
        "[remote.a]\naddress = \"h\"\nprotocol = \"smtp\"\n[remote.a.probe]\ninterval = 60\n";
    assert_error(
        no_unit,
        "remote.a.probe.interval",
        "interval",
        "with a unit",
    );
    let unknown =
        "[remote.a]\naddress = \"h\"\nprotocol = \"smtp\"\n[remote.a.probe]\nintervall = \"1m\"\n";
    assert_error(
        unknown,
        "remote.a.probe.intervall",
        "intervall",
        "did you mean `interval`?",
    );
}

#[test]
fn command_deadline_and_minimum_data_rate() {
    let zero = "[session]\ncommand-deadline = \"0s\"\n";
    assert_error(
        zero,
        "session.command-deadline",
        "command-deadline",
        "longer than zero",
    );
    let no_unit = "[session]\ncommand-deadline = 30\n";
    assert_error(
        no_unit,
        "session.command-deadline",
        "command-deadline",
        "with a unit",
    );
    let bad_unit = "[session]\ncommand-deadline = \"30 parsecs\"\n";
    assert_error(
        bad_unit,
        "session.command-deadline",
        "command-deadline",
        "unknown unit \"parsecs\"",
    );
    let text_rate = "[session.data]\nmin-rate = \"fast\"\n";
    assert_error(
        text_rate,
        "session.data.min-rate",
        "min-rate",
        "expected an integer, found a string",
    );
    let negative = "[session.data]\nmin-rate = -1\n";
    assert_error(negative, "session.data.min-rate", "min-rate", "-1");
    let misspelt = "[session.data]\nmin-rates = 500\n";
    assert_error(
        misspelt,
        "session.data.min-rates",
        "min-rates",
        "did you mean `min-rate`?",
    );
}

#[test]
fn allow_plain_text_must_be_a_boolean() {
    let remote =
        "[remote.a]\naddress = \"h\"\nprotocol = \"smtp\"\ntls.allow-plain-text = \"yes\"\n";
    assert_error(
        remote,
        "remote.a.tls.allow-plain-text",
        "allow-plain-text",
        "expected a boolean",
    );
    let directory = "[directory.d]\ntype = \"imap\"\naddress = \"h\"\ntls.allow-plain-text = 1\n";
    assert_error(
        directory,
        "directory.d.tls.allow-plain-text",
        "allow-plain-text",
        "expected a boolean",
    );
}

#[test]
fn bad_webhooks_and_event_outbox() {
    const HOOK: &str = "[webhook.w]\nurl = \"https://hooks.example.org/in\"\n";
    let cases: Vec<(String, &str, &str, &str)> = vec![
        (
            "[webhook.w]\nevents = [\"*\"]\n".to_owned(),
            "webhook.w.url",
            "[webhook.w]",
            "missing required key",
        ),
        (
            "[webhook.w]\nurl = \"ftp://hooks.example.org\"\n".to_owned(),
            "webhook.w.url",
            "url =",
            "not an http:// or https:// URL",
        ),
        (
            "[webhook.w]\nurl = \"https:///in\"\n".to_owned(),
            "webhook.w.url",
            "url =",
            "names no host",
        ),
        (
            format!("{HOOK}events = [\"delivery.exploded\"]\n"),
            "webhook.w.events",
            "events =",
            "matches no event type",
        ),
        (
            format!("{HOOK}events = []\n"),
            "webhook.w.events",
            "events =",
            "at least one event type",
        ),
        (
            format!("{HOOK}events = \"*\"\n"),
            "webhook.w.events",
            "events =",
            "expected",
        ),
        (
            format!("{HOOK}timeout = \"0s\"\n"),
            "webhook.w.timeout",
            "timeout =",
            "longer than zero",
        ),
        (
            format!("{HOOK}throttle = \"fast\"\n"),
            "webhook.w.throttle",
            "throttle =",
            "fast",
        ),
        (
            format!("{HOOK}headers = [\"X-Team mail\"]\n"),
            "webhook.w.headers",
            "headers =",
            "not of the form \"Name: value\"",
        ),
        (
            format!("{HOOK}headers = [\"Bad Name: x\"]\n"),
            "webhook.w.headers",
            "headers =",
            "not a valid header name",
        ),
        (
            format!("{HOOK}signature-key = \"\"\n"),
            "webhook.w.signature-key",
            "signature-key =",
            "must not be empty",
        ),
        (
            format!("{HOOK}auth.username = \"ops\"\n"),
            "webhook.w.auth.secret",
            "auth.username",
            "auth.secret is not",
        ),
        (
            format!("{HOOK}allow-invalid-certs = \"yes\"\n"),
            "webhook.w.allow-invalid-certs",
            "allow-invalid-certs",
            "expected a boolean",
        ),
        (
            format!("{HOOK}urls = \"x\"\n"),
            "webhook.w.urls",
            "urls =",
            "unknown key (did you mean `url`?)",
        ),
        (
            "[queue.events.outbox]\nmax-size = 0\n".to_owned(),
            "queue.events.outbox.max-size",
            "max-size",
            "at least 1",
        ),
        (
            "[queue.events.outbox]\nmax-size = -5\n".to_owned(),
            "queue.events.outbox.max-size",
            "max-size",
            "out of range",
        ),
        (
            "[queue.events]\nbatch-size = 0\n".to_owned(),
            "queue.events.batch-size",
            "batch-size",
            "at least 1",
        ),
        (
            "[queue.events.retry]\nmin-backoff = \"10s\"\nmax-backoff = \"1s\"\n".to_owned(),
            "queue.events.retry.max-backoff",
            "max-backoff",
            "at least min-backoff",
        ),
    ];
    for (text, key, at, message) in cases {
        assert_error(&text, key, at, message);
    }
}
