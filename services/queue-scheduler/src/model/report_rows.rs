//! Aggregate report rows, of DMARC (RFC 7489 §7.2) and SMTP TLS reports (RFC 8460) alike:
//! per policy domain and reporting period, one row per distinct value (DMARC: source
//! address, disposition, results, identifiers; TLS: policy, result type, hosts), each
//! counted by atomic add, so that results counted in the same row never conflict; the
//! policy the domain published; and the mark that the period's report is due.
//!
//! A DMARC row is written by the enqueue of the message it counts, in the enqueue's
//! transaction; a TLS row after the delivery attempt it counts. Rows are bounded per domain
//! and period (`max-records`): past the bound, results that would open a new row are only
//! counted (`over`). The report's builder reads the rows in pages and deletes them all, with
//! the due mark, in the transaction that queues the report.

use ferrymail_store::{KeyRange, KeyValue, RangeOptions, StoreError, Transaction, decode_counter};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::model::keys::Keys;
pub(crate) use crate::model::keys::ReportKind;

/// One evaluation ready to be counted: prepared outside the transaction, so every run of a
/// retried transaction writes the same.
#[derive(Debug, Clone)]
pub(crate) struct PreparedRow {
    /// Which report it counts for.
    pub(crate) kind: ReportKind,
    /// The policy domain.
    pub(crate) domain: String,
    /// Its reporting period, Unix seconds.
    pub(crate) start: u64,
    /// The period's end, Unix seconds.
    pub(crate) end: u64,
    /// The row, as JSON (its count is kept apart).
    pub(crate) row: Vec<u8>,
    /// What identifies the row: a hash of `row`.
    pub(crate) hash: [u8; 16],
    /// The published policy, as JSON.
    pub(crate) policy: Vec<u8>,
    /// `max-records`.
    pub(crate) max_rows: u64,
}

impl PreparedRow {
    /// The row `record` (count 0) of `kind`'s report of `domain` under `policy`, in the
    /// period of `period_s` seconds that holds `now_s`.
    pub(crate) fn new(
        kind: ReportKind,
        domain: String,
        record: &impl Serialize,
        policy: &impl Serialize,
        now_s: u64,
        period_s: u64,
        max_rows: u64,
    ) -> Result<Self, serde_json::Error> {
        let period_s = period_s.max(1);
        let start = now_s - now_s % period_s;
        let row = serde_json::to_vec(record)?;
        let digest = Sha256::digest(&row);
        let mut hash = [0u8; 16];
        hash.copy_from_slice(&digest[..16]);
        Ok(Self {
            kind,
            domain,
            start,
            end: start.saturating_add(period_s),
            row,
            hash,
            policy: serde_json::to_vec(policy)?,
            max_rows,
        })
    }
}

/// What [`record`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recorded {
    /// Counted in a row.
    Counted,
    /// Left out: the period has `max-records` rows already and this would open another.
    Overflow,
}

/// Counts `row` in `tx`.
pub(crate) async fn record(
    tx: &Transaction,
    keys: &Keys,
    row: &PreparedRow,
) -> Result<Recorded, StoreError> {
    let (kind, domain, start) = (row.kind, row.domain.as_str(), row.start);
    let row_key = keys.report_row(kind, domain, start, &row.hash, 0);
    // The row is read only to know whether it is new; it never changes once written, so
    // messages counted in an existing row do not conflict.
    if tx.get(&row_key).await?.is_none() {
        let distinct_key = keys.report_distinct(kind, domain, start);
        let distinct = tx
            .get(&distinct_key)
            .await?
            .map_or(0, |v| decode_counter(&v));
        if u64::try_from(distinct).unwrap_or(0) >= row.max_rows {
            tx.atomic_add(&keys.report_overflow(kind, domain, start), 1)?;
            return Ok(Recorded::Overflow);
        }
        tx.set(&row_key, &row.row)?;
        tx.atomic_add(&distinct_key, 1)?;
        tx.set(&keys.report_policy(kind, domain, start), &row.policy)?;
        tx.set(&keys.report_due(kind, row.end, domain, start), &[])?;
    }
    tx.atomic_add(&keys.report_row(kind, domain, start, &row.hash, 1), 1)?;
    Ok(Recorded::Counted)
}

