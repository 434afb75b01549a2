//! Failed authentications, counted per login name and per client address over a sliding
//! window (`server.auto-ban.auth.rate`), in the store so that every replica sees the same
//! counts; past the limit, AUTH is refused without asking the server.
//!
//! Why here and not in the ingress: the ingress holds no state, and the `Authenticate` RPC
//! must be limited whoever calls it, or it is a password oracle that also fills the
//! server's pool and trips the server's own penalty for every user.
//!
//! The window is the last ten tenths of the period: each failure adds one, with the store's
//! atomic add (no read, so no conflict between replicas), to a counter per tenth
//! `(auth-failures, slot start, subject)`; a check sums the ten counters of a subject. Slots
//! come first in the key so that one range clear, made with every failure, removes every
//! subject's expired counters. Subjects are keyed hashes ([`subject_key`]): the store holds
//! no login name or address.
//!
//! Checking and counting are separate steps, as in Stalwart: attempts already in flight when
//! the limit is reached are still answered, so it may be passed by as many attempts as were
//! under way at once. A check that cannot read the store lets the attempt through (logged):
//! the store being down must not lock every user out.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use ferrymail_config::Config;
use ferrymail_config::model::queue_limits::Rate;
use ferrymail_store::{KeyRange, Store, StoreError};
use ferrymail_telemetry::LogLimit;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::cache_keys::subject_key;
use crate::sliding_window::Window;

/// Subspace of the counters.
const COUNTERS: &str = "auth-failures";
/// Most counters kept in a process without a store.
const LOCAL_CAPACITY: u64 = 100_000;

/// While the store fails, every attempt would log it: one line per 10 s says so.
static STORE_FAILURES: LogLimit = LogLimit::new(Duration::from_secs(10));

/// What a failure is counted against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    /// The login name, whatever the address (a distributed attack on one account).
    Login,
    /// The client address, whatever the login (one attacker trying many accounts).
    Address,
}

impl Kind {
    /// Metric label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Kind::Login => "login",
            Kind::Address => "address",
        }
    }
}

/// A login name or client address, as a keyed hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Subject {
    kind: Kind,
    digest: [u8; 16],
}

/// The limit and how subjects are named, from one configuration.
struct Settings {
    rate: Rate,
    key: Zeroizing<[u8; 32]>,
    /// The counters when there is no store: in this process only.
    local: moka::future::Cache<(u64, Subject), Arc<AtomicU64>>,
}

/// One authentication attempt's subjects, under the settings it started with.
pub(crate) struct Attempt {
    settings: Arc<Settings>,
    subjects: [Subject; 2],
}

/// The failure counters of this process, shared through `store` when there is one.
pub(crate) struct AuthFailures {
    /// `None` without a limit.
    settings: RwLock<Option<Arc<Settings>>>,
    store: Option<Store>,
}

impl AuthFailures {
    /// Counters for `config`, in `store` when given.
    pub(crate) fn new(store: Option<Store>, config: &Config) -> Self {
        let failures = Self {
            settings: RwLock::default(),
            store,
        };
        failures.apply(config);
        failures
    }

    /// Takes a new configuration: a changed rate or cache key starts new counts.
    pub(crate) fn apply(&self, config: &Config) {
        let rate = config.server.auto_ban_auth;
        let key = subject_key(config.cluster.cache_key.as_ref());
        let mut settings = self
            .settings
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let unchanged = match (&*settings, rate) {
            (Some(old), Some(rate)) => old.rate == rate && *old.key == *key,
            (None, None) => true,
            _ => false,
        };
        if unchanged {
            return;
        }
        *settings = rate.map(|rate| {
            Arc::new(Settings {
                rate,
                key,
                local: moka::future::Cache::builder()
                    .max_capacity(LOCAL_CAPACITY)
                    .time_to_live(rate.period)
                    .build(),
            })
        });
    }

    /// The attempt of `username` from `client`; `None` when there is no limit.
    pub(crate) fn attempt(&self, username: &str, client: IpAddr) -> Option<Attempt> {
        let settings = self
            .settings
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()?;
        let login = subject(&settings.key, Kind::Login, login_name(username).as_bytes())?;
        let address = subject(&settings.key, Kind::Address, &address_bytes(client))?;
        Some(Attempt {
            settings,
            subjects: [login, address],
        })
    }

    /// Which subject of `attempt` has reached the limit, if any.
    pub(crate) async fn blocked(&self, attempt: &Attempt) -> Option<Kind> {
        let window = Window::at(attempt.settings.rate.period, SystemTime::now());
        let counts = match &self.store {
            Some(store) => match stored_counts(store, &window, attempt.subjects).await {
                Ok(counts) => counts,
                Err(error) => {
                    if let Some(left_out) = STORE_FAILURES.admit() {
                        tracing::warn!(%error, left_out, "failed authentications cannot be counted; not limiting");
                    }
                    return None;
                }
            },
            None => {
                let [login, address] = attempt.subjects;
                [
                    local_count(&attempt.settings, &window, login).await,
                    local_count(&attempt.settings, &window, address).await,
                ]
            }
        };
        let limit = attempt.settings.rate.count;
        attempt
            .subjects
            .iter()
            .zip(counts)
            .find(|(_, count)| *count >= limit)
            .map(|(subject, _)| subject.kind)
    }

