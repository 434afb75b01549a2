//! The embedded store on a full disk: commits are refused (never half made), the store
//! says why, and it recovers by itself once there is room again, without a restart and
//! without losing an acknowledged commit. A process killed on a full disk starts again in
//! place, or says how much room it needs and starts once that much is free.
//!
//! Each test mounts a small tmpfs of its own; where mounting is not permitted it is skipped
//! and says so.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use ferrymail_e2e::{PEER_PATIENCE, SmallFilesystem};
use ferrymail_store::{Store, StoreError, StoreObserver, StoreOptions};
use tokio::sync::watch;

const CHILD_ENV: &str = "FERRYMAIL_STORE_FULL_DISK_DIR";
/// Each commit writes one value of this size.
const VALUE_BYTES: usize = 60_000;

fn small_filesystem(bytes: u64) -> Option<SmallFilesystem> {
    match SmallFilesystem::mount(bytes) {
        Ok(fs) => Some(fs),
        Err(why) => {
            eprintln!(
                "skipped: this test fills a filesystem of its own and cannot mount one: {why}"
            );
            None
        }
    }
}

fn value(n: u64) -> Vec<u8> {
    vec![(n % 251) as u8; VALUE_BYTES]
}

async fn put(store: &Store, n: u64) -> Result<(), StoreError> {
    let key = store.root().pack(&("value", n));
    store
        .transact(|tx| {
            let key = key.clone();
            Box::pin(async move { tx.set(&key, &value(n)) })
        })
        .await
}

async fn get(store: &Store, n: u64) -> Option<Vec<u8>> {
    let key = store.root().pack(&("value", n));
    store
        .transact(|tx| {
            let key = key.clone();
            Box::pin(async move { tx.get(&key).await })
        })
        .await
        .unwrap()
}

/// Commits values from `first` until a commit fails; returns the acknowledged ones and the
/// error.
async fn put_until_full(store: &Store, first: u64) -> (Vec<u64>, StoreError) {
    let mut acknowledged = Vec::new();
    for n in first..first + 100_000 {
        match put(store, n).await {
            Ok(()) => acknowledged.push(n),
            Err(error) => return (acknowledged, error),
        }
    }
    panic!("the disk never filled up");
}

async fn check_acknowledged(store: &Store, acknowledged: &[u64]) {
    for &n in acknowledged {
        assert_eq!(
            get(store, n).await.as_deref(),
            Some(&value(n)[..]),
            "acknowledged value {n} is missing"
        );
    }
}

/// Waits until the store's availability is `Some(_)` (`unavailable`) or `None`.
async fn wait_availability(store: &Store, unavailable: bool) -> Option<String> {
    let mut availability = store.availability();
    tokio::time::timeout(
        PEER_PATIENCE * 2,
        availability.wait_for(|reason| reason.is_some() == unavailable),
    )
    .await
    .expect("the store's availability to change")
    .unwrap()
    .clone()
}

/// With the store failed on a full `fs`: a commit is refused at once; once `fs` has room
/// again the store recovers by itself, commits again and holds every `acknowledged` value.
async fn refused_until_room_then_recovered(
    store: &Store,
    fs: &mut SmallFilesystem,
    acknowledged: &[u64],
) {
    let refused = put(store, 1_000_000).await.unwrap_err();
    assert!(matches!(refused, StoreError::Unavailable(_)), "{refused}");
    fs.release_all();
    assert_eq!(wait_availability(store, false).await, None);
    put(store, 1_000_001).await.unwrap();
    check_acknowledged(store, acknowledged).await;
    assert_eq!(get(store, 1_000_001).await, Some(value(1_000_001)));
}

/// Counts the embedded store's checkpoints.
#[derive(Debug)]
struct Checkpoints(watch::Sender<u64>);