/// A report that is due: its domain and period.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct DuePeriod {
    /// Which report.
    pub(crate) kind: ReportKind,
    /// The policy domain.
    pub(crate) domain: String,
    /// Start of the period, Unix seconds.
    pub(crate) start: u64,
    /// End of the period, Unix seconds.
    pub(crate) end: u64,
}

/// Up to `limit` reports of `kind` due at or before `now_s`, oldest first.
pub(crate) async fn due(
    tx: &Transaction,
    keys: &Keys,
    kind: ReportKind,
    now_s: u64,
    limit: usize,
) -> Result<Vec<DuePeriod>, StoreError> {
    let options = RangeOptions {
        limit,
        reverse: false,
    };
    let page = tx
        .get_range(&keys.report_due_until(kind, now_s), options)
        .await?;
    Ok(page
        .pairs
        .iter()
        .filter_map(|pair| {
            let (end, domain, start) = keys.parse_report_due(kind, &pair.key)?;
            Some(DuePeriod {
                kind,
                domain,
                start,
                end,
            })
        })
        .collect())
}

/// One page of a period's rows: each row with its count, and where the next page starts
/// (`None` after the last).
pub(crate) struct RowPage<R> {
    /// The rows and their counts.
    pub(crate) rows: Vec<(R, u64)>,
    /// The range of the rows not read yet.
    pub(crate) rest: Option<KeyRange>,
    /// Rows that could not be read back (a format from another version): left out.
    pub(crate) unreadable: usize,
}

/// Reads up to `limit` rows of `range` (a period's rows of `kind`, or what is left of them).
pub(crate) async fn read_rows<R: DeserializeOwned>(
    tx: &Transaction,
    keys: &Keys,
    kind: ReportKind,
    range: &KeyRange,
    limit: usize,
) -> Result<RowPage<R>, StoreError> {
    // Each row has two keys, its record and its count; a page may cut a row in two, and
    // its first key is then read again with the next page.
    let options = RangeOptions {
        limit: limit.saturating_mul(2).max(2),
        reverse: false,
    };
    let page = tx.get_range(range, options).await?;
    let mut rows = Vec::new();
    let mut unreadable = 0;
    let mut pending: Option<(Vec<u8>, Option<R>)> = None;
    let mut resume_at = None;
    for KeyValue { key, value } in &page.pairs {
        let Some((hash, part)) = keys.parse_report_row(kind, key) else {
            continue;
        };
        match part {
            0 => {
                resume_at = Some(key.clone());
                pending = Some((hash, serde_json::from_slice(value).ok()));
            }
            _ => match pending.take() {
                Some((row_hash, Some(record))) if row_hash == hash => {
                    let count = u64::try_from(decode_counter(value)).unwrap_or(0);
                    rows.push((record, count));
                    resume_at = None;
                }
                Some((row_hash, None)) if row_hash == hash => {
                    unreadable += 1;
                    resume_at = None;
                }
                _ => {}
            },
        }
    }
    let rest = if page.more {
        let begin = match (resume_at, page.pairs.last()) {
            (Some(row_start), _) => row_start,
            (None, Some(last)) => ferrymail_store::key_after(&last.key),
            (None, None) => {
                return Ok(RowPage {
                    rows,
                    rest: None,
                    unreadable,
                });
            }
        };
        Some(KeyRange::new(begin, range.end.clone()))
    } else {
        None
    };
    Ok(RowPage {
        rows,
        rest,
        unreadable,
    })
}

