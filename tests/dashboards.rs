//! The Grafana dashboards in `deploy/grafana` and the alert rules in `deploy/prometheus` are
//! well formed, and every metric and label their PromQL asks for is one a running `ferrymail
//! all` exports after real traffic.
//!
//! The expressions are parsed with `promql-parser` (the parser GreptimeDB runs), so a query
//! that Prometheus would refuse fails here too, and the metric names are read from the syntax
//! tree rather than guessed from the text. Metric names are compared with the *sample* names of
//! the scrape (`x_total`, `x_bucket`, `x_sum`, ...), exactly as PromQL sees them.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ferrymail_e2e::{
    ALICE, Dovecot, DovecotOptions, EMBEDDED_STORE, Ferrymail, SmtpClient, SmtpSink,
    SmtpSinkOptions, http_get, logins_directory, mailboxes_directory, require_peer, sasl_plain,
};
use promql_parser::parser::{AggregateExpr, BinaryExpr, Expr, LabelModifier, VectorSelector};
use promql_parser::util::{ExprVisitor, walk_expr};
use serde_json::Value;

/// The variable every panel must take its data source from.
const DATASOURCE: &str = "${datasource}";

/// The dashboards the chart ships; more may be added.
const EXPECTED_DASHBOARDS: [&str; 4] = [
    "overview.json",
    "ingress.json",
    "queue-scheduler.json",
    "directory-proxy.json",
];

/// Labels Prometheus adds to every series at scrape time (target labels), so they never
/// appear in `/metrics` itself.
const TARGET_LABELS: [&str; 5] = ["namespace", "job", "instance", "pod", "service"];

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// One PromQL expression and where it was found, for error messages.
#[derive(Debug)]
struct Query {
    origin: String,
    expr: String,
}

/// What one expression asks of the exported metrics.
#[derive(Debug, Default)]
struct Needs {
    metrics: BTreeSet<String>,
    labels: BTreeSet<String>,
}

// ---------------------------------------------------------------------------------------------
// Reading the dashboards and the rules

fn dashboards() -> Vec<(String, Value)> {
    let dir = deploy().join("grafana");
    let mut found: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{name} is not valid JSON: {e}"));
            (name, value)
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    for expected in EXPECTED_DASHBOARDS {
        assert!(
            found.iter().any(|(name, _)| name == expected),
            "deploy/grafana/{expected} is missing"
        );
    }
    found
}

