//! FoundationDB's limits, enforced by every backend so that code which passes on the
//! embedded store also passes on a cluster.

use std::time::Duration;

use crate::error::{Result, StoreError};

/// Largest key, in bytes.
pub const MAX_KEY: usize = 10_000;
/// Largest value, in bytes.
pub const MAX_VALUE: usize = 100_000;
/// Largest transaction (keys and values written, plus the ranges read and written).
pub const MAX_TRANSACTION: usize = 10_000_000;
/// Longest a transaction may live.
pub const MAX_AGE: Duration = Duration::from_secs(5);

/// Refuses an oversize key.
pub fn check_key(key: &[u8]) -> Result<()> {
    if key.len() > MAX_KEY {
        Err(StoreError::KeyTooLarge(key.len()))
    } else {
        Ok(())
    }
}

/// Refuses an oversize value.
pub fn check_value(value: &[u8]) -> Result<()> {
    if value.len() > MAX_VALUE {
        Err(StoreError::ValueTooLarge(value.len()))
    } else {
        Ok(())
    }
}
