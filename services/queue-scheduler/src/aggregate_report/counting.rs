//! Counting prepared report rows in a transaction of their own, and the metric and log of
//! what each came to.

use std::sync::Arc;

use ferrymail_store::StoreError;

use super::building::label;
use crate::model::report_rows::{self, PreparedRow, Recorded};
use crate::service::Queue;

impl Queue {
    /// Counts `rows` in one transaction.
    pub(crate) async fn count_rows(&self, rows: Vec<PreparedRow>) -> Result<(), StoreError> {
        let (keys, rows) = (self.keys.clone(), Arc::new(rows));
        let written = rows.clone();
        let recorded = self
            .store
            .transact(move |tx| {
                let (keys, rows) = (keys.clone(), written.clone());
                Box::pin(async move {
                    let mut recorded = Vec::with_capacity(rows.len());
                    for row in rows.iter() {
                        recorded.push(report_rows::record(tx, &keys, row).await?);
                    }
                    Ok(recorded)
                })
            })
            .await?;
        for (row, recorded) in rows.iter().zip(recorded) {
            self.note_recorded(row, recorded);
        }
        Ok(())
    }

    /// Counts and logs what recording `row` did.
    pub(crate) fn note_recorded(&self, row: &PreparedRow, recorded: Recorded) {
        self.metrics
            .report_recorded(row.kind, recorded == Recorded::Counted);
        if recorded == Recorded::Overflow {
            tracing::warn!(domain = %row.domain, period_start = row.start, max_records = row.max_rows, kind = label(row.kind), "report rows full for this period: result left out of the rows (counted as left out)");
        }
    }
}