fn alert_rules() -> serde_yaml::Value {
    let path = deploy().join("prometheus/ferrymail-alerts.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()))
}

/// Every panel, rows' nested panels included, except rows themselves.
fn panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
        for panel in list.as_array().into_iter().flatten() {
            if let Some(nested) = panel.get("panels") {
                walk(nested, out);
            }
            if panel["type"] != "row" {
                out.push(panel);
            }
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// The PromQL of a dashboard: panel targets, annotation queries, and the selector inside
/// each `label_values(selector, label)` variable query (Grafana's, not PromQL).
fn dashboard_queries(name: &str, dashboard: &Value) -> Vec<Query> {
    let mut queries = Vec::new();
    for panel in panels(dashboard) {
        for target in panel["targets"].as_array().into_iter().flatten() {
            queries.push(Query {
                origin: format!("{name} panel {:?}", panel["title"].as_str().unwrap_or("?")),
                expr: target["expr"].as_str().unwrap_or_default().to_owned(),
            });
        }
    }
    for annotation in dashboard["annotations"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(expr) = annotation["expr"].as_str() {
            queries.push(Query {
                origin: format!(
                    "{name} annotation {:?}",
                    annotation["name"].as_str().unwrap_or("?")
                ),
                expr: expr.to_owned(),
            });
        }
    }
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if variable["type"] != "query" {
            continue;
        }
        let query = variable["query"]["query"]
            .as_str()
            .or(variable["query"].as_str())
            .unwrap_or_default();
        let origin = format!(
            "{name} variable {:?}",
            variable["name"].as_str().unwrap_or("?")
        );
        let inner = query
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
            .unwrap_or_else(|| panic!("{origin}: expected label_values(...), got {query:?}"));
        // label_values(selector, label): the selector is PromQL; the label must be on it.
        let (selector, label) = inner
            .rsplit_once(',')
            .unwrap_or_else(|| panic!("{origin}: label_values without a selector: {query:?}"));
        let label = label.trim();
        // Asked of the selector by an aggregation, so the label check sees it.
        queries.push(Query {
            origin,
            expr: format!("count by ({label}) ({})", selector.trim()),
        });
    }
    queries
}

fn alert_queries(rules: &serde_yaml::Value) -> Vec<Query> {
    let mut queries = Vec::new();
    for group in rules["spec"]["groups"].as_sequence().into_iter().flatten() {
        for rule in group["rules"].as_sequence().into_iter().flatten() {
            queries.push(Query {
                origin: format!(
                    "alert {} ({})",
                    rule["alert"].as_str().unwrap_or("?"),
                    rule["labels"]["severity"].as_str().unwrap_or("?")
                ),
                expr: rule["expr"].as_str().unwrap_or_default().to_owned(),
            });
        }
    }
    queries
}

// ---------------------------------------------------------------------------------------------
// PromQL

/// Replaces Grafana's variables with something PromQL parses: the interval variables with a
/// duration, every other variable (used in label values) with a regex matching anything.
fn without_grafana_variables(expr: &str) -> String {
    let mut out = String::new();
    let mut rest = expr;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (name, tail) = if let Some(braced) = after.strip_prefix('{') {
            let end = braced.find('}').expect("unclosed ${");
            (&braced[..end], &braced[end + 1..])
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        let name = name.split(':').next().unwrap_or(name);
        out.push_str(match name {
            "__rate_interval" | "__interval" | "__range" => "5m",
            "__interval_ms" | "__range_ms" => "300000",
            "__range_s" => "300",
            _ => ".*",
        });
        rest = tail;
    }
    out.push_str(rest);
    out
}

/// Collects metric names (from `name{...}` and `{__name__="name"}`) and every label name
/// used in matchers, `by`/`without` and `on`/`ignoring`/`group_*`.
struct Collector<'a>(&'a mut Needs);

impl Collector<'_> {
    fn selector(&mut self, selector: &VectorSelector) {
        let mut name = selector.name.clone();
        for matcher in &selector.matchers.matchers {
            if matcher.name == "__name__" {
                name = Some(matcher.value.clone());
            } else {
                self.0.labels.insert(matcher.name.clone());
            }
        }
        self.0
            .metrics
            .insert(name.expect("a selector without a metric name"));
    }

    fn modifier(&mut self, modifier: Option<&LabelModifier>) {
        if let Some(modifier) = modifier {
            self.0
                .labels
                .extend(modifier.labels().labels.iter().cloned());
        }
    }
}

impl ExprVisitor for Collector<'_> {
    type Error = std::convert::Infallible;

    fn pre_visit(&mut self, expr: &Expr) -> Result<bool, Self::Error> {
        match expr {
            Expr::VectorSelector(selector) => self.selector(selector),
            Expr::MatrixSelector(matrix) => self.selector(&matrix.vs),
            Expr::Aggregate(AggregateExpr { modifier, .. }) => self.modifier(modifier.as_ref()),
            Expr::Binary(BinaryExpr {
                modifier: Some(modifier),
                ..
            }) => {
                self.modifier(modifier.matching.as_ref());
                self.0
                    .labels
                    .extend(modifier.card.labels().iter().flat_map(|l| l.labels.clone()));
            }
            _ => {}
        }
        Ok(true)
    }
}

fn needs(query: &Query) -> Needs {
    assert!(
        !query.expr.trim().is_empty(),
        "{}: empty query",
        query.origin
    );
    let promql = without_grafana_variables(&query.expr);
    let expr = promql_parser::parser::parse(&promql)
        .unwrap_or_else(|e| panic!("{}: not valid PromQL: {e}\n{}", query.origin, query.expr));
    let mut needs = Needs::default();
    walk_expr(&mut Collector(&mut needs), &expr).unwrap();
    needs
}

// ---------------------------------------------------------------------------------------------
// Checks that need no server

