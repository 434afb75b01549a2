//! Every role starts, serves its admin endpoints, says honestly what it cannot do yet, and
//! stops cleanly on SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use ferrymail_e2e::{Ferrymail, http_get};

const CONFIG: &str = r#"
[server]
hostname = "mx.test"
shutdown-timeout = "5s"

[server.listener.admin]
bind = "127.0.0.1:0"
protocol = "http"

[server.listener.grpc]
bind = "127.0.0.1:0"
protocol = "grpc"

[server.listener.smtp]
bind = "127.0.0.1:0"
protocol = "smtp"
"#;

/// The store the queue roles (`all`, `queue-scheduler`) keep the queue in, in the process's
/// own directory.
const STORAGE: &str = r#"
[store.local]
type = "embedded"
path = "data"

[storage]
data = "local"
"#;

/// Where a split smtp-ingress finds the other roles. Nothing listens there: clients connect
/// lazily, and these tests send no mail.
const CLUSTER: &str = r#"
[cluster.directory]
endpoint = "http://127.0.0.1:9"
[cluster.queue]
endpoint = "http://127.0.0.1:9"
"#;

/// [`CONFIG`], with what `role` needs: a store for the queue, endpoints for the ingress.
fn config_for(role: &str) -> String {
    match role {
        "all" | "queue-scheduler" => format!("{CONFIG}{STORAGE}"),
        "smtp-ingress" => format!("{CONFIG}{CLUSTER}"),
        _ => CONFIG.to_owned(),
    }
}

