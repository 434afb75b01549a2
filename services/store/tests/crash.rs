//! Crash safety of the embedded backend: a process committing in a loop is killed with
//! SIGKILL; after reopening, every acknowledged commit is present and no commit is half
//! visible. The kill comes after the store has checkpointed and started its write-ahead log
//! over, so both the synced database and the log replayed on top of it are checked.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use ferrymail_store::{KeyRange, Store, StoreOptions, decode_counter};

const CHILD_ENV: &str = "FERRYMAIL_STORE_CRASH_DIR";
/// Acknowledgements to wait for before the kill: enough for many group-commit batches.
const ACKS_BEFORE_KILL: usize = 400;
/// How long the child commits before the kill at least: past two of the checkpoints the
/// store makes every second.
const RUN_BEFORE_KILL: std::time::Duration = std::time::Duration::from_millis(2_200);
const WRITERS: u64 = 8;

fn keys(store: &Store, n: u64) -> (Vec<u8>, Vec<u8>) {
    (store.root().pack(&("a", n)), store.root().pack(&("b", n)))
}

fn counter(store: &Store) -> Vec<u8> {
    store.root().pack(&("committed",))
}

/// The child: commits forever from several tasks, printing each acknowledged commit.
/// Run only by `killed_mid_commit_loses_no_acknowledged_commit`, hence ignored.
#[test]
#[ignore = "the child process of the crash test"]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let store = Store::open_embedded(Path::new(&dir), StoreOptions::default()).unwrap();
        let mut tasks = Vec::new();
        for writer in 0..WRITERS {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0.. {
                    let n = i * WRITERS + writer;
                    let (a, b) = keys(&store, n);
                    let count = counter(&store);
                    store
                        .transact(|tx| {
                            let (a, b, count) = (a.clone(), b.clone(), count.clone());
                            Box::pin(async move {
                                tx.set(&a, &n.to_le_bytes())?;
                                tx.set(&b, &vec![(n % 251) as u8; 2_000])?;
                                tx.atomic_add(&count, 1)
                            })
                        })
                        .await
                        .unwrap();
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ack {n}").unwrap();
                    out.flush().unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_mid_commit_loses_no_acknowledged_commit() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut acked = BTreeSet::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let started = std::time::Instant::now();
    while acked.len() < ACKS_BEFORE_KILL || started.elapsed() < RUN_BEFORE_KILL {
        let line = lines
            .next()
            .expect("the child stopped before the kill")
            .unwrap();
        if let Some(n) = line.strip_prefix("ack ") {
            acked.insert(n.parse::<u64>().unwrap());
        }
    }
    child.kill().unwrap(); // SIGKILL: no destructor, no flush, mid-commit.
    child.wait().unwrap();
    // Acknowledgements already written to the pipe count too.
    for line in lines.map_while(Result::ok) {
        if let Some(n) = line.strip_prefix("ack ") {
            acked.insert(n.parse::<u64>().unwrap());
        }
    }

    let store = Store::open_embedded(dir.path(), StoreOptions::default()).unwrap();
    let (a_begin, a_end) = store.root().subspace(&("a",)).range();
    let (b_begin, b_end) = store.root().subspace(&("b",)).range();
    let a = store
        .transact(|tx| {
            let r = KeyRange::new(a_begin.clone(), a_end.clone());
            Box::pin(async move { tx.get_all(&r, 500).await })
        })
        .await
        .unwrap();
    let b = store
        .transact(|tx| {
            let r = KeyRange::new(b_begin.clone(), b_end.clone());
            Box::pin(async move { tx.get_all(&r, 500).await })
        })
        .await
        .unwrap();
    let count_key = counter(&store);
    let committed = store
        .transact(|tx| {
            let k = count_key.clone();
            Box::pin(async move { tx.get(&k).await })
        })
        .await
        .unwrap();

    let present: BTreeSet<u64> = a
        .iter()
        .map(|kv| u64::from_le_bytes(kv.value.as_slice().try_into().unwrap()))
        .collect();
    let missing: Vec<_> = acked.difference(&present).collect();
    assert!(missing.is_empty(), "acknowledged commits lost: {missing:?}");
    // Every commit is whole: both keys or neither, and the counter counts exactly them.
    assert_eq!(a.len(), b.len(), "a commit is half visible");
    for kv in &b {
        assert!(kv.value.iter().all(|&byte| byte == kv.value[0]) && kv.value.len() == 2_000);
    }
    assert_eq!(
        committed.map(|v| decode_counter(&v)),
        Some(present.len() as i64)
    );
    eprintln!(
        "acknowledged {}, found {} (commits that finished after the last acknowledgement count too)",
        acked.len(),
        present.len()
    );
}
