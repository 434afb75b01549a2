//! The keys of the lookup cache, derived from `cluster.cache-key`, which lives outside the
//! store (a file or an environment variable, on Kubernetes a Secret).
//!
//! Three values of the cache come from the one secret, each an HMAC-SHA256 of a fixed label under it (HMAC
//! is a pseudo-random function, so the three are independent; the secret has at least 32
//! bytes, so no stretching is needed):
//! - the *index* key: entries are found by an HMAC of the question under it, so an entry's
//!   store key says nothing about the user, address or password asked for;
//! - the *seal* key: shared entries are encrypted with AES-256-GCM-SIV (a reply text may name
//!   the address, an EXPN answer the members of a list), so their values say nothing either;
//! - the *key id*: 8 bytes naming which key wrote an entry. Entries live under their key's id,
//!   so a changed key finds none of the old ones, and those are cleared.
//!
//! Without `cluster.cache-key` the index key is random per process and there is no seal
//! key: nothing is shared through the store.
//!
//! A fourth derived key names login names and client addresses in the failure counters
//! ([`subject_key`]).

use aws_lc_rs::aead::{AES_256_GCM_SIV, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ferrymail_config::value::Secret;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

/// An entry's name in the caches: an HMAC of the target and the question.
pub(crate) type Digest = [u8; 32];

/// Length of a [`SharedKey`]'s id.
pub(crate) const KEY_ID_LEN: usize = 8;

/// The keys of one configuration of the cache.
pub(crate) struct CacheKeys {
    index: Zeroizing<[u8; 32]>,
    shared: Option<SharedKey>,
}

/// What the shared level needs: where its entries live and how they are sealed.
pub(crate) struct SharedKey {
    /// Names the key without revealing it: the subspace of its entries.
    pub(crate) id: [u8; KEY_ID_LEN],
    seal: LessSafeKey,
}

/// An HMAC-SHA256 under `key`. HMAC takes keys of any length, so this is never `None`;
/// callers treat `None` as "no key" rather than panic.
fn hmac(key: &[u8]) -> Option<Hmac<Sha256>> {
    <Hmac<Sha256> as Mac>::new_from_slice(key).ok()
}

/// `label` under `secret`: one derived key.
fn derive(secret: &[u8], label: &str) -> Option<Zeroizing<[u8; 32]>> {
    let mut mac = hmac(secret)?;
    mac.update(label.as_bytes());
    Some(Zeroizing::new(mac.finalize().into_bytes().into()))
}

/// The shared key of `secret`.
fn shared_key(secret: &[u8]) -> Option<SharedKey> {
    let seal = derive(secret, "ferrymail lookup cache: seal")?;
    let id = derive(secret, "ferrymail lookup cache: key id")?;
    let mut key_id = [0; KEY_ID_LEN];
    key_id.copy_from_slice(&id[..KEY_ID_LEN]);
    let key = UnboundKey::new(&AES_256_GCM_SIV, seal.as_slice()).ok()?;
    Some(SharedKey {
        id: key_id,
        seal: LessSafeKey::new(key),
    })
}

/// The key that names login names and client addresses in the store's counters of failed
/// authentications. Derived from `cluster.cache-key` when there is one, so that a
/// copy of the store cannot be matched against guesses; without one it must still be the
/// same in every replica, so it is derived from a fixed label, and the names are then plain
/// hashes (which a copy of the store could match against a guessed name or address).
pub(crate) fn subject_key(cache_key: Option<&Secret>) -> Zeroizing<[u8; 32]> {
    let secret = cache_key.map_or(b"ferrymail: no cluster.cache-key".as_slice(), |secret| {
        secret.expose().as_bytes()
    });
    derive(secret, "ferrymail auth failures: subjects").unwrap_or_default()
}

impl CacheKeys {
    /// The keys of `cache_key`, or a random index key and no shared level without one.
    pub(crate) fn new(cache_key: Option<&Secret>) -> Self {
        let derived = cache_key.and_then(|secret| {
            let secret = secret.expose().as_bytes();
            Some(Self {
                index: derive(secret, "ferrymail lookup cache: index")?,
                shared: Some(shared_key(secret)?),
            })
        });
        derived.unwrap_or_else(|| Self {
            index: Zeroizing::new(rand::random()),
            shared: None,
        })
    }

    /// The shared level's key, when `cluster.cache-key` is set.
    pub(crate) fn shared(&self) -> Option<&SharedKey> {
        self.shared.as_ref()
    }

    /// The id of the shared key, if any: equal ids mean equal keys.
    pub(crate) fn id(&self) -> Option<[u8; KEY_ID_LEN]> {
        self.shared.as_ref().map(|s| s.id)
    }

    /// The name of an entry: an HMAC of `parts`, each framed by its length so that
    /// ("ab", "c") and ("a", "bc") never collide.
    /// `None` cannot happen (see [`hmac()`]); the answer is then simply not cached.
    pub(crate) fn digest(&self, parts: &[&[u8]]) -> Option<Digest> {
        let mut mac = hmac(self.index.as_slice())?;
        for part in parts {
            mac.update(&(part.len() as u64).to_le_bytes());
            mac.update(part);
        }
        Some(mac.finalize().into_bytes().into())
    }
}

impl SharedKey {
    /// `plaintext` encrypted and authenticated together with `context` (the entry's store
    /// key and expiry, so a value cannot be moved to another entry): the nonce and the
    /// sealed bytes. GCM-SIV, because nonces are random and many entries are written under
    /// one long-lived key: a repeated nonce would reveal only that two values are equal.
    pub(crate) fn seal(
        &self,
        context: &[u8],
        plaintext: &[u8],
    ) -> Option<([u8; NONCE_LEN], Vec<u8>)> {
        let nonce: [u8; NONCE_LEN] = rand::random();
        let mut sealed = plaintext.to_vec();
        self.seal
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context),
                &mut sealed,
            )
            .ok()?;
        Some((nonce, sealed))
    }

    /// The plaintext of a sealed value, or `None` when it was not sealed under this key
    /// and `context`.
    pub(crate) fn open(&self, context: &[u8], nonce: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buffer = sealed.to_vec();
        let plaintext = self
            .seal
            .open_in_place(nonce, Aad::from(context), &mut buffer)
            .ok()?;
        Some(plaintext.to_vec())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn secret(text: &str) -> Secret {
        Secret::new(text)
    }

    #[test]
    fn equal_keys_agree_and_different_keys_do_not() {
        let one = CacheKeys::new(Some(&secret(&"a".repeat(32))));
        let same = CacheKeys::new(Some(&secret(&"a".repeat(32))));
        let other = CacheKeys::new(Some(&secret(&"b".repeat(32))));
        let question: &[&[u8]] = &[b"directory/x", b"alice@example.org"];
        assert_eq!(one.digest(question), same.digest(question));
        assert_ne!(one.digest(question), other.digest(question));
        assert_eq!(one.id(), same.id());
        assert_ne!(one.id(), other.id());
        // Without a key: no shared level, and a different index key in every process.
        let (a, b) = (CacheKeys::new(None), CacheKeys::new(None));
        assert!(a.shared().is_none() && a.id().is_none());
        assert_ne!(a.digest(question), b.digest(question));
    }

    #[test]
    fn sealed_values_open_only_under_their_key_and_context() {
        let keys = CacheKeys::new(Some(&secret(&"a".repeat(32))));
        let shared = keys.shared().unwrap();
        let (nonce, sealed) = shared
            .seal(b"entry-1", b"550 5.1.1 <bob@example.org>")
            .unwrap();
        assert!(
            !sealed.windows(3).any(|w| w == b"bob"),
            "the value is not in clear"
        );
        assert_eq!(
            shared.open(b"entry-1", &nonce, &sealed).unwrap(),
            b"550 5.1.1 <bob@example.org>"
        );
        assert_eq!(shared.open(b"entry-2", &nonce, &sealed), None);
        let other = CacheKeys::new(Some(&secret(&"b".repeat(32))));
        assert_eq!(
            other.shared().unwrap().open(b"entry-1", &nonce, &sealed),
            None
        );
        assert_eq!(shared.open(b"entry-1", &nonce[..4], &sealed), None);
    }
}
