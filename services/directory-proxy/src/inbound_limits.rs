//! The counters of the inbound limiters (`queue.limiter.inbound.<id>`), in the store so
//! that every ingress pod takes from the same ones.
//!
//! Rates use the sliding window of the auth-failure counters ([`Window`]): a counter per
//! tenth of the period under `(inbound-rates, limiter, slot start, subject)`. Taking reads
//! the window's counters and, below the limit, adds one to the current slot with the
//! store's atomic add; the expired slots of the limiter are cleared in the same transaction,
//! so nothing outlives its window. Two pods taking from the same subject at once conflict
//! on the current slot and one retries: the count stays exact.
//!
//! Concurrency slots are leases: `(inbound-slots, limiter, subject, slot) → deadline`. A
//! holder renews its slot (taking it again) while its session lives and clears it at the
//! end; a pod that dies stops renewing, and its slots stop counting at their deadline.
//! Taking clears the expired slots of its subject; a sweep, started at most once a minute
//! by a take, clears those of subjects nobody asks about any more.
//!
//! Subjects are keyed hashes of the limiter's key values: the store holds no address.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferrymail_config::Config;
use ferrymail_rpc::directory::{LimitAnswer, LimitKey, RateRequest, SlotRequest};
use ferrymail_store::{KeyRange, Store, StoreError};
use futures::StreamExt;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::cache_keys::subject_key;
use crate::sliding_window::{SLOTS, Window};

/// Subspace of the rate counters.
const RATES: &str = "inbound-rates";
/// Subspace of the concurrency slots.
const LEASES: &str = "inbound-slots";
/// How often, at most, expired slots of every subject are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// Slots read per transaction by the sweep.
const SWEEP_PAGE: usize = 500;

/// Why a limiter could not be taken from.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LimitError {
    /// There is no shared store to count in.
    #[error("no store to count in (storage.data is not set)")]
    NoStore,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The inbound limiters' counters of this process, in the shared store.
pub(crate) struct InboundCounters {
    store: Option<Store>,
    key: RwLock<Zeroizing<[u8; 32]>>,
    /// Limiter ids of the configuration in force: a removed one's counters are cleared.
    limiters: RwLock<Vec<String>>,
    /// When the last sweep started, in Unix milliseconds.
    last_sweep: Arc<AtomicU64>,
}