/// The policy `period`'s domain published, if it could be read.
pub(crate) async fn policy<P: DeserializeOwned>(
    tx: &Transaction,
    keys: &Keys,
    period: &DuePeriod,
) -> Result<Option<P>, StoreError> {
    let value = tx
        .get(&keys.report_policy(period.kind, &period.domain, period.start))
        .await?;
    Ok(value.and_then(|v| serde_json::from_slice(&v).ok()))
}

/// How many evaluations of `period` were left out past the row bound.
pub(crate) async fn overflow(
    tx: &Transaction,
    keys: &Keys,
    period: &DuePeriod,
) -> Result<u64, StoreError> {
    let value = tx
        .get(&keys.report_overflow(period.kind, &period.domain, period.start))
        .await?;
    Ok(value.map_or(0, |v| u64::try_from(decode_counter(&v)).unwrap_or(0)))
}

/// Deletes everything kept of `period`: rows, counts, policy, due mark, retries, lease.
pub(crate) fn clear(tx: &Transaction, keys: &Keys, period: &DuePeriod) -> Result<(), StoreError> {
    let (kind, domain, start) = (period.kind, period.domain.as_str(), period.start);
    tx.clear_range(&keys.report_rows(kind, domain, start))?;
    tx.clear(&keys.report_distinct(kind, domain, start))?;
    tx.clear(&keys.report_overflow(kind, domain, start))?;
    tx.clear(&keys.report_policy(kind, domain, start))?;
    tx.clear(&keys.report_due(kind, period.end, domain, start))?;
    tx.clear(&keys.report_retry(kind, domain, start))?;
    tx.clear(&keys.report_lease(kind, domain, start))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::Arc;

    use ferrymail_store::{Store, StoreOptions};
    use mail_auth::report::{ActionDisposition, PolicyPublished, Record};

    use super::*;

    const DAY: u64 = 86_400;
    const NOW: u64 = 1_700_000_123;

    fn row(ip: &str, max_rows: u64) -> PreparedRow {
        let record = Record::new()
            .with_source_ip(ip.parse().unwrap())
            .with_action_disposition(ActionDisposition::None)
            .with_header_from("example.org");
        PreparedRow::new(
            ReportKind::Dmarc,
            "example.org".into(),
            &record,
            &PolicyPublished::default(),
            NOW,
            DAY,
            max_rows,
        )
        .unwrap()
    }

    async fn count(store: &Store, keys: &Arc<Keys>, row: PreparedRow) -> Recorded {
        let (keys, row) = (keys.clone(), Arc::new(row));
        store
            .transact(move |tx| {
                let (keys, row) = (keys.clone(), row.clone());
                Box::pin(async move { record(tx, &keys, &row).await })
            })
            .await
            .unwrap()
    }

    /// Every row of the period, read `page` rows at a time.
    async fn all_rows(store: &Store, keys: &Arc<Keys>, page: usize) -> Vec<(String, u64)> {
        let mut rows = Vec::new();
        let mut range = Some(keys.report_rows(ReportKind::Dmarc, "example.org", NOW - NOW % DAY));
        while let Some(current) = range.take() {
            let k = keys.clone();
            let read = store
                .transact(move |tx| {
                    let (k, current) = (k.clone(), current.clone());
                    Box::pin(async move {
                        read_rows::<Record>(tx, &k, ReportKind::Dmarc, &current, page).await
                    })
                })
                .await
                .unwrap();
            rows.extend(
                read.rows
                    .into_iter()
                    .map(|(r, n)| (r.source_ip().unwrap().to_string(), n)),
            );
            range = read.rest;
        }
        rows.sort();
        rows
    }

    #[tokio::test]
    async fn evaluations_add_up_per_row_and_the_bound_leaves_new_rows_out() {
        let dir = tempfile::tempdir().unwrap();
        // Every closure runs twice, the first run discarded: counting must not depend on it.
        let options = StoreOptions {
            run_closures_twice: true,
            ..StoreOptions::default()
        };
        let store = Store::open_embedded(dir.path(), options).unwrap();
        let keys = Arc::new(Keys::new(store.root()));
        for _ in 0..3 {
            assert_eq!(
                count(&store, &keys, row("192.0.2.1", 2)).await,
                Recorded::Counted
            );
        }
        assert_eq!(
            count(&store, &keys, row("192.0.2.2", 2)).await,
            Recorded::Counted
        );
        // A third distinct row is past the bound; the existing ones still count.
        assert_eq!(
            count(&store, &keys, row("192.0.2.3", 2)).await,
            Recorded::Overflow
        );
        assert_eq!(
            count(&store, &keys, row("192.0.2.2", 2)).await,
            Recorded::Counted
        );
        let expected = vec![("192.0.2.1".to_owned(), 3), ("192.0.2.2".to_owned(), 2)];
        for page in [1, 2, 500] {
            assert_eq!(
                all_rows(&store, &keys, page).await,
                expected,
                "pages of {page}"
            );
        }

        let k = keys.clone();
        let (due_now, due_before_end, left_out) = store
            .transact(move |tx| {
                let k = k.clone();
                Box::pin(async move {
                    let end = NOW - NOW % DAY + DAY;
                    let now = due(tx, &k, ReportKind::Dmarc, end, 10).await?;
                    let early = due(tx, &k, ReportKind::Dmarc, end - 1, 10).await?;
                    let left_out = overflow(tx, &k, &now[0]).await?;
                    Ok((now, early, left_out))
                })
            })
            .await
            .unwrap();
        assert_eq!(due_before_end, Vec::new(), "not due before the period ends");
        assert_eq!(
            due_now,
            vec![DuePeriod {
                kind: ReportKind::Dmarc,
                domain: "example.org".into(),
                start: NOW - NOW % DAY,
                end: NOW - NOW % DAY + DAY,
            }]
        );
        assert_eq!(left_out, 1);

        let (k, period) = (keys.clone(), due_now[0].clone());
        store
            .transact(move |tx| {
                let (k, period) = (k.clone(), period.clone());
                Box::pin(async move { clear(tx, &k, &period) })
            })
            .await
            .unwrap();
        assert_eq!(all_rows(&store, &keys, 10).await, Vec::new());
    }

    #[tokio::test]
    async fn each_kind_keeps_its_own_rows_and_due_marks() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_embedded(dir.path(), StoreOptions::default()).unwrap();
        let keys = Arc::new(Keys::new(store.root()));
        let tls = PreparedRow::new(
            ReportKind::Tls,
            "example.org".into(),
            &"a TLS row",
            &(),
            NOW,
            DAY,
            10,
        )
        .unwrap();
        for _ in 0..2 {
            assert_eq!(count(&store, &keys, tls.clone()).await, Recorded::Counted);
        }
        assert_eq!(
            count(&store, &keys, row("192.0.2.1", 10)).await,
            Recorded::Counted
        );
        let k = keys.clone();
        let (tls_due, tls_rows, dmarc_due) = store
            .transact(move |tx| {
                let k = k.clone();
                Box::pin(async move {
                    let end = NOW - NOW % DAY + DAY;
                    let tls_due = due(tx, &k, ReportKind::Tls, end, 10).await?;
                    let range = k.report_rows(ReportKind::Tls, "example.org", NOW - NOW % DAY);
                    let rows = read_rows::<String>(tx, &k, ReportKind::Tls, &range, 10).await?;
                    let dmarc_due = due(tx, &k, ReportKind::Dmarc, end, 10).await?;
                    Ok((tls_due, rows.rows, dmarc_due))
                })
            })
            .await
            .unwrap();
        assert_eq!(tls_rows, vec![("a TLS row".to_owned(), 2)]);
        assert_eq!(tls_due.len(), 1);
        assert_eq!(tls_due[0].kind, ReportKind::Tls);
        assert_eq!(dmarc_due.len(), 1);
        assert_eq!(dmarc_due[0].kind, ReportKind::Dmarc);
        assert_eq!(
            all_rows(&store, &keys, 10).await.len(),
            1,
            "DMARC rows apart"
        );
    }
}
