//! The backend's tables and functions, created on first start and checked on every start.
//!
//! Everything lives in the schema `ferrymail` of the configured database; the installation
//! prefix is part of every key, so several installations may share it.
//!
//! - `kv`: the ordered key-value pairs; `bytea` compares bytewise (no collation applies to
//!   it), which is FoundationDB's key order.
//! - `meta`: the schema version, and `clock`, the version of the last commit. Updating the
//!   clock row is what orders commits, as FoundationDB's sequencer does.
//! - `writes`: the key ranges each recent commit wrote, under its version, so that a commit
//!   can check that nothing it read has been written since its snapshot (FoundationDB's
//!   resolvers keep the same window). Rows older than any live transaction are pruned.
//! - `commit_many(..)`: checks the reads of a batch of transactions and applies the
//!   mutations of those that pass, in order, in one statement: a batch is one round trip
//!   and one flush (see `committer`).

use deadpool_postgres::Object;

use super::error::{query_error, schema_error};
use crate::error::{Result, StoreError};

/// The version of the layout below; another version in the database refuses the start.
pub(super) const SCHEMA_VERSION: i64 = 1;

/// Serializes the creation of the schema by processes starting together.
const SCHEMA_LOCK: i64 = 0x6665_7272_796d_6169;

/// Reads the transaction's snapshot version; the first statement of a transaction, so the
/// snapshot and the version are taken together.
pub(super) const READ_VERSION: &str = "SELECT value FROM ferrymail.meta WHERE name = 'clock'";

/// The committed value of one key.
pub(super) const GET: &str = "SELECT value FROM ferrymail.kv WHERE key = $1";

/// The committed values of several keys.
pub(super) const GET_MANY: &str = "SELECT key, value FROM ferrymail.kv WHERE key = ANY($1)";

/// Up to `$3` pairs of a range in key order (`NULL`: all).
pub(super) const RANGE: &str = "SELECT key, value FROM ferrymail.kv \
     WHERE key >= $1 AND key < $2 ORDER BY key LIMIT $3";

/// The same, from the end backwards.
pub(super) const RANGE_REVERSE: &str = "SELECT key, value FROM ferrymail.kv \
     WHERE key >= $1 AND key < $2 ORDER BY key DESC LIMIT $3";

/// Commits a batch of transactions: see `commit_many` in [`CREATE`].
pub(super) const COMMIT_MANY: &str =
    "SELECT ferrymail.commit_many($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";

/// The mutation kinds `commit` applies, as numbered there.
pub(super) mod kind {
    pub(in crate::postgresql) const SET: i16 = 0;
    pub(in crate::postgresql) const CLEAR: i16 = 1;
    pub(in crate::postgresql) const CLEAR_RANGE: i16 = 2;
    pub(in crate::postgresql) const ADD: i16 = 3;
    pub(in crate::postgresql) const COMPARE_AND_CLEAR: i16 = 4;
}

/// The version table, created first so the version is checked before anything else is.
const CREATE_META: &str = "
CREATE SCHEMA IF NOT EXISTS ferrymail;
CREATE TABLE IF NOT EXISTS ferrymail.meta (name text PRIMARY KEY, value bigint NOT NULL);
";