#[test]
fn every_dashboard_is_a_grafana_dashboard_on_the_datasource_variable() {
    let dashboards = dashboards();
    let mut uids = BTreeSet::new();
    for (name, dashboard) in &dashboards {
        assert!(
            dashboard["schemaVersion"].as_u64().unwrap_or(0) >= 36,
            "{name}: schemaVersion below 36"
        );
        for key in ["title", "uid"] {
            assert!(
                dashboard[key].as_str().is_some_and(|s| !s.is_empty()),
                "{name}: no {key}"
            );
        }
        assert!(
            uids.insert(dashboard["uid"].to_string()),
            "{name}: uid used twice"
        );

        let variables = dashboard["templating"]["list"].as_array().unwrap();
        assert!(
            variables.iter().any(|v| v["name"] == "datasource"
                && v["type"] == "datasource"
                && v["query"] == "prometheus"),
            "{name}: no `datasource` variable of type prometheus"
        );
        for variable in variables.iter().filter(|v| v["type"] == "query") {
            assert_eq!(
                variable["datasource"]["uid"], DATASOURCE,
                "{name}: variable {} does not use {DATASOURCE}",
                variable["name"]
            );
        }
        for annotation in dashboard["annotations"]["list"].as_array().unwrap() {
            if annotation["builtIn"] != 1 {
                assert_eq!(
                    annotation["datasource"]["uid"], DATASOURCE,
                    "{name}: annotation {} does not use {DATASOURCE}",
                    annotation["name"]
                );
            }
        }

        let panels = panels(dashboard);
        assert!(!panels.is_empty(), "{name}: no panels");
        let mut ids = BTreeSet::new();
        for panel in panels {
            let title = &panel["title"];
            assert!(
                ids.insert(panel["id"].to_string()),
                "{name}: panel id {} twice",
                panel["id"]
            );
            assert_eq!(
                panel["datasource"]["uid"], DATASOURCE,
                "{name}: panel {title} does not use {DATASOURCE}"
            );
            assert_eq!(
                panel["datasource"]["type"], "prometheus",
                "{name}: panel {title}"
            );
            let targets = panel["targets"].as_array();
            assert!(
                targets.is_some_and(|t| !t.is_empty()),
                "{name}: panel {title} has no query"
            );
            for target in targets.into_iter().flatten() {
                // A target without its own data source inherits the panel's.
                if let Some(source) = target.get("datasource") {
                    assert_eq!(
                        source["uid"], DATASOURCE,
                        "{name}: a query of panel {title} does not use {DATASOURCE}"
                    );
                }
            }
            assert!(
                panel["fieldConfig"]["defaults"]["unit"]
                    .as_str()
                    .is_some_and(|u| !u.is_empty()),
                "{name}: panel {title} has no unit"
            );
            for key in ["gridPos", "type"] {
                assert!(!panel[key].is_null(), "{name}: panel {title} has no {key}");
            }
        }
    }
}