impl StoreObserver for Checkpoints {
    fn committed(&self, _: Duration) {}
    fn retried(&self, _: &StoreError) {}
    fn failed(&self, _: &StoreError) {}
    fn checkpointed(&self, _: Duration) {
        self.0.send_modify(|n| *n += 1);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_database_write_is_recovered_by_opening_the_files_again() {
    let Some(mut fs) = small_filesystem(32 << 20) else {
        return;
    };
    let (checkpoints, mut checkpointed) = watch::channel(0);
    let options = StoreOptions {
        observer: Some(Arc::new(Checkpoints(checkpoints))),
        ..StoreOptions::default()
    };
    let store = Store::open_embedded(&fs.path().join("store"), options).unwrap();
    // A log of a few MiB, then a checkpoint: later commits write the log where it already
    // has room, and the database file is the one that runs out of it.
    let mut acknowledged: Vec<u64> = (0..100).collect();
    for &n in &acknowledged {
        put(&store, n).await.unwrap();
    }
    let seen = *checkpointed.borrow_and_update();
    tokio::time::timeout(PEER_PATIENCE, checkpointed.wait_for(|n| *n > seen))
        .await
        .expect("a checkpoint")
        .unwrap();
    fs.fill();

    // The log takes these where it has room; the next checkpoint cannot write them into the
    // database file, and redb refuses everything after that until it is opened again.
    for n in 100..110 {
        put(&store, n).await.unwrap();
        acknowledged.push(n);
    }
    let reason = wait_availability(&store, true).await.unwrap();
    assert!(reason.contains("checkpoint failed"), "{reason}");
    assert!(reason.contains("No space left on device"), "{reason}");
    refused_until_room_then_recovered(&store, &mut fs, &acknowledged).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_refuses_commits_then_the_store_recovers_without_a_restart() {
    let Some(mut fs) = small_filesystem(32 << 20) else {
        return;
    };
    let store = Store::open_embedded(&fs.path().join("store"), StoreOptions::default()).unwrap();
    assert_eq!(*store.availability().borrow(), None);
    fs.fill_leaving(6 << 20);

    let (acknowledged, error) = put_until_full(&store, 0).await;
    assert!(!acknowledged.is_empty());
    assert!(
        matches!(error, StoreError::Unavailable(_)),
        "a commit on a full disk is refused as unavailable: {error}"
    );
    let reason = wait_availability(&store, true).await.unwrap();
    assert!(reason.contains("No space left on device"), "{reason}");
    refused_until_room_then_recovered(&store, &mut fs, &acknowledged).await;
}

/// The child of `a_process_killed_on_a_full_disk_starts_again_in_place_or_says_how_much_room`:
/// commits until the disk is full, printing each acknowledged value, then waits to be killed.
#[test]
#[ignore = "the child process of a full-disk test"]
fn full_disk_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let store = Store::open_embedded(Path::new(&dir), StoreOptions::default()).unwrap();
        let (acknowledged, error) = put_until_full(&store, 0).await;
        let mut out = std::io::stdout().lock();
        for n in acknowledged {
            writeln!(out, "ack {n}").unwrap();
        }
        writeln!(out, "full: {error}").unwrap();
        out.flush().unwrap();
        drop(out);
        std::thread::sleep(Duration::from_secs(3600));
    });
}

/// Runs the child on `dir` until the disk is full, kills it and returns what it acknowledged.
fn fill_in_a_child_and_kill_it(dir: &Path) -> Vec<u64> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "full_disk_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut acknowledged = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(n) = line.strip_prefix("ack ") {
            acknowledged.push(n.parse().unwrap());
        } else if line.starts_with("full: ") {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!acknowledged.is_empty(), "the child acknowledged nothing");
    acknowledged
}

/// The MiB an open refused for want of room says it needs.
fn needed_mib(error: &str) -> u64 {
    let (_, after) = error
        .split_once("needs about ")
        .unwrap_or_else(|| panic!("the error says how much room it needs: {error}"));
    after.split(' ').next().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_process_killed_on_a_full_disk_starts_again_in_place_or_says_how_much_room() {
    let Some(mut fs) = small_filesystem(48 << 20) else {
        return;
    };
    let dir: PathBuf = fs.path().join("store");
    // Less room than a checkpoint's worth of log: the log is not applied when it dies.
    fs.fill_leaving(12 << 20);
    let acknowledged = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || fill_in_a_child_and_kill_it(&dir)
    })
    .await
    .unwrap();
    fs.fill();

    let store = match Store::open_embedded(&dir, StoreOptions::default()) {
        Ok(store) => store,
        Err(error) => {
            let error = error.to_string();
            let needed = needed_mib(&error);
            assert!(error.contains("MiB are free"), "{error}");
            fs.release(needed << 20);
            Store::open_embedded(&dir, StoreOptions::default())
                .unwrap_or_else(|e| panic!("{needed} MiB were said to be enough: {e}"))
        }
    };
    check_acknowledged(&store, &acknowledged).await;
}
