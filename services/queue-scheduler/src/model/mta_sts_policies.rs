//! Policies remembered in the store beside the queue, so that every scheduler sharing it,
//! and one that restarted, applies what any of them fetched.
//!
//! RFC 8461 §5.1 has a sender remember a policy for its `max_age`: that memory is what
//! protects delivery when an attacker blocks the policy fetch and strips STARTTLS. Kept only
//! in a process, it would be lost at every restart (and a Kubernetes pod restarts often),
//! and every pod would fetch every policy again.
//!
//! A policy is forgotten when it is found expired, and by a sweep ([`SharedPolicies::sweep`])
//! that pages through all of them: without it, a domain mailed once would keep its entry.

use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use ferrymail_outbound::mta_sts::{self, PolicyMemory, Remembered};
use ferrymail_store::{KeyRange, RangeOptions, Store, StoreError, key_after, tuple};

use crate::model::keys::Keys;
use crate::model::queue_id::unix_millis;

/// Version of the stored value's layout.
const FORMAT: u64 = 1;
/// Stored policies one step of the sweep reads: one short transaction. At one step a
/// heartbeat (10 s), a million remembered domains are swept in under six hours.
const SWEEP_PAGE: usize = 500;

/// The stored form of `remembered`.
fn encode(remembered: &Remembered) -> Vec<u8> {
    tuple::pack(&(
        FORMAT,
        remembered.id.as_str(),
        remembered.expires_ms,
        remembered.policy.to_text(),
    ))
}

/// The policy stored as `value`.
fn decode(value: &[u8]) -> Result<Remembered, String> {
    let (format, id, expires_ms, text) =
        tuple::unpack::<(u64, String, u64, String)>(value).map_err(|e| e.to_string())?;
    if format != FORMAT {
        return Err(format!("format {format}"));
    }
    let policy = mta_sts::parse(&text).map_err(|e| e.to_string())?;
    Ok(Remembered {
        id,
        policy,
        expires_ms,
    })
}

/// What one step of a sweep did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SweepStep {
    /// Policies forgotten: expired, or not decodable.
    pub forgotten: usize,
    /// The key the next step starts after; `None` once the sweep reached the end.
    pub next: Option<Vec<u8>>,
}

/// The policies of the store's installation.
pub(crate) struct SharedPolicies {
    store: Store,
    keys: Arc<Keys>,
}

impl SharedPolicies {
    /// Policies kept in `store` under the queue's `keys`.
    pub(crate) fn new(store: Store, keys: Arc<Keys>) -> Self {
        Self { store, keys }
    }

    /// The policy remembered for `domain` if it has not expired at `now_ms`. An expired one
    /// is forgotten; one that does not decode is logged and forgotten, as if never fetched.
    pub(crate) async fn get(
        &self,
        domain: &str,
        now_ms: u64,
    ) -> Result<Option<Remembered>, StoreError> {
        let key = self.keys.mta_sts_policy(&normalized(domain));
        self.store
            .transact(|tx| {
                let key = key.clone();
                Box::pin(async move {
                    let Some(value) = tx.get(&key).await? else {
                        return Ok(None);
                    };
                    match decode(&value) {
                        Ok(found) if found.expires_ms > now_ms => Ok(Some(found)),
                        Ok(_) => {
                            tx.clear(&key)?;
                            Ok(None)
                        }
                        Err(error) => {
                            tracing::warn!(%error, "a remembered MTA-STS policy does not decode; it is dropped");
                            tx.clear(&key)?;
                            Ok(None)
                        }
                    }
                })
            })
            .await
    }

    /// Forgets the expired and undecodable policies among the next `page` after the key
    /// `after` (from the first without one), in one short transaction whatever their number.
    pub(crate) async fn sweep(
        &self,
        after: Option<&[u8]>,
        now_ms: u64,
        page: usize,
    ) -> Result<SweepStep, StoreError> {
        let all = self.keys.all_mta_sts_policies();
        let range = match after {
            Some(key) => KeyRange::new(key_after(key), all.end),
            None => all,
        };
        self.store
            .transact(|tx| {
                let range = range.clone();
                Box::pin(async move {
                    // A crash that loses what a sweep forgot only has the next sweep forget it.
                    tx.relax_durability();
                    let options = RangeOptions {
                        limit: page,
                        reverse: false,
                    };
                    let read = tx.get_range(&range, options).await?;
                    let mut forgotten = 0;
                    for pair in &read.pairs {
                        let live = decode(&pair.value)
                            .is_ok_and(|remembered| remembered.expires_ms > now_ms);
                        if !live {
                            tx.clear(&pair.key)?;
                            forgotten += 1;
                        }
                    }
                    let next = read
                        .more
                        .then(|| read.pairs.last().map(|pair| pair.key.clone()))
                        .flatten();
                    Ok(SweepStep { forgotten, next })
                })
            })
            .await
    }

    /// Remembers `policy` for `domain`, replacing what was there.
    pub(crate) async fn put(&self, domain: &str, policy: &Remembered) -> Result<(), StoreError> {
        let key = self.keys.mta_sts_policy(&normalized(domain));
        let value = encode(policy);
        self.store
            .transact(|tx| {
                let (key, value) = (key.clone(), value.clone());
                Box::pin(async move { tx.set(&key, &value) })
            })
            .await
    }
}

