//! The PostgreSQL backend's own failure cases: the server going away and coming back, a
//! schema of another version, a refused login.

use std::time::{Duration, Instant};

use ferrymail_e2e::Postgres;
use ferrymail_store::{Store, StoreError, StoreOptions};

use crate::backends::{fresh_database, postgres, postgres_settings, settings_of};

fn few_retries() -> StoreOptions {
    let mut options = StoreOptions::default();
    options.retry.max_attempts = 3;
    options
}

async fn write(store: &Store, value: &'static [u8]) -> ferrymail_store::Result<()> {
    let k = store.root().pack(&("survivor",));
    store
        .transact(move |tx| {
            let k = k.clone();
            Box::pin(async move {
                tx.atomic_add(&k, 1)?;
                tx.set(&[k.as_slice(), b"-value"].concat(), value)
            })
        })
        .await
}

async fn read(store: &Store) -> ferrymail_store::Result<Option<Vec<u8>>> {
    let k = store.root().pack(&("survivor",));
    store
        .transact(move |tx| {
            let k = [k.as_slice(), b"-value"].concat();
            Box::pin(async move { tx.get(&k).await })
        })
        .await
}

/// Waits until the store reports the availability `wanted` (`true`: available).
async fn wait_for_availability(store: &Store, wanted: bool) {
    let mut availability = store.availability();
    let deadline = Instant::now() + Duration::from_secs(30);
    while availability.borrow_and_update().is_none() != wanted {
        assert!(
            Instant::now() < deadline,
            "availability never became {wanted}"
        );
        let _ = tokio::time::timeout(Duration::from_secs(1), availability.changed()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_that_stops_and_comes_back_is_used_again_without_reopening() {
    let mut cluster = tokio::task::block_in_place(Postgres::start);
    tokio::task::block_in_place(|| cluster.create_database("outage"));
    let store = Store::open_postgresql(&settings_of(&cluster, "outage"), few_retries())
        .await
        .unwrap();
    write(&store, b"before").await.unwrap();

    tokio::task::block_in_place(|| cluster.stop());
    let failed = write(&store, b"during").await;
    assert!(
        matches!(&failed, Err(StoreError::RetriesExhausted { last, .. }) if last.is_retryable()),
        "{failed:?}"
    );
    wait_for_availability(&store, false).await;
    let reason = store.availability().borrow().clone().unwrap_or_default();
    assert!(reason.contains("PostgreSQL"), "{reason}");

    tokio::task::block_in_place(|| cluster.restart());
    wait_for_availability(&store, true).await;
    write(&store, b"after").await.unwrap();
    assert_eq!(read(&store).await.unwrap().as_deref(), Some(&b"after"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_down_at_opening_is_reported_unavailable_and_used_once_up() {
    let mut cluster = tokio::task::block_in_place(Postgres::start);
    tokio::task::block_in_place(|| cluster.create_database("late"));
    tokio::task::block_in_place(|| cluster.stop());
    let store = Store::open_postgresql(&settings_of(&cluster, "late"), few_retries())
        .await
        .unwrap();
    assert!(store.availability().borrow().is_some());
    let failed = write(&store, b"early").await;
    assert!(
        matches!(&failed, Err(StoreError::RetriesExhausted { last, .. }) if matches!(**last, StoreError::Disconnected(_))),
        "{failed:?}"
    );
    tokio::task::block_in_place(|| cluster.restart());
    wait_for_availability(&store, true).await;
    write(&store, b"late").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_schema_of_another_version_refuses_the_opening_naming_both() {
    let database = tokio::task::block_in_place(fresh_database);
    let settings = postgres_settings(&database);
    drop(
        Store::open_postgresql(&settings, StoreOptions::default())
            .await
            .unwrap(),
    );
    tokio::task::block_in_place(|| {
        postgres().sql(
            &database,
            "UPDATE ferrymail.meta SET value = 99 WHERE name = 'schema_version'",
        )
    });
    let refused = Store::open_postgresql(&settings, StoreOptions::default()).await;
    let error = refused.expect_err("a schema of version 99 is refused");
    assert!(
        matches!(
            error,
            StoreError::IncompatibleSchema {
                found: 99,
                expected: 1
            }
        ),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("99") && message.contains('1'), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wrong_password_refuses_the_opening_saying_so() {
    let database = tokio::task::block_in_place(fresh_database);
    let mut settings = postgres_settings(&database);
    settings.password = Some("not-the-password".into());
    let error = Store::open_postgresql(&settings, StoreOptions::default())
        .await
        .expect_err("a wrong password is refused");
    let message = error.to_string();
    assert!(
        message.contains("refused the login") && message.contains("password authentication failed"),
        "{message}"
    );
    assert!(!message.contains("not-the-password"), "{message}");
    assert!(!format!("{settings:?}").contains("not-the-password"));
}

/// A client configuration trusting only `ca_der`.
fn trusting(ca_der: &[u8]) -> std::sync::Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(ca_der.to_vec()))
        .unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    std::sync::Arc::new(config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tls_to_a_trusted_server_works_and_an_untrusted_one_refuses_the_opening() {
    let mut cluster = tokio::task::block_in_place(Postgres::start);
    tokio::task::block_in_place(|| cluster.create_database("tls"));
    let certificates = tokio::task::block_in_place(|| cluster.enable_tls());
    let mut settings = settings_of(&cluster, "tls");
    settings.tls = Some(trusting(&certificates.ca_der));
    let store = Store::open_postgresql(&settings, StoreOptions::default())
        .await
        .unwrap();
    write(&store, b"over tls").await.unwrap();
    let encrypted = tokio::task::block_in_place(|| {
        cluster.sql(
            "postgres",
            "SELECT bool_and(ssl) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
             WHERE datname = 'tls'",
        )
    });
    assert_eq!(encrypted, "t", "every connection of the store is encrypted");

    // Another CA: the handshake fails, and that is not a server that is merely away.
    let other = tempfile::tempdir().unwrap();
    let stranger = ferrymail_e2e::TestCertificates::generate(other.path());
    settings.tls = Some(trusting(&stranger.ca_der));
    let error = Store::open_postgresql(&settings, StoreOptions::default())
        .await
        .expect_err("an untrusted certificate is refused");
    let message = error.to_string();
    assert!(
        matches!(error, StoreError::Storage(_)) && message.contains("certificate"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tls_to_a_server_without_it_refuses_the_opening() {
    let database = tokio::task::block_in_place(fresh_database);
    let mut settings = postgres_settings(&database);
    let dir = tempfile::tempdir().unwrap();
    let certificates = ferrymail_e2e::TestCertificates::generate(dir.path());
    settings.tls = Some(trusting(&certificates.ca_der));
    let error = Store::open_postgresql(&settings, StoreOptions::default())
        .await
        .expect_err("no TLS, no connection");
    let message = error.to_string();
    assert!(message.contains("TLS"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pool_of_one_connection_serves_concurrent_transactions_in_turn() {
    // Each transaction holds its connection until it ends, the discarded run of the
    // double-run mode included: with one, they take turns, and the store stays available.
    let database = tokio::task::block_in_place(fresh_database);
    let mut settings = postgres_settings(&database);
    settings.max_connections = 1;
    let options = StoreOptions {
        run_closures_twice: true,
        ..StoreOptions::default()
    };
    let store = Store::open_postgresql(&settings, options).await.unwrap();
    let k = store.root().pack(&("turns",));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (store, k) = (store.clone(), k.clone());
            tokio::spawn(async move {
                for _ in 0..5 {
                    store
                        .transact(|tx| {
                            let k = k.clone();
                            Box::pin(async move {
                                let _ = tx.get(&k).await?;
                                tx.atomic_add(&k, 1)
                            })
                        })
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let total = store
        .transact(|tx| {
            let k = k.clone();
            Box::pin(async move { tx.get(&k).await })
        })
        .await
        .unwrap()
        .map(|v| ferrymail_store::decode_counter(&v));
    assert_eq!(total, Some(40));
    assert!(store.availability().borrow().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_atomic_adds_never_conflict() {
    // Applied to the latest value at commit, as FoundationDB applies them: no retry needed,
    // where PostgreSQL's own serializable updates of one row would abort all but one.
    let database = tokio::task::block_in_place(fresh_database);
    let mut options = StoreOptions::default();
    options.retry.max_attempts = 1;
    let store = Store::open_postgresql(&postgres_settings(&database), options)
        .await
        .unwrap();
    let k = store.root().pack(&("hot",));
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(8));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (store, k, barrier) = (store.clone(), k.clone(), barrier.clone());
            tokio::spawn(async move {
                store
                    .transact(|tx| {
                        let (k, barrier) = (k.clone(), barrier.clone());
                        Box::pin(async move {
                            barrier.wait().await;
                            tx.atomic_add(&k, 1)?;
                            tx.compare_and_clear(&[k.as_slice(), b"-lease"].concat(), b"x")
                        })
                    })
                    .await
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let total = store
        .transact(|tx| {
            let k = k.clone();
            Box::pin(async move { tx.get(&k).await })
        })
        .await
        .unwrap()
        .map(|v| ferrymail_store::decode_counter(&v));
    assert_eq!(total, Some(8));
}
