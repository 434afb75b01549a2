//! Two-level lookup cache: an in-process LRU per target, and a cache in the store shared by
//! every directory-proxy replica (a restarted pod starts warm).
//!
//! Entries are keyed by an HMAC of the question under a per-installation key: credentials
//! and addresses are never stored, a wrong password hashes to another key (so it can never
//! be answered "yes" from the cache), and the store holds nothing an attacker could use.
//! Positive answers live `cache.ttl.positive`, negative ones `cache.ttl.negative`;
//! temporary failures are never cached.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ferrymail_rpc::directory::{Answer, Expansion, RemoteReply, Verdict};
use ferrymail_store::{KeyRange, Store, StoreError};
use ferrymail_telemetry::LogLimit;
use hmac::{Hmac, Mac};
use sha2::Sha256;

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
                // A full or disabled mailbox may take mail again at any moment.
                Verdict::Refused | Verdict::TemporaryFailure => None,
            },
            Cached::Expansion(Expansion::Found { .. }) => Some(positive),
            Cached::Expansion(Expansion::NotFound { .. } | Expansion::CannotTell { .. }) => {
                Some(negative)
            }
            Cached::Expansion(Expansion::TemporaryFailure { .. }) => None,
        }
    }
}

type Digest = [u8; 32];

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
    key: Digest,
    local: RwLock<HashMap<String, moka::future::Cache<Digest, LocalEntry>>>,
    shared: Option<Store>,
}

/// Where the per-installation HMAC key lives in the store.
const KEY_NAME: &str = "directory-cache-key";
/// Subspace of shared entries.
const ENTRIES: &str = "directory-cache";

impl LookupCache {
    /// A cache whose shared level is `store` (when given). The HMAC key is read from the
    /// store, or created there once; without a store it is random per process.
    pub(crate) async fn open(store: Option<Store>) -> Result<Self, StoreError> {
        let key = match &store {
            Some(store) => installation_key(store).await?,
            None => rand::random(),
        };
        Ok(Self {
            key,
            local: RwLock::default(),
            shared: store,
        })
    }

    /// The entry key of a question. `None` cannot happen (HMAC takes keys of any length);
    /// the answer is then simply not cached.
    fn digest(&self, target: &str, question: &Question<'_>) -> Option<Digest> {
        let (kind, first, second) = question.parts();
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key).ok()?;
        // Lengths are framed so that ("ab", "c") and ("a", "bc") never collide.
        for part in [target.as_bytes(), &[kind], first, second] {
            mac.update(&(part.len() as u64).to_le_bytes());
            mac.update(part);
        }
        Some(mac.finalize().into_bytes().into())
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

    fn shared_key(&self, store: &Store, target: &str, digest: &Digest) -> Vec<u8> {
        store.root().pack(&(ENTRIES, target, digest.as_slice()))
    }

    /// The cached answer, and the level that had it.
    pub(crate) async fn get(
        &self,
        target: &Target,
        question: &Question<'_>,
    ) -> Option<(Cached, Level)> {
        let digest = self.digest(&target.name, question)?;
        let local = self.local_cache(target);
        if let Some(cache) = &local
            && let Some(entry) = cache.get(&digest).await
        {
            if entry.expires > Instant::now() {
                return Some((entry.value, Level::Local));
            }
            cache.invalidate(&digest).await;
        }
        let store = self.shared.as_ref()?;
        let key = self.shared_key(store, &target.name, &digest);
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
        let (value, expires_at) = decode(&raw)?;
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
        let Some(digest) = self.digest(&target.name, question) else {
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
        let Some(store) = &self.shared else { return };
        let key = self.shared_key(store, &target.name, &digest);
        let encoded = encode(value, SystemTime::now() + ttl);
        let written = store
            .transact(|tx| {
                let (key, encoded) = (key.clone(), encoded.clone());
                Box::pin(async move {
                    // A cache: an entry lost in a crash is asked of the server again.
                    tx.relax_durability();
                    tx.set(&key, &encoded)
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
        let Some(store) = &self.shared else { return };
        let (begin, end) = store.root().subspace(&(ENTRIES, target)).range();
        let range = KeyRange::new(begin, end);
        let cleared = store
            .transact(|tx| {
                let range = range.clone();
                Box::pin(async move {
                    tx.relax_durability();
                    tx.clear_range(&range)
                })
            })
            .await;
        if let Err(error) = cleared {
            tracing::warn!(%target, %error, "could not flush the shared lookup cache");
        }
    }
}

async fn installation_key(store: &Store) -> Result<Digest, StoreError> {
    let name = store.root().pack(&(KEY_NAME,));
    let candidate: Digest = rand::random();
    let stored = store
        .transact(|tx| {
            let name = name.clone();
            Box::pin(async move {
                match tx.get(&name).await? {
                    Some(existing) => Ok(existing),
                    None => {
                        tx.set(&name, &candidate)?;
                        Ok(candidate.to_vec())
                    }
                }
            })
        })
        .await?;
    stored
        .try_into()
        .map_err(|_| StoreError::Corrupt("directory cache key is not 32 bytes".into()))
}

fn encode(value: &Cached, expires_at: SystemTime) -> Vec<u8> {
    let expires = expires_at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (kind, verdict, reply, values): (i64, i64, Option<&RemoteReply>, Vec<String>) = match value
    {
        Cached::Answer(a) => {
            // Only yes and no are ever cached (`Cached::ttl`).
            let verdict = match a.verdict {
                Verdict::Yes => 0,
                Verdict::No => 1,
                Verdict::Refused => 2,
                Verdict::TemporaryFailure => 3,
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
    ferrymail_store::tuple::pack(&(expires, kind, verdict, code, text, values))
}

fn decode(raw: &[u8]) -> Option<(Cached, SystemTime)> {
    let (expires, kind, verdict, code, text, values): (u64, i64, i64, i64, String, Vec<String>) =
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
    Some((value, UNIX_EPOCH + Duration::from_secs(expires)))
}