    /// Counts a failed authentication against both subjects of `attempt`.
    pub(crate) async fn record(&self, attempt: &Attempt) {
        let window = Window::at(attempt.settings.rate.period, SystemTime::now());
        let Some(store) = &self.store else {
            for subject in attempt.subjects {
                let counter = attempt
                    .settings
                    .local
                    .get_with((window.current(), subject), async {
                        Arc::new(AtomicU64::new(0))
                    })
                    .await;
                counter.fetch_add(1, Ordering::Relaxed);
            }
            return;
        };
        if let Err(error) = add(store, &window, attempt.subjects).await
            && let Some(left_out) = STORE_FAILURES.admit()
        {
            tracing::warn!(%error, left_out, "a failed authentication could not be counted");
        }
    }
}

/// A login name as counted: case and surrounding blanks do not make another account.
fn login_name(username: &str) -> String {
    username.trim().to_lowercase()
}

/// A client address as counted: IPv4 (also mapped into IPv6) as is, IPv6 by its /64, the
/// smallest network a client is usually given.
fn address_bytes(client: IpAddr) -> Vec<u8> {
    match client.to_canonical() {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets()[..8].to_vec(),
    }
}

fn subject(key: &[u8; 32], kind: Kind, value: &[u8]) -> Option<Subject> {
    // HMAC takes keys of any length; `None` cannot happen, and then nothing is limited.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).ok()?;
    mac.update(&[kind as u8]);
    mac.update(value);
    let full = mac.finalize().into_bytes();
    let mut digest = [0; 16];
    digest.copy_from_slice(&full[..16]);
    Some(Subject { kind, digest })
}

/// The store key of `subject`'s counter in the slot starting at `start`.
fn counter_key(store: &Store, start: u64, subject: Subject) -> Vec<u8> {
    store
        .root()
        .pack(&(COUNTERS, start, subject.digest.as_slice()))
}

/// The failures of each of `subjects` in `window`, from the store, in one transaction.
async fn stored_counts(
    store: &Store,
    window: &Window,
    subjects: [Subject; 2],
) -> Result<[u64; 2], StoreError> {
    let keys: Vec<Vec<Vec<u8>>> = subjects
        .iter()
        .map(|subject| {
            window
                .starts()
                .map(|start| counter_key(store, start, *subject))
                .collect()
        })
        .collect();
    store
        .transact(|tx| {
            let keys = keys.clone();
            Box::pin(async move {
                let mut totals = [0u64; 2];
                for (total, keys) in totals.iter_mut().zip(&keys) {
                    for key in keys {
                        if let Some(value) = tx.get(key).await? {
                            let count = ferrymail_store::decode_counter(&value);
                            *total = total.saturating_add(u64::try_from(count).unwrap_or(0));
                        }
                    }
                }
                Ok(totals)
            })
        })
        .await
}

/// The failures of `subject` in `window`, in this process.
async fn local_count(settings: &Settings, window: &Window, subject: Subject) -> u64 {
    let mut total: u64 = 0;
    for start in window.starts() {
        if let Some(counter) = settings.local.get(&(start, subject)).await {
            total = total.saturating_add(counter.load(Ordering::Relaxed));
        }
    }
    total
}

/// Adds one failure to each of `subjects` and clears every expired counter.
async fn add(store: &Store, window: &Window, subjects: [Subject; 2]) -> Result<(), StoreError> {
    let counters: Vec<Vec<u8>> = subjects
        .iter()
        .map(|subject| counter_key(store, window.current(), *subject))
        .collect();
    let (begin, _) = store.root().subspace(&(COUNTERS,)).range();
    let expired = KeyRange::new(begin, store.root().pack(&(COUNTERS, window.oldest())));
    store
        .transact(|tx| {
            let (counters, expired) = (counters.clone(), expired.clone());
            Box::pin(async move {
                // A count lost in a crash only gives an attacker one more try.
                tx.relax_durability();
                for counter in &counters {
                    tx.atomic_add(counter, 1)?;
                }
                tx.clear_range(&expired)
            })
        })
        .await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn logins_ignore_case_and_addresses_count_ipv6_by_64() {
        let key = [7; 32];
        let login = |name: &str| subject(&key, Kind::Login, login_name(name).as_bytes());
        assert_eq!(login("Alice@Example.org "), login("alice@example.org"));
        assert_ne!(login("alice@example.org"), login("bob@example.org"));
        let address = |ip: &str| subject(&key, Kind::Address, &address_bytes(ip.parse().unwrap()));
        assert_eq!(address("2001:db8:1:2::1"), address("2001:db8:1:2:ffff::9"));
        assert_ne!(address("2001:db8:1:2::1"), address("2001:db8:1:3::1"));
        assert_eq!(address("::ffff:192.0.2.1"), address("192.0.2.1"));
        assert_ne!(address("192.0.2.1"), address("192.0.2.2"));
        // A login and an address with the same bytes are different subjects.
        let as_login = subject(&key, Kind::Login, b"x").unwrap();
        let as_address = subject(&key, Kind::Address, b"x").unwrap();
        assert_ne!(as_login.digest, as_address.digest);
    }
}
