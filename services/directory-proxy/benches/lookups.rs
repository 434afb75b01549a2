//! RCPT validation through the LMTP directory against a real Dovecot: lookups per second
//! uncached with the pool, uncached with one new connection per lookup, and cached.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrymail_directory_proxy::{DirectoryMetrics, DirectoryProxy};
use ferrymail_e2e::{Dovecot, DovecotOptions};
use ferrymail_rpc::directory::{DirectoryService, Verdict};
use ferrymail_telemetry::Metrics;

const RUN: Duration = Duration::from_secs(3);
const CONCURRENCY: usize = 8;

/// Two remotes on the same LMTP server: one pooled (50 requests per connection, Stalwart's
/// default), one that must open a new connection for every lookup. Caches off for both.
fn config(port: u16) -> ferrymail_config::Config {
    let text = format!(
        r#"
[server]
hostname = "bench.test"
[remote.pooled]
address = "127.0.0.1"
port = {port}
protocol = "lmtp"
lookup = true
tls.implicit = false
tls.allow-invalid-certs = true
cache.entries = 0
[remote.per-lookup]
address = "127.0.0.1"
port = {port}
protocol = "lmtp"
lookup = true
tls.implicit = false
tls.allow-invalid-certs = true
cache.entries = 0
limits.requests = 1
[remote.cached]
address = "127.0.0.1"
port = {port}
protocol = "lmtp"
lookup = true
tls.implicit = false
tls.allow-invalid-certs = true
"#
    );
    ferrymail_config::load_str("bench.toml", &text).unwrap()
}

/// Lookups per second of `list` with `concurrency` tasks, each asking a different address.
async fn rate(
    proxy: &Arc<DirectoryProxy>,
    list: &'static str,
    concurrency: usize,
    same_address: bool,
) -> f64 {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for task in 0..concurrency {
        let proxy = proxy.clone();
        tasks.push(tokio::spawn(async move {
            let mut done = 0u64;
            while started.elapsed() < RUN {
                let address = if same_address {
                    "alice@example.org".to_string()
                } else {
                    format!("alice+{task}-{done}@example.org")
                };
                let answer = proxy.in_list(list, &address).await.unwrap();
                assert_eq!(answer.verdict, Verdict::Yes, "{answer:?}");
                done += 1;
            }
            done
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }
    total as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let dovecot = Dovecot::start_with(DovecotOptions {
        auth_penalty: false,
        ..DovecotOptions::default()
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let config = config(dovecot.ports.lmtp);
        let metrics = Metrics::new("bench");
        let proxy = Arc::new(
            DirectoryProxy::new(&config, None, DirectoryMetrics::register(&metrics))
                .await
                .unwrap(),
        );
        // Warm the cached target once.
        proxy
            .in_list("remote/cached", "alice@example.org")
            .await
            .unwrap();
        let per_lookup = rate(&proxy, "remote/per-lookup", CONCURRENCY, false).await;
        let pooled = rate(&proxy, "remote/pooled", CONCURRENCY, false).await;
        let cached = rate(&proxy, "remote/cached", 1, true).await;
        println!(
            "RCPT validation through an LMTP directory (Dovecot), {} s each",
            RUN.as_secs()
        );
        println!("{:<46} {:>12} {:>10}", "", "lookups/s", "ratio");
        println!(
            "{:<46} {:>12.0} {:>10.2}",
            format!("new connection per lookup, {CONCURRENCY} tasks"),
            per_lookup,
            1.0
        );
        println!(
            "{:<46} {:>12.0} {:>10.2}",
            format!("pooled, uncached, {CONCURRENCY} tasks"),
            pooled,
            pooled / per_lookup
        );
        println!(
            "{:<46} {:>12.0} {:>10}",
            "cached (in-process), 1 task",
            cached,
            format!("{:.1} µs", 1e6 / cached)
        );
    });
}
