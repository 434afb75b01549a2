//! `authentication.*`: who may use the HTTP admin API — Stalwart's fallback administrator
//! (HTTP Basic) and ferrymail's bearer tokens (`authentication.api-key.<id>`).

use std::collections::BTreeMap;

use crate::keys;
use crate::reader::TableReader;
use crate::value::StoredPassword;

/// `authentication.fallback-admin`: one administrator checked by HTTP Basic authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FallbackAdmin {
    /// `user`.
    pub user: String,
    /// `secret`.
    pub secret: StoredPassword,
}

/// `authentication.*`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Authentication {
    /// `authentication.fallback-admin`, when both its keys are set.
    pub fallback_admin: Option<FallbackAdmin>,
    /// `authentication.api-key.<id>.secret`: bearer tokens, by id.
    pub api_keys: BTreeMap<String, StoredPassword>,
}

impl Authentication {
    /// Whether any credential can use the admin API.
    pub fn any(&self) -> bool {
        self.fallback_admin.is_some() || !self.api_keys.is_empty()
    }
}

pub(crate) fn read(root: &TableReader<'_>) -> Option<Authentication> {
    let t = root.table("authentication");
    let fallback_admin = read_fallback_admin(&t.table("fallback-admin"));
    let mut api_keys = BTreeMap::new();
    let mut refused = false;
    for (id, key) in t.table("api-key").entries() {
        match key.get(&keys::AUTH_API_KEY_SECRET) {
            Some(secret) => {
                api_keys.insert(id, secret);
            }
            None => refused = true,
        }
    }
    if refused {
        return None;
    }
    Some(Authentication {
        fallback_admin: fallback_admin?,
        api_keys,
    })
}

/// `None` when a problem was reported; `Some(None)` when the administrator is not configured.
fn read_fallback_admin(t: &TableReader<'_>) -> Option<Option<FallbackAdmin>> {
    let user = t.get(&keys::AUTH_FALLBACK_ADMIN_USER);
    let secret = t.get(&keys::AUTH_FALLBACK_ADMIN_SECRET);
    match (user, secret) {
        (Some(user), Some(secret)) if !user.is_empty() => {
            Some(Some(FallbackAdmin { user, secret }))
        }
        (Some(_), Some(_)) => {
            t.report("user", "must not be empty");
            None
        }
        (None, None) if !t.contains("user") && !t.contains("secret") => Some(None),
        (Some(_), None) if !t.contains("secret") => {
            t.report("secret", "missing: set user and secret together");
            None
        }
        (None, Some(_)) if !t.contains("user") => {
            t.report("user", "missing: set user and secret together");
            None
        }
        // A value was refused, and reported.
        _ => None,
    }
}
