//! Two-level lookup cache: an in-process LRU per target, and a cache in the store shared by
//! every directory-proxy replica (a restarted pod starts warm).
//!
//! Entries are named by an HMAC of the question and their shared values are sealed, both
//! under keys derived from `cluster.cache-key` ([`crate::cache_keys`]), which never enters
//! the store: a copy of the store holds no password, user or address, and nothing that can
//! be matched against a guess without the key. A wrong password hashes to another entry,
//! so it can never be answered "yes" from the cache. Positive answers live
//! `cache.ttl.positive`, negative ones `cache.ttl.negative`; temporary failures are never
//! cached. Shared entries live under their key's id: a changed key finds none of them, and
//! the entries of other keys are cleared when a key is taken. Without `cluster.cache-key`,
//! answers are cached in this process only.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ferrymail_config::Secret;
use ferrymail_rpc::directory::{Answer, Expansion, RemoteReply, Verdict};
use ferrymail_store::{KeyRange, Store, StoreError};
use ferrymail_telemetry::LogLimit;

use crate::cache_keys::{CacheKeys, Digest, KEY_ID_LEN, SharedKey};
use crate::target::Target;

/// While the store fails, every lookup would log its failure: one line per 10 s says so.
static STORE_FAILURES: LogLimit = LogLimit::new(Duration::from_secs(10));

/// A question whose answer may be cached.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Question<'a> {
    /// Credentials (only their HMAC is ever kept).
    Auth { username: &'a str, secret: &'a [u8] },
    /// Does this recipient exist?
    Rcpt(&'a str),
    /// VRFY.
    Vrfy(&'a str),
    /// EXPN.
    Expn(&'a str),
}

impl Question<'_> {
    fn parts(&self) -> (u8, &[u8], &[u8]) {
        match self {
            Question::Auth { username, secret } => (1, username.as_bytes(), secret),
            Question::Rcpt(address) => (2, address.as_bytes(), b""),
            Question::Vrfy(address) => (3, address.as_bytes(), b""),
            Question::Expn(address) => (4, address.as_bytes(), b""),
        }
    }
}

/// An answer worth caching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cached {
    /// AUTH or RCPT: yes or no.
    Answer(Answer),
    /// VRFY or EXPN: found, not found or cannot tell.
    Expansion(Expansion),
}

impl Cached {
    /// How long it may be cached; `None` for temporary failures.
    fn ttl(&self, target: &Target) -> Option<Duration> {
        let (positive, negative) = (target.cache.ttl_positive, target.cache.ttl_negative);
        match self {
            Cached::Answer(a) => match a.verdict {
                Verdict::Yes => Some(positive),
                Verdict::No => Some(negative),
                // A full or disabled mailbox may take mail again at any moment; a blocked
                // login was never asked.
                Verdict::Refused | Verdict::TemporaryFailure | Verdict::Blocked => None,
            },
            Cached::Expansion(Expansion::Found { .. }) => Some(positive),
            Cached::Expansion(Expansion::NotFound { .. } | Expansion::CannotTell { .. }) => {
                Some(negative)
            }
            Cached::Expansion(Expansion::TemporaryFailure { .. }) => None,
        }
    }
}

#[derive(Clone)]
struct LocalEntry {
    value: Cached,
    expires: Instant,
}

/// Which level answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    Local,
    Shared,
}

/// The cache of every target.
pub(crate) struct LookupCache {
    keys: RwLock<Arc<CacheKeys>>,
    local: RwLock<HashMap<String, moka::future::Cache<Digest, LocalEntry>>>,
    shared: Option<Store>,
}

/// Subspace of shared entries: `(ENTRIES, key id, target, digest)`.
const ENTRIES: &str = "lookup-cache";
/// Where earlier versions kept the HMAC key, in the store itself: removed at start.
const LEGACY_KEY_NAME: &str = "directory-cache-key";
/// Where earlier versions kept their entries, under that key: removed at start.
const LEGACY_ENTRIES: &str = "directory-cache";