#[test]
fn every_alert_is_a_complete_rule() {
    let rules = alert_rules();
    assert_eq!(rules["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(rules["kind"], "PrometheusRule");
    assert!(rules["metadata"]["name"].as_str().is_some());
    let mut seen = BTreeSet::new();
    let mut alerts = 0;
    for group in rules["spec"]["groups"].as_sequence().unwrap() {
        assert!(group["name"].as_str().is_some(), "a group without a name");
        for rule in group["rules"].as_sequence().unwrap() {
            let alert = rule["alert"].as_str().expect("every rule here is an alert");
            let severity = rule["labels"]["severity"].as_str().unwrap_or("");
            assert!(
                ["info", "warning", "critical"].contains(&severity),
                "{alert}: severity {severity:?}"
            );
            assert!(
                seen.insert((alert.to_owned(), severity.to_owned())),
                "{alert} ({severity}) defined twice"
            );
            let for_ = rule["for"].as_str().unwrap_or("");
            assert!(
                for_.ends_with(['s', 'm', 'h']) && for_[..for_.len() - 1].parse::<u32>().is_ok(),
                "{alert}: `for` {for_:?} is not a duration"
            );
            for key in ["summary", "description"] {
                assert!(
                    rule["annotations"][key]
                        .as_str()
                        .is_some_and(|s| !s.is_empty()),
                    "{alert}: no {key} annotation"
                );
            }
            alerts += 1;
        }
    }
    for required in [
        "FerrymailQueueGrowing",
        "FerrymailQueueOldestMessage",
        "FerrymailDeliveryFailureRatio",
        "FerrymailDirectoryTargetDown",
        "FerrymailDirectoryErrors",
        "FerrymailRemoteHostUnreachable",
        "FerrymailAuthFailureSpike",
    ] {
        assert!(
            seen.iter().any(|(a, _)| a == required),
            "{required} missing"
        );
    }
    assert!(alerts >= 6);
}

#[test]
fn every_expression_parses() {
    for (name, dashboard) in dashboards() {
        for query in dashboard_queries(&name, &dashboard) {
            needs(&query);
        }
    }
    for query in alert_queries(&alert_rules()) {
        needs(&query);
    }
}

/// Prometheus's own `promtool` accepts the rules (templates included), and the unit tests
/// next to them (`ferrymail-alerts.test.yaml`) see each alert fire when it should, and only then.
#[test]
fn promtool_accepts_the_rules_and_their_unit_tests() {
    let promtool = require_peer("promtool");
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(&promtool)
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let mut spec = alert_rules()["spec"].clone();
    std::fs::write(
        dir.path().join("full.yaml"),
        serde_yaml::to_string(&spec).unwrap(),
    )
    .unwrap();
    run(&["check", "rules", "full.yaml"]);

    for group in spec["groups"].as_sequence_mut().unwrap() {
        for rule in group["rules"].as_sequence_mut().unwrap() {
            rule.as_mapping_mut().unwrap().remove("annotations");
        }
    }
    std::fs::write(
        dir.path().join("rules.yaml"),
        serde_yaml::to_string(&spec).unwrap(),
    )
    .unwrap();
    std::fs::copy(
        deploy().join("prometheus/ferrymail-alerts.test.yaml"),
        dir.path().join("tests.yaml"),
    )
    .unwrap();
    run(&["test", "rules", "tests.yaml"]);
}

#[test]
fn a_misspelled_metric_or_label_is_caught() {
    let exported = scrape_samples(
        "# TYPE queue_deliveries counter\nqueue_deliveries_total{result=\"delivered\"} 1\n# EOF\n",
    );
    let good = Query {
        origin: "test".into(),
        expr: "sum by (result) (rate(queue_deliveries_total{job=~\"$job\"}[$__rate_interval]))"
            .into(),
    };
    assert!(missing(&[good], &exported).is_empty());
    for bad in [
        "rate(queue_delivery_total[5m])",
        "sum by (outcome) (rate(queue_deliveries_total[5m]))",
        "queue_deliveries_total{results=\"delivered\"}",
        "queue_deliveries_total / ignoring (reason) queue_deliveries_total",
    ] {
        let query = Query {
            origin: "test".into(),
            expr: bad.into(),
        };
        assert_eq!(missing(&[query], &exported).len(), 1, "{bad} passed");
    }
}

// ---------------------------------------------------------------------------------------------
// Against a running server

/// Sample names of an OpenMetrics/Prometheus text scrape, each with the label names its
/// samples carry.
fn scrape_samples(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut samples: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let end = line.find(['{', ' ']).unwrap_or(line.len());
        let labels = samples.entry(line[..end].to_owned()).or_default();
        if line[end..].starts_with('{') {
            // name="value",name="value"}: values are quoted; label names are bare.
            let mut in_value = false;
            let mut escaped = false;
            let mut current = String::new();
            for c in line[end + 1..].chars() {
                if in_value {
                    match (escaped, c) {
                        (false, '\\') => escaped = true,
                        (false, '"') => in_value = false,
                        _ => escaped = false,
                    }
                    continue;
                }
                match c {
                    '=' => {
                        labels.insert(std::mem::take(&mut current).trim().to_owned());
                    }
                    '"' => in_value = true,
                    '}' => break,
                    ',' => current.clear(),
                    c => current.push(c),
                }
            }
        }
    }
    samples
}

/// Each query's metrics and labels that the scrape does not have, one line per query.
fn missing(queries: &[Query], exported: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let mut problems = Vec::new();
    for query in queries {
        let needs = needs(query);
        let unknown: Vec<&String> = needs
            .metrics
            .iter()
            .filter(|m| !exported.contains_key(*m))
            .collect();
        // A label must be carried by one of the expression's own metrics (or be one that
        // Prometheus adds when it scrapes).
        let carried: BTreeSet<&String> = needs
            .metrics
            .iter()
            .filter_map(|m| exported.get(m))
            .flatten()
            .collect();
        let stray: Vec<&String> = needs
            .labels
            .iter()
            .filter(|l| !TARGET_LABELS.contains(&l.as_str()) && !carried.contains(l))
            .collect();
        if !unknown.is_empty() || !stray.is_empty() {
            problems.push(format!(
                "{}: metrics not exported {unknown:?}, labels not on them {stray:?}\n    {}",
                query.origin, query.expr
            ));
        }
    }
    problems
}

/// `ferrymail all` with Dovecot checking recipients (LMTP) and logins (submission), and
/// Postfix's smtp-sink as the next hop.
fn config(dovecot: &Dovecot, sink: &SmtpSink) -> String {
    format!(
        r#"
[server]
hostname = "mx.test"
shutdown-timeout = "5s"
[server.listener.smtp]
bind = "127.0.0.1:0"
protocol = "smtp"
[server.listener.admin]
bind = "127.0.0.1:0"
protocol = "http"
{store}{mailboxes}{logins}[session.rcpt]
directory = "mailboxes"
[session.auth]
directory = "logins"
# Only so this test can fail a login without TLS; never in production.
allow-plain-text = true
[remote.sink]
address = "127.0.0.1"
port = {sink}
protocol = "smtp"
tls.implicit = false
timeout = "10s"
[queue.outbound]
next-hop = "sink"
# Events for a webhook that is not listening: the outbox and its failures have samples.
[webhook.ops]
url = "http://127.0.0.1:9/events"
"#,
        store = EMBEDDED_STORE,
        mailboxes = mailboxes_directory(dovecot),
        logins = logins_directory(dovecot),
        sink = sink.address().port(),
    )
}

#[test]
fn every_metric_the_dashboards_and_alerts_use_is_exported() {
    let mut queries = Vec::new();
    for (name, dashboard) in dashboards() {
        queries.extend(dashboard_queries(&name, &dashboard));
    }
    queries.extend(alert_queries(&alert_rules()));

    let dovecot = Dovecot::start_with(DovecotOptions {
        auth_penalty: false,
        ..DovecotOptions::default()
    });
    let sink = SmtpSink::start(SmtpSinkOptions::default());
    let mut process = Ferrymail::start("all", &config(&dovecot, &sink));
    let smtp = process.address("smtp");
    let admin = process.address("admin");

    // Traffic that makes every labelled family appear: a failed login, a refused relay, an
    // unknown recipient, and one message accepted and delivered.
    let mut client = SmtpClient::connect(smtp);
    assert_eq!(client.command("EHLO client.test").code, 250);
    let login = client.command(&format!("AUTH PLAIN {}", sasl_plain(ALICE.0, "wrong")));
    assert_eq!(login.code, 535, "{}", login.text());
    assert_eq!(client.command("MAIL FROM:<sender@remote.test>").code, 250);
    assert_eq!(client.command("RCPT TO:<someone@other.test>").code, 554);
    assert_eq!(client.command("RCPT TO:<nobody@example.org>").code, 550);
    assert_eq!(client.command(&format!("RCPT TO:<{}>", ALICE.0)).code, 250);
    assert_eq!(client.command("DATA").code, 354);
    let queued = client.send_data("Subject: metrics\r\n\r\nfor the dashboards\r\n");
    assert_eq!(queued.code, 250, "{}", queued.text());
    assert_eq!(client.command("QUIT").code, 221);
    sink.wait_for_messages(1);

    // The admin API answers (here: refuses a call without credentials).
    let refused = http_get(admin, "/api/queue/status").unwrap();
    assert_eq!(refused.status, 401, "{}", refused.body);

    // The delivery is counted once the sink's reply is handled.
    let deadline = Instant::now() + Duration::from_secs(30);
    let metrics = loop {
        let metrics = http_get(admin, "/metrics").unwrap().body;
        if metrics.contains("queue_deliveries_total{result=\"delivered\"} 1") {
            break metrics;
        }
        assert!(
            Instant::now() < deadline,
            "the delivery is not counted:\n{metrics}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let exported = scrape_samples(&metrics);
    let problems = missing(&queries, &exported);
    assert!(
        problems.is_empty(),
        "{} queries ask for what ferrymail does not export:\n{}\n\n/metrics:\n{metrics}",
        problems.len(),
        problems.join("\n")
    );
    let (status, _) = process.terminate();
    assert!(status.success(), "{status}");
}