/// Checks `role`; `parts` are those expected not ready, each with words of its reason.
fn check_role(role: &str, parts: &[(&str, &str)]) {
    let mut process = Ferrymail::start(role, &config_for(role));
    let admin = process.address("admin");

    let health = http_get(admin, "/healthz").unwrap();
    assert_eq!((health.status, health.body.as_str()), (200, "ok"));

    // A role that cannot do its job yet is alive but not ready, and says why.
    let ready = http_get(admin, "/readyz").unwrap();
    let expected = if parts.is_empty() { 200 } else { 503 };
    assert_eq!(ready.status, expected, "{role}: {}", ready.body);
    for (part, reason) in parts {
        assert!(
            ready
                .body
                .lines()
                .any(|l| l.starts_with(&format!("{part}: ")) && l.contains(reason)),
            "{role}: /readyz should name {part}: {}",
            ready.body
        );
    }
    let warned: Vec<_> = process
        .log
        .iter()
        .filter(|l| l.message().starts_with("not doing its job"))
        .collect();
    assert_eq!(
        warned.len(),
        parts.len(),
        "{role}: one start-up warning per part:\n{}",
        process.dump()
    );

    let metrics = http_get(admin, "/metrics").unwrap();
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.body.contains(&format!(
            "ferrymail_build_info{{version=\"{}\",role=\"{role}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )),
        "{}",
        metrics.body
    );
    assert!(
        metrics.body.contains("config_hash_info{hash=\""),
        "{}",
        metrics.body
    );

    let (status, log) = process.terminate();
    assert!(status.success(), "{role} exited with {status}");
    let messages: Vec<_> = log.iter().map(|l| l.message()).collect();
    let stopping = messages
        .iter()
        .position(|m| m.starts_with("stopping"))
        .expect("stopping logged");
    let stopped = messages
        .iter()
        .position(|m| *m == "stopped")
        .expect("stopped logged");
    assert!(stopping < stopped);
}

#[test]
fn all_runs_every_role_but_the_operator() {
    check_role("all", &[]);
}

#[test]
fn smtp_ingress_role_is_ready() {
    check_role("smtp-ingress", &[]);
}

#[test]
fn queue_scheduler_role_is_ready() {
    check_role("queue-scheduler", &[]);
}

#[test]
fn directory_proxy_role_is_ready() {
    check_role("directory-proxy", &[]);
}

#[test]
fn operator_role() {
    // No Kubernetes API here (no kubeconfig, no service account): the operator is alive, not
    // ready, and says why.
    check_role("operator", &[("operator", "no Kubernetes API")]);
}

#[test]
fn roles_bind_only_the_listeners_they_serve() {
    let mut ingress = Ferrymail::start("smtp-ingress", &config_for("smtp-ingress"));
    ingress.address("smtp");
    assert!(
        !ingress
            .log
            .iter()
            .any(|l| l.message() == "listener bound" && l.field("listener") == Some("grpc")),
        "smtp-ingress serves no gRPC:\n{}",
        ingress.dump()
    );
    let mut scheduler = Ferrymail::start("queue-scheduler", &config_for("queue-scheduler"));
    scheduler.address("grpc");
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_health_reports_which_services_are_served() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

    let mut process = Ferrymail::start("all", &config_for("all"));
    let grpc = process.address("grpc");
    let channel = tonic::transport::Channel::from_shared(format!("http://{grpc}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = HealthClient::new(channel);
    for (service, status) in [
        ("ferrymail.v1.Directory", ServingStatus::Serving),
        ("ferrymail.v1.Queue", ServingStatus::Serving),
        ("", ServingStatus::Serving),
    ] {
        let reply = client
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap();
        assert_eq!(reply.into_inner().status(), status, "{service:?}");
    }
}

#[test]
fn the_queue_roles_refuse_to_start_without_a_store() {
    for role in ["queue-scheduler", "all"] {
        let (status, output) = Ferrymail::start(role, CONFIG).wait_exit();
        assert_eq!(status.code(), Some(1), "{role}: {output}");
        assert!(
            output.contains(&format!(
                "the {role} role keeps the mail queue in the store: set storage.data"
            )),
            "{role}: {output}"
        );
    }
}

#[test]
fn an_invalid_configuration_starts_nothing_and_lists_every_problem() {
    let config = format!("{CONFIG}\n[remote.x]\nprotocol = \"pop3\"\nfoo = 1\n");
    let process = Ferrymail::start("all", &config);
    let (status, output) = process.wait_exit();
    assert_eq!(status.code(), Some(1));
    assert!(
        output.contains("config.toml:19:12: remote.x.protocol: unknown value \"pop3\""),
        "{output}"
    );
    assert!(
        output.contains("config.toml:20:1: remote.x.foo: unknown key"),
        "{output}"
    );
    assert!(
        output.contains("config.toml:18:1: remote.x.address: missing required key"),
        "{output}"
    );
    assert!(
        output.contains("3 problem(s); nothing was started"),
        "{output}"
    );
}

#[test]
fn a_port_in_use_is_a_clear_start_up_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let config = format!(
        "[server]\nhostname = \"h\"\n[server.listener.admin]\nbind = \"127.0.0.1:{port}\"\nprotocol = \"http\"\n"
    );
    let (status, output) = Ferrymail::start("operator", &config).wait_exit();
    assert_eq!(status.code(), Some(1));
    assert!(
        output.contains(&format!(
            "server.listener.admin: cannot bind 127.0.0.1:{port}"
        )),
        "{output}"
    );
}

#[test]
fn readiness_turns_off_while_draining() {
    let mut process = Ferrymail::start("operator", CONFIG);
    process.address("admin");
    let (status, log) = process.terminate();
    assert!(status.success());
    assert!(
        log.iter().any(|l| l.message().contains("draining")),
        "{log:?}"
    );
}

#[test]
fn without_a_hostname_the_server_greets_with_the_machines() {
    // The kernel's record of the machine's name, as `hostname` prints it.
    let machine = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let machine = machine.trim_end();
    let config = format!("{CONFIG}{STORAGE}").replace("hostname = \"mx.test\"\n", "");
    assert!(!config.contains("hostname"), "{config}");
    let mut process = Ferrymail::start("all", &config);
    let smtp = process.address("smtp");
    let mut client = ferrymail_e2e::SmtpClient::connect(smtp);
    assert_eq!(client.greeting.code, 220);
    assert!(
        client.greeting.lines[0].starts_with(&format!("{machine} ")),
        "{}",
        client.greeting
    );
    let ehlo = client.command("EHLO client.test");
    assert!(ehlo.lines[0].starts_with(machine), "{ehlo}");
}