impl LookupCache {
    /// A cache whose shared level is `store`, used when `cache_key` is given. What earlier
    /// versions kept in the store (their key and entries) is removed, and so are entries
    /// written under another key.
    pub(crate) async fn open(
        store: Option<Store>,
        cache_key: Option<&Secret>,
    ) -> Result<Self, StoreError> {
        let keys = CacheKeys::new(cache_key);
        if let Some(store) = &store {
            remove_legacy(store).await?;
            match keys.id() {
                Some(id) => clear_other_keys(store, id).await?,
                None => tracing::warn!(
                    "cluster.cache-key is not set: the shared lookup cache in the store is not \
                     used, answers are cached in this process only"
                ),
            }
        }
        Ok(Self {
            keys: RwLock::new(Arc::new(keys)),
            local: RwLock::default(),
            shared: store,
        })
    }

    fn keys(&self) -> Arc<CacheKeys> {
        self.keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Takes `cluster.cache-key` from a new configuration. A changed key empties the cache:
    /// this process forgets what it cached, and the store's entries of other keys are
    /// cleared. Returns whether the key changed.
    pub(crate) async fn rekey(&self, cache_key: Option<&Secret>) -> bool {
        let new = CacheKeys::new(cache_key);
        let old = self.keys();
        if new.id() == old.id() {
            return false;
        }
        let id = new.id();
        *self
            .keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(new);
        self.local
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
        match (&self.shared, id) {
            (Some(store), Some(id)) => {
                tracing::info!("cluster.cache-key changed: the lookup cache is emptied");
                if let Err(error) = clear_other_keys(store, id).await {
                    tracing::warn!(%error, "could not clear the entries of the previous cluster.cache-key");
                }
            }
            (Some(_), None) => tracing::warn!(
                "cluster.cache-key was removed: the shared lookup cache in the store is no \
                 longer used, answers are cached in this process only"
            ),
            (None, _) => {}
        }
        true
    }

    /// The entry name of a question under the current keys.
    fn digest(keys: &CacheKeys, target: &str, question: &Question<'_>) -> Option<Digest> {
        let (kind, first, second) = question.parts();
        keys.digest(&[target.as_bytes(), &[kind], first, second])
    }

    fn local_cache(&self, target: &Target) -> Option<moka::future::Cache<Digest, LocalEntry>> {
        if target.cache.entries == 0 {
            return None;
        }
        if let Some(cache) = self
            .local
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&target.name)
        {
            return Some(cache.clone());
        }
        let mut all = self
            .local
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let cache = all
            .entry(target.name.clone())
            .or_insert_with(|| {
                moka::future::Cache::builder()
                    .max_capacity(target.cache.entries)
                    .build()
            })
            .clone();
        Some(cache)
    }

    /// The cached answer, and the level that had it.
    pub(crate) async fn get(
        &self,
        target: &Target,
        question: &Question<'_>,
    ) -> Option<(Cached, Level)> {
        let keys = self.keys();
        let digest = Self::digest(&keys, &target.name, question)?;
        let local = self.local_cache(target);
        if let Some(cache) = &local
            && let Some(entry) = cache.get(&digest).await
        {
            if entry.expires > Instant::now() {
                return Some((entry.value, Level::Local));
            }
            cache.invalidate(&digest).await;
        }
        let (store, shared) = (self.shared.as_ref()?, keys.shared()?);
        let key = entry_key(store, shared.id, &target.name, &digest);
        let read = store
            .transact(|tx| {
                let key = key.clone();
                Box::pin(async move { tx.get(&key).await })
            })
            .await;
        let raw = match read {
            Ok(raw) => raw?,
            Err(error) => {
                if let Some(left_out) = STORE_FAILURES.admit() {
                    tracing::warn!(target = %target.name, %error, left_out, "shared lookup cache unavailable; asking the server");
                }
                return None;
            }
        };
        let (value, expires_at) = unseal(shared, &key, &raw)?;
        let left = expires_at.duration_since(SystemTime::now()).ok()?;
        if let Some(cache) = local {
            cache
                .insert(
                    digest,
                    LocalEntry {
                        value: value.clone(),
                        expires: Instant::now() + left,
                    },
                )
                .await;
        }
        Some((value, Level::Shared))
    }

