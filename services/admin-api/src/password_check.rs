//! Checking presented credentials against the configured ones, with a short memory of
//! recent successes so that a script's every call does not cost an argon2 hash.
//!
//! The memory holds SHA-256 digests of what was presented, never the credentials.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordVerifier};
use ferrymail_config::model::authentication::Authentication;
use ferrymail_config::value::StoredPassword;
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::credentials::Presented;

/// How long a success is remembered.
const REMEMBER: Duration = Duration::from_secs(300);
/// Most successes remembered; past it the memory starts afresh.
const MAX_REMEMBERED: usize = 256;
/// Argon2 checks run at once: each takes a core for a while, and failures must not starve
/// the process.
const CONCURRENT_HASHES: usize = 1;

/// Who a credential belongs to: `admin` (Basic) or `api-key.<id>` (Bearer).
pub type Principal = String;

/// The configured credentials, and the memory of recent successes.
pub struct PasswordCheck {
    authentication: Authentication,
    remembered: Mutex<HashMap<[u8; 32], (Principal, Instant)>>,
    hashing: Semaphore,
}

impl PasswordCheck {
    /// Checks against `authentication`.
    pub fn new(authentication: Authentication) -> Self {
        Self {
            authentication,
            remembered: Mutex::new(HashMap::new()),
            hashing: Semaphore::new(CONCURRENT_HASHES),
        }
    }

    /// Whether any credential is configured at all.
    pub fn any(&self) -> bool {
        self.authentication.any()
    }

    /// Whose the credentials are, or `None` when they match nothing configured.
    pub async fn check(&self, presented: &Presented) -> Option<Principal> {
        let digest = digest_of(presented);
        if let Some(principal) = self.recall(&digest) {
            return Some(principal);
        }
        let principal = match presented {
            Presented::Basic { user, password } => {
                let admin = self.authentication.fallback_admin.as_ref()?;
                // Both are checked, so a wrong user name takes as long as a wrong password.
                let user_ok = digest_eq(user.as_bytes(), admin.user.as_bytes());
                let password_ok = self.matches(password.expose_secret(), &admin.secret).await;
                (user_ok && password_ok).then(|| "admin".to_owned())?
            }
            Presented::Bearer(token) => {
                let mut found = None;
                for (id, secret) in &self.authentication.api_keys {
                    if self.matches(token.expose_secret(), secret).await {
                        found = Some(format!("api-key.{id}"));
                        break;
                    }
                }
                found?
            }
        };
        self.remember(digest, principal.clone());
        Some(principal)
    }

    async fn matches(&self, presented: &str, stored: &StoredPassword) -> bool {
        match stored {
            StoredPassword::Clear(secret) => {
                digest_eq(presented.as_bytes(), secret.expose().as_bytes())
            }
            StoredPassword::Argon2(hash) => {
                let Ok(_permit) = self.hashing.acquire().await else {
                    return false;
                };
                let (presented, hash) = (presented.to_owned(), hash.clone());
                tokio::task::spawn_blocking(move || argon2_matches(&presented, &hash))
                    .await
                    .unwrap_or(false)
            }
        }
    }

    fn recall(&self, digest: &[u8; 32]) -> Option<Principal> {
        let remembered = self
            .remembered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        remembered
            .get(digest)
            .filter(|(_, at)| at.elapsed() < REMEMBER)
            .map(|(principal, _)| principal.clone())
    }

    fn remember(&self, digest: [u8; 32], principal: Principal) {
        let mut remembered = self
            .remembered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if remembered.len() >= MAX_REMEMBERED {
            remembered.clear();
        }
        remembered.insert(digest, (principal, Instant::now()));
    }
}

fn argon2_matches(presented: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|hash| {
        argon2::Argon2::default()
            .verify_password(presented.as_bytes(), &hash)
            .is_ok()
    })
}

/// Compares digests rather than the values, so the time taken tells nothing of how much of
/// a secret was right.
fn digest_eq(a: &[u8], b: &[u8]) -> bool {
    Sha256::digest(a) == Sha256::digest(b)
}

fn digest_of(presented: &Presented) -> [u8; 32] {
    let mut hasher = Sha256::new();
    match presented {
        Presented::Basic { user, password } => {
            hasher.update(b"basic\0");
            hasher.update(user.as_bytes());
            hasher.update(b"\0");
            hasher.update(password.expose_secret().as_bytes());
        }
        Presented::Bearer(token) => {
            hasher.update(b"bearer\0");
            hasher.update(token.expose_secret().as_bytes());
        }
    }
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use ferrymail_config::Secret;
    use ferrymail_config::model::authentication::FallbackAdmin;
    use secrecy::SecretString;

    use super::*;

    /// The argon2id hash of `s3cret-admin`, made by an independent implementation.
    const HASH: &str = "$argon2id$v=19$m=8192,t=1,p=1$JEzACw1HxgpiBuPVNiRrCA$phc1WYh7faHzNl4vvBaqIMTrjsmRX+NFJhGTU/x4MrU";

    fn check() -> PasswordCheck {
        PasswordCheck::new(Authentication {
            fallback_admin: Some(FallbackAdmin {
                user: "admin".into(),
                secret: StoredPassword::Argon2(HASH.into()),
            }),
            api_keys: BTreeMap::from([
                ("ci".into(), StoredPassword::Clear(Secret::new("token-ci"))),
                ("ops".into(), StoredPassword::Argon2(HASH.into())),
            ]),
        })
    }

    fn basic(user: &str, password: &str) -> Presented {
        Presented::Basic {
            user: user.into(),
            password: SecretString::from(password.to_owned()),
        }
    }

    fn bearer(token: &str) -> Presented {
        Presented::Bearer(SecretString::from(token.to_owned()))
    }

    #[tokio::test]
    async fn configured_credentials_are_recognised() {
        let check = check();
        assert_eq!(
            check
                .check(&basic("admin", "s3cret-admin"))
                .await
                .as_deref(),
            Some("admin")
        );
        // Remembered: the same answer again.
        assert_eq!(
            check
                .check(&basic("admin", "s3cret-admin"))
                .await
                .as_deref(),
            Some("admin")
        );
        assert_eq!(
            check.check(&bearer("token-ci")).await.as_deref(),
            Some("api-key.ci")
        );
        assert_eq!(
            check.check(&bearer("s3cret-admin")).await.as_deref(),
            Some("api-key.ops")
        );
    }

    #[tokio::test]
    async fn anything_else_is_refused() {
        let check = check();
        for presented in [
            basic("admin", "wrong"),
            basic("root", "s3cret-admin"),
            basic("", ""),
            bearer("token-c"),
            bearer("token-ci "),
            bearer(""),
        ] {
            assert_eq!(check.check(&presented).await, None, "{presented:?}");
        }
        let nobody = PasswordCheck::new(Authentication::default());
        assert!(!nobody.any());
        assert_eq!(nobody.check(&basic("admin", "s3cret-admin")).await, None);
    }
}