/// How domains are keyed: lower case, without a trailing dot.
#[async_trait]
impl PolicyMemory for SharedPolicies {
    async fn get(&self, domain: &str, now_ms: u64) -> Result<Option<Remembered>, String> {
        SharedPolicies::get(self, domain, now_ms)
            .await
            .map_err(|e| e.to_string())
    }

    async fn put(&self, domain: &str, policy: &Remembered) -> Result<(), String> {
        SharedPolicies::put(self, domain, policy)
            .await
            .map_err(|e| e.to_string())
    }
}

impl SharedPolicies {
    /// One step of the sweep of expired policies: a page after the key `after`; returns
    /// where the next step starts (the same place after a failure).
    pub(crate) async fn sweep_step(&self, after: Option<Vec<u8>>) -> Option<Vec<u8>> {
        let now_ms = unix_millis(SystemTime::now());
        match self.sweep(after.as_deref(), now_ms, SWEEP_PAGE).await {
            Ok(step) => {
                if step.forgotten > 0 {
                    tracing::debug!(
                        forgotten = step.forgotten,
                        "expired MTA-STS policies forgotten"
                    );
                }
                step.next
            }
            Err(error) => {
                tracing::warn!(%error, "cannot sweep expired MTA-STS policies; trying again later");
                after
            }
        }
    }
}

fn normalized(domain: &str) -> String {
    domain.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use ferrymail_store::StoreOptions;

    use super::*;

    fn remembered(expires_ms: u64) -> Remembered {
        let text = "version: STSv1\nmode: enforce\nmx: mail.example.net\nmax_age: 86400\n";
        Remembered {
            id: "20260101".to_owned(),
            policy: mta_sts::parse(text).unwrap(),
            expires_ms,
        }
    }

    /// Stores `value` under `key` as it is, bypassing the encoding.
    async fn store_raw(policies: &SharedPolicies, key: &[u8], value: &[u8]) {
        policies
            .store
            .transact(|tx| {
                let (key, value) = (key.to_vec(), value.to_vec());
                Box::pin(async move { tx.set(&key, &value) })
            })
            .await
            .unwrap();
    }

    fn shared(dir: &tempfile::TempDir) -> SharedPolicies {
        let store = Store::open_embedded(dir.path(), StoreOptions::default()).unwrap();
        let keys = Arc::new(Keys::new(store.root()));
        SharedPolicies::new(store, keys)
    }

    #[tokio::test]
    async fn a_policy_is_found_until_it_expires_then_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let policies = shared(&dir);
        policies
            .put("Example.NET.", &remembered(2_000))
            .await
            .unwrap();
        assert_eq!(
            policies.get("example.net", 1_999).await.unwrap(),
            Some(remembered(2_000))
        );
        assert_eq!(policies.get("example.net", 2_000).await.unwrap(), None);
        // Forgotten, not only hidden: an earlier time no longer finds it.
        assert_eq!(policies.get("example.net", 1_000).await.unwrap(), None);
        assert_eq!(policies.get("other.test", 1_000).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_sweep_pages_through_every_policy_and_forgets_only_dead_ones() {
        let dir = tempfile::tempdir().unwrap();
        let policies = shared(&dir);
        for (domain, expires_ms) in [
            ("a.test", 500),
            ("b.test", 5_000),
            ("c.test", 900),
            ("d.test", 9_000),
        ] {
            policies.put(domain, &remembered(expires_ms)).await.unwrap();
        }
        let garbage = policies.keys.mta_sts_policy("e.test");
        store_raw(&policies, &garbage, b"garbage").await;

        // Pages of two: a.test b.test | c.test d.test | e.test, then the end.
        let mut after = None;
        let mut steps = Vec::new();
        loop {
            let step = policies.sweep(after.as_deref(), 1_000, 2).await.unwrap();
            steps.push(step.forgotten);
            after = step.next;
            if after.is_none() {
                break;
            }
        }
        assert_eq!(steps, [1, 1, 1]);
        let left = policies
            .store
            .transact(|tx| {
                let all = policies.keys.all_mta_sts_policies();
                Box::pin(async move { tx.get_all(&all, 100).await })
            })
            .await
            .unwrap();
        let left: Vec<_> = left.iter().map(|pair| pair.key.clone()).collect();
        assert_eq!(
            left,
            [
                policies.keys.mta_sts_policy("b.test"),
                policies.keys.mta_sts_policy("d.test")
            ]
        );
        // Live policies are still found; a sweep of an empty page ends at once.
        assert!(policies.get("b.test", 1_000).await.unwrap().is_some());
        let end = policies.sweep(None, 1_000, 10).await.unwrap();
        assert_eq!(
            end,
            SweepStep {
                forgotten: 0,
                next: None
            }
        );
    }

    #[tokio::test]
    async fn a_value_that_does_not_decode_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let policies = shared(&dir);
        let key = policies.keys.mta_sts_policy("example.net");
        let bad_text = tuple::pack(&(FORMAT, "1", 5_000u64, "version: STSv1\nmode: maybe\n"));
        for value in [b"garbage".to_vec(), tuple::pack(&(7u64,)), bad_text] {
            store_raw(&policies, &key, &value).await;
            assert_eq!(policies.get("example.net", 1_000).await.unwrap(), None);
        }
        let left = policies
            .store
            .transact(|tx| {
                let key = key.clone();
                Box::pin(async move { tx.get(&key).await })
            })
            .await
            .unwrap();
        assert_eq!(left, None);
    }
}