    /// Caches an answer at both levels (temporary failures are ignored).
    pub(crate) async fn put(&self, target: &Target, question: &Question<'_>, value: &Cached) {
        let Some(ttl) = value.ttl(target) else { return };
        if ttl.is_zero() {
            return;
        }
        let keys = self.keys();
        let Some(digest) = Self::digest(&keys, &target.name, question) else {
            return;
        };
        if let Some(cache) = self.local_cache(target) {
            cache
                .insert(
                    digest,
                    LocalEntry {
                        value: value.clone(),
                        expires: Instant::now() + ttl,
                    },
                )
                .await;
        }
        let (Some(store), Some(shared)) = (&self.shared, keys.shared()) else {
            return;
        };
        let key = entry_key(store, shared.id, &target.name, &digest);
        let Some(sealed) = seal(shared, &key, value, SystemTime::now() + ttl) else {
            return;
        };
        let written = store
            .transact(|tx| {
                let (key, sealed) = (key.clone(), sealed.clone());
                Box::pin(async move {
                    // A cache: an entry lost in a crash is asked of the server again.
                    tx.relax_durability();
                    tx.set(&key, &sealed)
                })
            })
            .await;
        if let Err(error) = written
            && let Some(left_out) = STORE_FAILURES.admit()
        {
            tracing::warn!(target = %target.name, %error, left_out, "could not write the shared lookup cache");
        }
    }

    /// Forgets everything cached for `target` (its configuration changed).
    pub(crate) async fn flush(&self, target: &str) {
        self.local
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(target);
        let (Some(store), Some(id)) = (&self.shared, self.keys().id()) else {
            return;
        };
        let (begin, end) = store
            .root()
            .subspace(&(ENTRIES, id.as_slice(), target))
            .range();
        if let Err(error) = clear(store, vec![KeyRange::new(begin, end)]).await {
            tracing::warn!(%target, %error, "could not flush the shared lookup cache");
        }
    }
}

/// The store key of an entry.
fn entry_key(store: &Store, id: [u8; KEY_ID_LEN], target: &str, digest: &Digest) -> Vec<u8> {
    store
        .root()
        .pack(&(ENTRIES, id.as_slice(), target, digest.as_slice()))
}

