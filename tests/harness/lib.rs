//! Starts the real `ferrymail` binary and talks to it over loopback.
//!
//! Every listener in a test configuration binds port 0; the harness learns the real ports
//! from the `listener bound` lines of the JSON log, so tests never race for ports.
//!
//! The real peers it works with run as private loopback instances: [`Dovecot`] (IMAP, LMTP,
//! submission), Postfix's [`SmtpSink`] and [`Postgres`], the shared store; and in process a
//! [`WebhookReceiver`] for delivery events. A missing peer
//! fails the test ([`require_peer`]).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod cluster;
mod cpu_time;
mod delivery_audit;
mod dovecot;
mod fake_dns;
mod hook_server;
mod http;
mod https_server;
mod lab_config;
mod load_generator;
mod mail_clients;
mod milters;
mod otlp_receiver;
mod peer;
mod postfix;
mod postgres;
mod process;
mod small_filesystem;
mod smtp_sink;
mod tcp_relay;
mod throughput;
mod tls;
mod tls_report_schema;
mod webhook_receiver;

pub use cluster::{ALL, Cluster, ClusterOptions, INGRESS, Member, PROXY, SCHEDULER, SharedStore};
pub use cpu_time::{own_cpu, process_tree_cpu, reaped_children_cpu};
pub use delivery_audit::{
    Fault, Findings, backlog, check as check_deliveries, complete_deliveries, wait_delivered,
};
pub use dovecot::{
    ALICE, BOB, DOVECOT_HOSTNAME, Dovecot, DovecotOptions, DovecotPorts, TEMPFAIL_USER,
};
pub use fake_dns::FakeDns;
pub use hook_server::{HookAnswer, HookRequest, HookServer};
pub use http::{HttpResponse, http_get};
pub use https_server::HttpsServer;
pub use lab_config::{
    EMBEDDED_STORE, embedded_store, logins_directory, mailboxes_directory, relay_config,
};
pub use load_generator::{LOAD_CLIENT_HELO, Load, LoadOptions, LoadReport, end_marker};
pub use mail_clients::{
    ImapClient, ImapResponse, SmtpClient, SmtpReply, python, python_with_input, sasl_plain,
    test_venv_python,
};
pub use milters::{OpenDkim, Rspamd, TlsTunnel};
pub use otlp_receiver::{OtlpReceiver, ReceivedSpan, describe as describe_spans};
pub use peer::{PEER_PATIENCE, require_peer, wait_until};
pub use postfix::{POSTFIX_HOSTNAME, Postfix};
pub use postgres::{POSTGRES_PASSWORD, POSTGRES_USER, Postgres};
pub use process::{Ferrymail, LogLine, binary};
pub use small_filesystem::{FILLER_BYTES, SmallFilesystem};
pub use smtp_sink::{Delivery, SmtpSink, SmtpSinkOptions};
pub use tcp_relay::TcpRelay;
pub use throughput::{
    LOAD_HELO, LOAD_SENDER, SmtpSource, bench_config, bench_config_on, check_received,
    discarding_sink, load_average, machine_line, median, release_binary,
};
pub use tls::{CLUSTER_DOMAIN, ClusterCertificates, IssuedCertificate, TestCertificates};
pub use tls_report_schema::tls_report_schema_errors;
pub use webhook_receiver::{WebhookReceiver, WebhookRequest};
