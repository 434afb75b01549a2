//! Which schedulers are alive, and which due-index shards each one reads.
//!
//! Every scheduler writes a heartbeat — its name and an expiry — under `("member", owner)`
//! and, in the same transaction, reads everyone's. The live members (heartbeat not expired)
//! divide the shards by rendezvous hashing: shard `s` belongs to the member with the highest
//! `weight(member, s)`. Every member computes the same split from the same list, a new member
//! takes about `1/n` of the shards from the others, and when one stops heartbeating its shards
//! go to the survivors once its heartbeat expires (at once when it leaves cleanly).
//!
//! Ownership decides only which shards a scheduler *reads*. While members disagree (one has
//! seen a newcomer, another not yet), a shard may be read by two, or briefly by none; delivery
//! stays correct because each message is delivered under its own lease with a fencing token,
//! and a shard read by none is read again at the next heartbeat.

use ferrymail_store::{RangeOptions, Store, StoreError, tuple};

use crate::model::keys::Keys;
use crate::model::queue_id::SHARDS;

/// Records `owner`'s heartbeat, valid until `expiry_ms`, and returns the members alive at
/// `now_ms` (sorted, `owner` included). Expired heartbeats are cleared on the way.
pub(crate) async fn heartbeat(
    store: &Store,
    keys: &std::sync::Arc<Keys>,
    owner: &str,
    now_ms: u64,
    expiry_ms: u64,
) -> Result<Vec<String>, StoreError> {
    let (keys, owner) = (keys.clone(), owner.to_owned());
    store
        .transact(move |tx| {
            let (keys, owner) = (keys.clone(), owner.clone());
            Box::pin(async move {
                // A heartbeat lost in a crash of the machine died with its scheduler.
                tx.relax_durability();
                tx.set(&keys.member(&owner), &tuple::pack(&(expiry_ms,)))?;
                let page = tx
                    .get_range(&keys.all_members(), RangeOptions::default())
                    .await?;
                let mut live = Vec::new();
                for pair in &page.pairs {
                    let Some(member) = keys.parse_member(&pair.key) else {
                        continue;
                    };
                    let expiry = tuple::unpack::<(u64,)>(&pair.value).map_or(0, |(e,)| e);
                    if expiry > now_ms || member == owner {
                        live.push(member);
                    } else {
                        tx.clear(&pair.key)?;
                    }
                }
                live.sort();
                live.dedup();
                Ok(live)
            })
        })
        .await
}

/// Removes `owner`'s heartbeat, so that the others take its shards over at their next
/// heartbeat instead of after it expires.
pub(crate) async fn leave(
    store: &Store,
    keys: &std::sync::Arc<Keys>,
    owner: &str,
) -> Result<(), StoreError> {
    let (keys, owner) = (keys.clone(), owner.to_owned());
    store
        .transact(move |tx| {
            let (keys, owner) = (keys.clone(), owner.clone());
            Box::pin(async move {
                tx.relax_durability();
                tx.clear(&keys.member(&owner))
            })
        })
        .await
}

/// The shards `owner` reads when `members` (sorted, distinct) are alive.
///
/// Rendezvous hashing with bounded load: shard by shard, the member of highest weight that
/// has room takes it; each member has room for `SHARDS / members` shards, the first
/// `SHARDS % members` (in the sorted list) for one more, so the rooms add up to the shards and
/// every member ends with its share. Plain rendezvous hashing is
/// uneven with 64 shards (with four members the busiest often holds 20, capping a backlog's
/// drain at 3.2 times one scheduler); the bound makes the split even, and the weights still
/// keep most shards in place when a member comes or goes.
pub fn assign(members: &[String], owner: &str) -> Vec<u16> {
    if members.is_empty() {
        return Vec::new();
    }
    let (share, extra) = (
        usize::from(SHARDS) / members.len(),
        usize::from(SHARDS) % members.len(),
    );
    let room: Vec<usize> = (0..members.len())
        .map(|i| share + usize::from(i < extra))
        .collect();
    let mut load = vec![0usize; members.len()];
    let mut mine = Vec::new();
    for shard in 0..SHARDS {
        let chosen = (0..members.len())
            .filter(|&i| load[i] < room[i])
            .max_by_key(|&i| (weight(&members[i], shard), members[i].as_str()));
        if let Some(i) = chosen {
            load[i] += 1;
            if members[i] == owner {
                mine.push(shard);
            }
        }
    }
    mine
}

/// The rendezvous weight of `member` for `shard`: FNV-1a over both, then a 64-bit finalizer.
/// Written here rather than taken from `std::hash` because every version of every scheduler
/// sharing a queue must compute the same weights, which `std` does not promise across
/// releases; FNV and the finalizer are fixed published constants.
fn weight(member: &str, shard: u16) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in member.bytes().chain(shard.to_be_bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // splitmix64's finalizer: FNV alone spreads the last bytes poorly.
    hash ^= hash >> 30;
    hash = hash.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash ^= hash >> 27;
    hash = hash.wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("scheduler-{i}/{i:016x}")).collect()
    }

    #[test]
    fn every_shard_has_exactly_one_owner_and_the_split_is_even() {
        for n in 1..=8 {
            let members = members(n);
            let cap = usize::from(SHARDS).div_ceil(n);
            let mut owned: Vec<u16> = Vec::new();
            for member in &members {
                let shards = assign(&members, member);
                assert!(
                    shards.len() == usize::from(SHARDS) / n || shards.len() == cap,
                    "{member} of {n} owns {} shards",
                    shards.len()
                );
                owned.extend(shards);
            }
            owned.sort_unstable();
            assert_eq!(owned, (0..SHARDS).collect::<Vec<_>>(), "{n} members");
        }
    }

    #[test]
    fn a_newcomer_moves_few_shards() {
        let before = members(3);
        let mut after = before.clone();
        after.push("newcomer/1".into());
        after.sort();
        let newcomer = assign(&after, "newcomer/1");
        assert_eq!(newcomer.len(), usize::from(SHARDS) / 4);
        // Shards that change hands between old members, beyond those the newcomer takes.
        let moved: usize = before
            .iter()
            .map(|member| {
                let had = assign(&before, member);
                assign(&after, member)
                    .iter()
                    .filter(|s| !had.contains(s))
                    .count()
            })
            .sum();
        assert!(
            moved <= usize::from(SHARDS) / 4,
            "{moved} shards moved between old members"
        );
        assert!(assign(&before, "stranger").is_empty());
        assert!(assign(&[], "anyone").is_empty());
    }

    #[test]
    fn weights_are_fixed() {
        // These values are part of the protocol between schedulers of different versions.
        assert_eq!(weight("a", 0), weight("a", 0));
        assert_ne!(weight("a", 0), weight("a", 1));
        assert_ne!(weight("a", 0), weight("b", 0));
        // FNV-1a of the two bytes of shard 0, then splitmix64's finalizer, computed independently.
        assert_eq!(weight("", 0), 0x7bc2_1004_6bd6_16cc);
    }
}
