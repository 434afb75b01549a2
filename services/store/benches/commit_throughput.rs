//! Durable commit throughput of the embedded store at concurrency 1, 8 and 64, next to the
//! raw fsync rate of the same disk measured in the same run. Group commit should lift
//! concurrent throughput well above one commit per fsync.
//!
//! The PostgreSQL store follows, on a private cluster on loopback whose data is on the same
//! disk (`fsync = on`, the default `synchronous_commit`), with a pool as large as the
//! concurrency. Its commits take turns on one row (`meta.clock`), each holding it until its
//! WAL is flushed, so PostgreSQL's group commit cannot batch them: expect about one commit
//! per fsync whatever the concurrency.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ferrymail_e2e::{Postgres, load_average, machine_line};
use ferrymail_store::{PostgresSettings, Store, StoreOptions};

const RUN: Duration = Duration::from_secs(3);
const CONCURRENCY: [u64; 3] = [1, 8, 64];

/// Single-threaded write-and-fsync of 4 KiB, the cost of one durable commit without batching.
fn fsync_rate(dir: &std::path::Path) -> f64 {
    let mut file = std::fs::File::create(dir.join("fsync-probe")).unwrap();
    let block = vec![0u8; 4096];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < RUN {
        file.write_all(&block).unwrap();
        file.sync_data().unwrap();
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

async fn commit_rate(store: &Store, concurrency: u64) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for task in 0..concurrency {
        let (store, done, stop) = (store.clone(), done.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let key = store.root().pack(&("bench", concurrency, task, i));
                store
                    .transact(|tx| {
                        let key = key.clone();
                        Box::pin(async move { tx.set(&key, &[7u8; 100]) })
                    })
                    .await
                    .unwrap();
                done.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        }));
    }
    tokio::time::sleep(RUN).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let load_at_start = load_average();
    // Same disk as the build: the bench measures this machine's fsync, not a tmpfs.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let fsync = fsync_rate(dir.path());
    let store = Store::open_embedded(&dir.path().join("store"), StoreOptions::default()).unwrap();
    println!(
        "store commit throughput (durable, 100-byte single-key transactions, {}s each)",
        RUN.as_secs()
    );
    println!("{:<28} {:>12} {:>14}", "", "per second", "× fsync rate");
    println!(
        "{:<28} {:>12.0} {:>14.2}",
        "raw fsync (4 KiB, 1 thread)", fsync, 1.0
    );
    for concurrency in CONCURRENCY {
        let rate = runtime.block_on(commit_rate(&store, concurrency));
        println!(
            "{:<28} {:>12.0} {:>14.2}",
            format!("commits, concurrency {concurrency}"),
            rate,
            rate / fsync
        );
    }

    // The cluster's directory is a temporary one, on the same filesystem here as the build.
    let postgres = Postgres::start();
    postgres.create_database("commit_throughput");
    let settings = PostgresSettings {
        host: "127.0.0.1".into(),
        port: postgres.port(),
        database: "commit_throughput".into(),
        user: postgres.user().into(),
        password: Some(postgres.password().into()),
        timeout: Duration::from_secs(15),
        tls: None,
        max_connections: CONCURRENCY.into_iter().max().unwrap_or(1) as usize,
    };
    let store = runtime
        .block_on(Store::open_postgresql(&settings, StoreOptions::default()))
        .unwrap();
    println!(
        "PostgreSQL {} on loopback (same disk, fsync on):",
        postgres.sql("postgres", "SHOW server_version")
    );
    for concurrency in CONCURRENCY {
        let rate = runtime.block_on(commit_rate(&store, concurrency));
        println!(
            "{:<28} {:>12.0} {:>14.2}",
            format!("commits, concurrency {concurrency}"),
            rate,
            rate / fsync
        );
    }
    // The pool's connections close before the cluster stops.
    drop(store);
    // Other work on the machine shows in every figure.
    println!("{}", machine_line(&load_at_start));
}