/// Everything else, for [`SCHEMA_VERSION`] 1.
const CREATE: &str = r#"
CREATE TABLE IF NOT EXISTS ferrymail.kv (key bytea PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE IF NOT EXISTS ferrymail.writes (
    version bigint NOT NULL,
    begin_key bytea NOT NULL,
    end_key bytea NOT NULL,
    written timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS writes_version ON ferrymail.writes (version);
CREATE INDEX IF NOT EXISTS writes_written ON ferrymail.writes (written);
INSERT INTO ferrymail.meta VALUES ('clock', 0) ON CONFLICT DO NOTHING;

-- FoundationDB's ADD: the 8-byte little-endian sum, wrapping; an absent or shorter value
-- counts as zero-extended.
CREATE OR REPLACE FUNCTION ferrymail.add_le(current bytea, delta bigint) RETURNS bytea
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    n numeric := 0;
    out bytea := decode('0000000000000000', 'hex');
    modulus constant numeric := 18446744073709551616;
BEGIN
    IF current IS NOT NULL THEN
        FOR i IN REVERSE least(length(current), 8) - 1 .. 0 LOOP
            n := n * 256 + get_byte(current, i);
        END LOOP;
    END IF;
    n := mod(mod(n + delta, modulus) + modulus, modulus);
    FOR i IN 0 .. 7 LOOP
        out := set_byte(out, i, mod(n, 256)::int);
        n := div(n, 256);
    END LOOP;
    RETURN out;
END $$;

-- Commits a batch of transactions in order, as one. Transaction t read
-- `read_counts[t]` ranges (in `read_begins`/`read_ends`, after those of the transactions
-- before it) at `read_versions[t]` and made `mutation_counts[t]` mutations (in `kinds`,
-- `keys`, `vals`, `deltas`, with the range each writes in `write_begins`/`write_ends`; for
-- CLEAR_RANGE `vals` holds the range's end). Each is checked against every commit since its
-- snapshot, earlier ones of the batch included, as those are recorded before it is checked:
-- it is applied if none wrote what it read. Returns which were applied.
CREATE OR REPLACE FUNCTION ferrymail.commit_many(
    read_versions bigint[], read_counts integer[], read_begins bytea[], read_ends bytea[],
    mutation_counts integer[], kinds smallint[], keys bytea[], vals bytea[], deltas bigint[],
    write_begins bytea[], write_ends bytea[], relaxed boolean
) RETURNS boolean[]
LANGUAGE plpgsql
-- After five calls PL/pgSQL would switch to a generic plan, which cannot know that
-- `version > read_version` selects a few recent rows and scans all of `writes` instead of
-- its index, while every other commit waits on the clock row.
SET plan_cache_mode = force_custom_plan
AS $$
DECLARE
    this_version bigint;
    applied boolean[] := '{}';
    ok boolean;
    r integer := 1;
    m integer := 1;
BEGIN
    IF relaxed THEN
        PERFORM set_config('synchronous_commit', 'off', true);
    END IF;
    UPDATE ferrymail.meta SET value = value + 1 WHERE name = 'clock'
        RETURNING value INTO this_version;
    FOR t IN 1 .. coalesce(array_length(read_versions, 1), 0) LOOP
        ok := NOT EXISTS (
            SELECT 1 FROM ferrymail.writes w
            JOIN unnest(read_begins[r : r + read_counts[t] - 1],
                        read_ends[r : r + read_counts[t] - 1]) AS x(b, e)
                ON w.begin_key < x.e AND x.b < w.end_key
            WHERE w.version > read_versions[t]
        );
        IF ok THEN
            FOR i IN m .. m + mutation_counts[t] - 1 LOOP
                CASE kinds[i]
                WHEN 0 THEN
                    INSERT INTO ferrymail.kv AS kv (key, value) VALUES (keys[i], vals[i])
                        ON CONFLICT (key) DO UPDATE SET value = excluded.value;
                WHEN 1 THEN
                    DELETE FROM ferrymail.kv WHERE key = keys[i];
                WHEN 2 THEN
                    DELETE FROM ferrymail.kv WHERE key >= keys[i] AND key < vals[i];
                WHEN 3 THEN
                    INSERT INTO ferrymail.kv AS kv (key, value)
                        VALUES (keys[i], ferrymail.add_le(NULL, deltas[i]))
                        ON CONFLICT (key) DO UPDATE SET value = ferrymail.add_le(kv.value, deltas[i]);
                WHEN 4 THEN
                    DELETE FROM ferrymail.kv WHERE key = keys[i] AND value = vals[i];
                END CASE;
            END LOOP;
            INSERT INTO ferrymail.writes (version, begin_key, end_key)
                SELECT this_version, b, e
                FROM unnest(write_begins[m : m + mutation_counts[t] - 1],
                            write_ends[m : m + mutation_counts[t] - 1]) AS x(b, e);
        END IF;
        applied := applied || ok;
        r := r + read_counts[t];
        m := m + mutation_counts[t];
    END LOOP;
    -- No transaction lives past 5 s: what was written 10 s ago can no longer conflict. Kept
    -- short, as every commit's check reads what is left.
    IF this_version % 64 = 0 THEN
        DELETE FROM ferrymail.writes WHERE written < now() - interval '10 seconds';
    END IF;
    RETURN applied;
END $$;
"#;

/// Creates the schema if the database has none, and checks the version of the one it has:
/// another version is [`StoreError::IncompatibleSchema`], naming both.
pub(super) async fn ensure(client: &mut Object) -> Result<()> {
    let transaction = client.transaction().await.map_err(schema_error)?;
    transaction
        .execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
        .await
        .map_err(schema_error)?;
    transaction
        .batch_execute(CREATE_META)
        .await
        .map_err(schema_error)?;
    let found: Option<i64> = transaction
        .query_opt(
            "SELECT value FROM ferrymail.meta WHERE name = 'schema_version'",
            &[],
        )
        .await
        .map_err(schema_error)?
        .map(|row| row.try_get(0))
        .transpose()
        .map_err(query_error)?;
    match found {
        Some(found) if found != SCHEMA_VERSION => {
            return Err(StoreError::IncompatibleSchema {
                found,
                expected: SCHEMA_VERSION,
            });
        }
        Some(_) => {}
        None => {
            transaction
                .execute(
                    "INSERT INTO ferrymail.meta VALUES ('schema_version', $1)",
                    &[&SCHEMA_VERSION],
                )
                .await
                .map_err(schema_error)?;
        }
    }
    transaction
        .batch_execute(CREATE)
        .await
        .map_err(schema_error)?;
    transaction.commit().await.map_err(schema_error)
}