/// Clears `ranges` in one transaction.
async fn clear(store: &Store, ranges: Vec<KeyRange>) -> Result<(), StoreError> {
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

/// Removes the HMAC key earlier versions kept in the store, and the entries it keyed: with
/// the key beside them, they could be matched against guesses.
async fn remove_legacy(store: &Store) -> Result<(), StoreError> {
    let root = store.root();
    let key = root.pack(&(LEGACY_KEY_NAME,));
    let (begin, end) = root.subspace(&(LEGACY_ENTRIES,)).range();
    let entries = KeyRange::new(begin, end);
    let found = store
        .transact(|tx| {
            let (key, entries) = (key.clone(), entries.clone());
            Box::pin(async move {
                let found = tx.get(&key).await?.is_some();
                tx.clear(&key)?;
                tx.clear_range(&entries)?;
                Ok(found)
            })
        })
        .await?;
    if found {
        tracing::info!(
            "removed the lookup cache key and entries an earlier version kept in the store"
        );
    }
    Ok(())
}

/// Clears the shared entries of every key but `id`'s: they cannot be read with this key.
async fn clear_other_keys(store: &Store, id: [u8; KEY_ID_LEN]) -> Result<(), StoreError> {
    let root = store.root();
    let (all_begin, all_end) = root.subspace(&(ENTRIES,)).range();
    let (own_begin, own_end) = root.subspace(&(ENTRIES, id.as_slice())).range();
    clear(
        store,
        vec![
            KeyRange::new(all_begin, own_begin),
            KeyRange::new(own_end, all_end),
        ],
    )
    .await
}

/// The stored form of `value`: its expiry in clear (so that stale entries could be
/// collected without the key), the rest sealed together with the entry's key and expiry.
fn seal(shared: &SharedKey, key: &[u8], value: &Cached, expires_at: SystemTime) -> Option<Vec<u8>> {
    let expires = expires_at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (nonce, sealed) = shared.seal(&context(key, expires), &encode(value))?;
    Some(ferrymail_store::tuple::pack(&(
        expires,
        nonce.as_slice(),
        sealed.as_slice(),
    )))
}

/// The value and expiry of a stored entry; `None` when it does not open under this key.
fn unseal(shared: &SharedKey, key: &[u8], raw: &[u8]) -> Option<(Cached, SystemTime)> {
    let (expires, nonce, sealed): (u64, Vec<u8>, Vec<u8>) =
        ferrymail_store::tuple::unpack(raw).ok()?;
    let plaintext = shared.open(&context(key, expires), &nonce, &sealed)?;
    let value = decode(&plaintext)?;
    Some((value, UNIX_EPOCH + Duration::from_secs(expires)))
}

/// What a sealed value is bound to: its entry's key and its expiry.
fn context(key: &[u8], expires: u64) -> Vec<u8> {
    let mut context = key.to_vec();
    context.extend_from_slice(&expires.to_be_bytes());
    context
}

/// The plaintext of a cached answer.
fn encode(value: &Cached) -> Vec<u8> {
    let (kind, verdict, reply, values): (i64, i64, Option<&RemoteReply>, Vec<String>) = match value
    {
        Cached::Answer(a) => {
            // Only yes and no are ever cached (`Cached::ttl`).
            let verdict = match a.verdict {
                Verdict::Yes => 0,
                Verdict::No => 1,
                Verdict::Refused => 2,
                Verdict::TemporaryFailure => 3,
                Verdict::Blocked => 4,
            };
            (0, verdict, a.reply.as_ref(), Vec::new())
        }
        Cached::Expansion(Expansion::Found { values, reply }) => {
            (1, 0, reply.as_ref(), values.clone())
        }
        Cached::Expansion(Expansion::NotFound { reply }) => (1, 1, reply.as_ref(), Vec::new()),
        Cached::Expansion(Expansion::CannotTell { reply }) => (1, 2, reply.as_ref(), Vec::new()),
        Cached::Expansion(Expansion::TemporaryFailure { reply }) => {
            (1, 3, reply.as_ref(), Vec::new())
        }
    };
    let code = reply.map_or(-1i64, |r| i64::from(r.code));
    let text = reply.map(|r| r.text.clone()).unwrap_or_default();
    ferrymail_store::tuple::pack(&(kind, verdict, code, text, values))
}

/// The answer [`encode`] wrote.
fn decode(raw: &[u8]) -> Option<Cached> {
    let (kind, verdict, code, text, values): (i64, i64, i64, String, Vec<String>) =
        ferrymail_store::tuple::unpack(raw).ok()?;
    // -1: no reply; 0: an IMAP reply (no code); otherwise an SMTP code.
    let reply = match u16::try_from(code) {
        Ok(0) => Some(RemoteReply::imap(text)),
        Ok(code) => Some(RemoteReply::smtp(code, text)),
        Err(_) => None,
    };
    let value = match (kind, verdict) {
        (0, v) => {
            let verdict = match v {
                0 => Verdict::Yes,
                1 => Verdict::No,
                _ => return None,
            };
            let answer = Answer::new(verdict);
            Cached::Answer(match reply {
                Some(reply) => answer.with_reply(reply),
                None => answer,
            })
        }
        (1, 0) => Cached::Expansion(Expansion::Found { values, reply }),
        (1, 1) => Cached::Expansion(Expansion::NotFound { reply }),
        (1, 2) => Cached::Expansion(Expansion::CannotTell { reply }),
        _ => return None,
    };
    Some(value)
}
