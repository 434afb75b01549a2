//! DMARC aggregate reports (RFC 7489 §7.2), sent exactly once per domain and period across
//! every scheduler.
//!
//! Recording: the ingress sends each message's DMARC evaluation with its body when the
//! author domain asked for reports (`rua`) and `report.dmarc.aggregate.send` is on; the
//! enqueue counts it in the domain's row of the current period (`model::report_rows`), in the
//! message's own transaction: no extra round trip, one row update per accepted message.
//!
//! Reporting (`aggregate_report::sender`, this module's `build`): every scheduler looks for periods that have ended. For each, one
//! takes a lease in the store; it reads the rows in pages (memory is bounded by
//! `max-records` rows, whatever the number of messages), builds the report with mail-auth's
//! report types, looks up the domain's `rua` again with the external-destination check
//! (RFC 7489 §7.1) and size limits, and in one transaction that first checks its lease still
//! holds queues the report as ordinary mail and deletes the rows and the due mark. A
//! scheduler that dies before that commit leaves everything for the next lease holder; one
//! that commits leaves nothing to report again. A DNS failure keeps the rows and tries
//! again later, a bounded number of times, then drops the report with a warning.

pub(crate) mod build;
mod message;
mod recording;
mod row;