impl InboundCounters {
    /// Counters in `store`, named under `config`'s cache key.
    pub(crate) fn new(store: Option<Store>, config: &Config) -> Self {
        Self {
            store,
            key: RwLock::new(subject_key(config.cluster.cache_key.as_ref())),
            limiters: RwLock::new(config.queue.inbound_limiters.keys().cloned().collect()),
            last_sweep: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Takes a new configuration: a changed cache key names new subjects (the old counters
    /// expire with their windows and leases), and a removed limiter's counters are cleared.
    pub(crate) async fn apply(&self, config: &Config) {
        *self
            .key
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            subject_key(config.cluster.cache_key.as_ref());
        let ids: Vec<String> = config.queue.inbound_limiters.keys().cloned().collect();
        let removed: Vec<String> = {
            let mut limiters = self
                .limiters
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let removed = limiters
                .iter()
                .filter(|id| !ids.contains(id))
                .cloned()
                .collect();
            *limiters = ids;
            removed
        };
        let Some(store) = &self.store else { return };
        for limiter in removed {
            if let Err(error) = clear_limiter(store, &limiter).await {
                tracing::warn!(%error, %limiter, "the counters of a removed inbound limiter could not be cleared");
            }
        }
    }

    fn subject(&self, key: &LimitKey) -> [u8; 16] {
        let secret = self
            .key
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        subject(&secret, key)
    }

    fn store(&self) -> Result<&Store, LimitError> {
        self.store.as_ref().ok_or(LimitError::NoStore)
    }

    /// Takes one event from a rate: admitted and counted below the limit.
    pub(crate) async fn take_rate(&self, request: &RateRequest) -> Result<LimitAnswer, LimitError> {
        self.take_rate_at(request, SystemTime::now()).await
    }

    /// [`take_rate`](Self::take_rate) at `now`.
    async fn take_rate_at(
        &self,
        request: &RateRequest,
        now: SystemTime,
    ) -> Result<LimitAnswer, LimitError> {
        let store = self.store()?;
        let subject = self.subject(&request.key);
        let window = Window::at(request.period, now);
        let limiter = request.key.limiter.as_str();
        let counters: Vec<(u64, Vec<u8>)> = window
            .starts()
            .map(|start| (start, rate_key(store, limiter, start, &subject)))
            .collect();
        let current = rate_key(store, limiter, window.current(), &subject);
        let expired = KeyRange::new(
            store.root().subspace(&(RATES, limiter)).range().0,
            store.root().pack(&(RATES, limiter, window.oldest())),
        );
        let (count, slot_ms) = (request.count, window.slot_ms);
        let now_ms = unix_ms(now);
        store
            .transact(|tx| {
                let (counters, current, expired) =
                    (counters.clone(), current.clone(), expired.clone());
                Box::pin(async move {
                    let mut total: u64 = 0;
                    let mut first_used = None;
                    for (start, key) in &counters {
                        let Some(value) = tx.get(key).await? else {
                            continue;
                        };
                        let n = u64::try_from(ferrymail_store::decode_counter(&value)).unwrap_or(0);
                        if n > 0 {
                            first_used.get_or_insert(*start);
                        }
                        total = total.saturating_add(n);
                    }
                    tx.clear_range(&expired)?;
                    if total >= count {
                        // The oldest used slot leaves the window a whole window after it began.
                        let frees = first_used.map_or(now_ms, |s| s + slot_ms * SLOTS);
                        return Ok(LimitAnswer::Refused {
                            retry_after: Duration::from_millis(frees.saturating_sub(now_ms)),
                        });
                    }
                    // A count lost in a crash only lets one more event through.
                    tx.relax_durability();
                    tx.atomic_add(&current, 1)?;
                    Ok(LimitAnswer::Admitted)
                })
            })
            .await
            .map_err(LimitError::from)
    }

    /// Takes or renews the slot `request.slot`: admitted while fewer than `max` other live
    /// slots of the subject exist, or when the caller already holds it.
    pub(crate) async fn take_slot(&self, request: &SlotRequest) -> Result<LimitAnswer, LimitError> {
        let store = self.store()?;
        self.maybe_sweep(store);
        self.take_slot_at(request, SystemTime::now()).await
    }

    /// [`take_slot`](Self::take_slot) at `now`, without a sweep.
    async fn take_slot_at(
        &self,
        request: &SlotRequest,
        now: SystemTime,
    ) -> Result<LimitAnswer, LimitError> {
        let store = self.store()?;
        let subject = self.subject(&request.key);
        let limiter = request.key.limiter.as_str();
        let range = store
            .root()
            .subspace(&(LEASES, limiter, subject.as_slice()))
            .range();
        let range = KeyRange::new(range.0, range.1);
        let mine = slot_key(store, limiter, &subject, &request.slot);
        let now_ms = unix_ms(now);
        let deadline =
            now_ms.saturating_add(u64::try_from(request.lease.as_millis()).unwrap_or(u64::MAX));
        let max = u64::from(request.max);
        store
            .transact(|tx| {
                let (range, mine) = (range.clone(), mine.clone());
                Box::pin(async move {
                    let mut live: u64 = 0;
                    let mut held = false;
                    let mut earliest = u64::MAX;
                    for pair in tx.get_all(&range, 1000).await? {
                        let ends = decode_deadline(&pair.value);
                        if ends <= now_ms {
                            tx.clear(&pair.key)?;
                        } else if pair.key == mine {
                            held = true;
                        } else {
                            live += 1;
                            earliest = earliest.min(ends);
                        }
                    }
                    if !held && live >= max {
                        return Ok(LimitAnswer::Refused {
                            retry_after: Duration::from_millis(earliest.saturating_sub(now_ms)),
                        });
                    }
                    tx.set(&mine, &deadline.to_be_bytes())?;
                    Ok(LimitAnswer::Admitted)
                })
            })
            .await
            .map_err(LimitError::from)
    }

    /// Gives a slot back.
    pub(crate) async fn release_slot(&self, key: &LimitKey, slot: &str) -> Result<(), LimitError> {
        let store = self.store()?;
        let mine = slot_key(store, &key.limiter, &self.subject(key), slot);
        store
            .transact(|tx| {
                let mine = mine.clone();
                Box::pin(async move { tx.clear(&mine) })
            })
            .await
            .map_err(LimitError::from)
    }

    /// Starts a sweep of expired slots when none started within [`SWEEP_EVERY`].
    fn maybe_sweep(&self, store: &Store) {
        let now_ms = unix_ms(SystemTime::now());
        let last = self.last_sweep.load(Ordering::Relaxed);
        let every = u64::try_from(SWEEP_EVERY.as_millis()).unwrap_or(u64::MAX);
        if now_ms.saturating_sub(last) < every
            || self
                .last_sweep
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let store = store.clone();
        tokio::spawn(async move {
            if let Err(error) = sweep(&store, now_ms).await {
                tracing::warn!(%error, "expired inbound limiter slots could not be swept");
            }
        });
    }
}

/// Clears every slot whose lease ended before `now_ms`; a slot renewed meanwhile is kept
/// (compare-and-clear on the deadline read).
pub(crate) async fn sweep(store: &Store, now_ms: u64) -> Result<(), StoreError> {
    let (begin, end) = store.root().subspace(&(LEASES,)).range();
    let mut pairs = std::pin::pin!(store.scan(KeyRange::new(begin, end), SWEEP_PAGE));
    let mut expired = Vec::new();
    while let Some(pair) = pairs.next().await {
        let pair = pair?;
        if decode_deadline(&pair.value) <= now_ms {
            expired.push(pair);
        }
    }
    for batch in expired.chunks(SWEEP_PAGE) {
        store
            .transact(|tx| {
                let batch = batch.to_vec();
                Box::pin(async move {
                    for pair in &batch {
                        tx.compare_and_clear(&pair.key, &pair.value)?;
                    }
                    Ok(())
                })
            })
            .await?;
    }
    Ok(())
}

/// Clears every counter and slot of `limiter`.
async fn clear_limiter(store: &Store, limiter: &str) -> Result<(), StoreError> {
    let rates = store.root().subspace(&(RATES, limiter)).range();
    let slots = store.root().subspace(&(LEASES, limiter)).range();
    let ranges = [
        KeyRange::new(rates.0, rates.1),
        KeyRange::new(slots.0, slots.1),
    ];
    store
        .transact(|tx| {
            let ranges = ranges.clone();
            Box::pin(async move {
                for range in &ranges {
                    tx.clear_range(range)?;
                }
                Ok(())
            })
        })
        .await
}

fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A slot's deadline; a value this code did not write counts as expired.
fn decode_deadline(value: &[u8]) -> u64 {
    <[u8; 8]>::try_from(value).map_or(0, u64::from_be_bytes)
}

/// The keyed hash of a limiter's id and key values: each value is length-prefixed, so no
/// two different lists of values hash alike.
fn subject(secret: &[u8; 32], key: &LimitKey) -> [u8; 16] {
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(secret) else {
        // HMAC takes keys of any length: this cannot happen.
        return [0; 16];
    };
    mac.update(b"inbound limiter\0");
    for part in std::iter::once(&key.limiter).chain(&key.values) {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part.as_bytes());
    }
    let full = mac.finalize().into_bytes();
    let mut digest = [0; 16];
    digest.copy_from_slice(&full[..16]);
    digest
}

fn rate_key(store: &Store, limiter: &str, start: u64, subject: &[u8; 16]) -> Vec<u8> {
    store
        .root()
        .pack(&(RATES, limiter, start, subject.as_slice()))
}

fn slot_key(store: &Store, limiter: &str, subject: &[u8; 16], slot: &str) -> Vec<u8> {
    store
        .root()
        .pack(&(LEASES, limiter, subject.as_slice(), slot))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use ferrymail_store::StoreOptions;

    use super::*;

    fn config() -> Config {
        ferrymail_config::load_str(
            "t.toml",
            "[server]\nhostname = \"mx.example.org\"\n\
             [queue.limiter.inbound.ip]\nkey = [\"remote-ip\"]\nrate = \"3/1m\"\n",
        )
        .unwrap()
    }

    /// Two pods' counters on one embedded store that runs every closure twice.
    fn pods() -> (tempfile::TempDir, Store, InboundCounters, InboundCounters) {
        let dir = tempfile::tempdir().unwrap();
        let options = StoreOptions {
            run_closures_twice: true,
            ..StoreOptions::default()
        };
        let store = Store::open_embedded(dir.path(), options).unwrap();
        let config = config();
        let one = InboundCounters::new(Some(store.clone()), &config);
        let two = InboundCounters::new(Some(store.clone()), &config);
        (dir, store, one, two)
    }

    fn key(ip: &str) -> LimitKey {
        LimitKey {
            limiter: "ip".into(),
            values: vec![ip.into()],
        }
    }

    fn rate(ip: &str) -> RateRequest {
        RateRequest {
            key: key(ip),
            count: 3,
            period: Duration::from_secs(60),
        }
    }

    fn slot(ip: &str, name: &str) -> SlotRequest {
        SlotRequest {
            key: key(ip),
            max: 2,
            lease: Duration::from_secs(30),
            slot: name.into(),
        }
    }

    async fn keys_under(store: &Store, space: &str) -> Vec<Vec<u8>> {
        let (begin, end) = store.root().subspace(&(space,)).range();
        let pairs: Vec<_> = store
            .scan(KeyRange::new(begin, end), 100)
            .collect::<Vec<_>>()
            .await;
        pairs.into_iter().map(|p| p.unwrap().key).collect()
    }

    fn refused(answer: LimitAnswer) -> Option<Duration> {
        match answer {
            LimitAnswer::Admitted => None,
            LimitAnswer::Refused { retry_after } => Some(retry_after),
        }
    }

    #[tokio::test]
    async fn a_rate_is_shared_by_every_pod_and_frees_with_its_window() {
        let (_dir, store, one, two) = pods();
        let start = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let at = |secs: u64| start + Duration::from_secs(secs);
        assert_eq!(
            one.take_rate_at(&rate("192.0.2.1"), at(0)).await.unwrap(),
            LimitAnswer::Admitted
        );
        assert_eq!(
            two.take_rate_at(&rate("192.0.2.1"), at(1)).await.unwrap(),
            LimitAnswer::Admitted
        );
        assert_eq!(
            one.take_rate_at(&rate("192.0.2.1"), at(2)).await.unwrap(),
            LimitAnswer::Admitted
        );
        let wait = refused(two.take_rate_at(&rate("192.0.2.1"), at(3)).await.unwrap())
            .expect("the fourth event in the period is refused, whichever pod asks");
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(60),
            "{wait:?}"
        );
        // Another address has a counter of its own.
        assert_eq!(
            two.take_rate_at(&rate("192.0.2.2"), at(3)).await.unwrap(),
            LimitAnswer::Admitted
        );
        // Once the first events left the window, the address is admitted again.
        assert_eq!(
            one.take_rate_at(&rate("192.0.2.1"), at(61)).await.unwrap(),
            LimitAnswer::Admitted
        );
        // Long after, the expired counters of the limiter are gone: only the new one is left.
        assert_eq!(
            one.take_rate_at(&rate("192.0.2.1"), at(600)).await.unwrap(),
            LimitAnswer::Admitted
        );
        assert_eq!(keys_under(&store, RATES).await.len(), 1);
    }

    #[tokio::test]
    async fn the_store_holds_no_address() {
        let (_dir, store, one, _) = pods();
        one.take_rate(&rate("192.0.2.77")).await.unwrap();
        one.take_slot(&slot("192.0.2.77", "s1")).await.unwrap();
        for space in [RATES, LEASES] {
            for key in keys_under(&store, space).await {
                assert!(!key.windows(10).any(|w| w == b"192.0.2.77"), "{space}");
            }
        }
    }

    #[tokio::test]
    async fn slots_are_shared_renewed_released_and_expire_with_a_dead_holder() {
        let (_dir, store, one, two) = pods();
        let start = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let at = |secs: u64| start + Duration::from_secs(secs);
        let ip = "2001:db8::1";
        assert_eq!(
            one.take_slot_at(&slot(ip, "a"), at(0)).await.unwrap(),
            LimitAnswer::Admitted
        );
        assert_eq!(
            two.take_slot_at(&slot(ip, "b"), at(0)).await.unwrap(),
            LimitAnswer::Admitted
        );
        let wait = refused(two.take_slot_at(&slot(ip, "c"), at(1)).await.unwrap())
            .expect("a third slot is refused");
        assert_eq!(
            wait,
            Duration::from_secs(29),
            "until the earliest lease ends"
        );
        // Renewing a held slot is not a new one.
        assert_eq!(
            one.take_slot_at(&slot(ip, "a"), at(10)).await.unwrap(),
            LimitAnswer::Admitted
        );
        // A released slot frees at once.
        two.release_slot(&key(ip), "b").await.unwrap();
        assert_eq!(
            two.take_slot_at(&slot(ip, "c"), at(11)).await.unwrap(),
            LimitAnswer::Admitted
        );
        assert!(refused(two.take_slot_at(&slot(ip, "d"), at(12)).await.unwrap()).is_some());
        // Pod one dies: "a" is not renewed after 10 s, so it stops counting at 40 s ("c" at 41).
        assert!(refused(two.take_slot_at(&slot(ip, "d"), at(39)).await.unwrap()).is_some());
        assert_eq!(
            two.take_slot_at(&slot(ip, "d"), at(40)).await.unwrap(),
            LimitAnswer::Admitted
        );
        assert_eq!(
            keys_under(&store, LEASES).await.len(),
            2,
            "the dead slot was cleared"
        );
    }

    #[tokio::test]
    async fn the_sweep_clears_expired_slots_nobody_asks_about() {
        let (_dir, store, one, _) = pods();
        let now = SystemTime::now();
        one.take_slot_at(&slot("192.0.2.1", "a"), now)
            .await
            .unwrap();
        one.take_slot_at(&slot("192.0.2.2", "b"), now + Duration::from_secs(20))
            .await
            .unwrap();
        sweep(&store, unix_ms(now + Duration::from_secs(31)))
            .await
            .unwrap();
        assert_eq!(
            keys_under(&store, LEASES).await.len(),
            1,
            "only the live slot is left"
        );
    }

    #[tokio::test]
    async fn a_removed_limiter_leaves_nothing_behind() {
        let (_dir, store, one, _) = pods();
        one.take_rate(&rate("192.0.2.1")).await.unwrap();
        one.take_slot(&slot("192.0.2.1", "a")).await.unwrap();
        let without =
            ferrymail_config::load_str("t.toml", "[server]\nhostname = \"mx.example.org\"\n")
                .unwrap();
        one.apply(&without).await;
        assert!(keys_under(&store, RATES).await.is_empty());
        assert!(keys_under(&store, LEASES).await.is_empty());
    }

    #[tokio::test]
    async fn without_a_store_nothing_is_counted_and_callers_are_told() {
        let counters = InboundCounters::new(None, &config());
        assert!(matches!(
            counters.take_rate(&rate("192.0.2.1")).await,
            Err(LimitError::NoStore)
        ));
    }
}
