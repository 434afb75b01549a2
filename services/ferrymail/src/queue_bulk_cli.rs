//! `ferrymail queue bulk …`: retry, hold, release or cancel the messages a filter selects,
//! a batch per store transaction, resumable from the cursor it prints.

use clap::{Args, ValueEnum};
use ferrymail_rpc::queue::{
    BulkAction, BulkFilter, BulkReport, BulkRequest, GrpcQueue, Priority, QueueService,
};

use crate::queue_state_arg::StateArg;

/// `queue bulk ACTION [filters]`.
#[derive(Debug, Args)]
pub struct BulkArgs {
    /// What to do to each selected message.
    #[arg(value_enum)]
    pub action: ActionArg,
    /// With `cancel`: cancel without a notice to the senders. This or `--notify-sender` is
    /// required, so that whether senders hear of it is a stated choice.
    #[arg(long, conflicts_with = "notify_sender")]
    pub silent: bool,
    /// With `cancel`: send each sender a failure notice (DSN) for its cancelled recipients.
    #[arg(long)]
    pub notify_sender: bool,
    /// Only count the messages the filter selects; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Sender contains this text.
    #[arg(long)]
    pub sender: Option<String>,
    /// Sender at this domain.
    #[arg(long)]
    pub sender_domain: Option<String>,
    /// A recipient is this address.
    #[arg(long)]
    pub recipient: Option<String>,
    /// A recipient at this domain.
    #[arg(long)]
    pub recipient_domain: Option<String>,
    /// A recipient in this state.
    #[arg(long, value_enum)]
    pub state: Option<StateArg>,
    /// Queued at least this long ago (`90s`, `2h`, `3d`).
    #[arg(long)]
    pub older_than: Option<String>,
    /// A recipient's last reply contains this text.
    #[arg(long)]
    pub last_reply: Option<String>,
    /// Priority -9..9.
    #[arg(long, allow_hyphen_values = true)]
    pub priority: Option<i32>,
    /// A recipient goes to this next hop under `queue.outbound.next-hop`: `mx` or a remote's
    /// id.
    #[arg(long)]
    pub next_hop: Option<String>,
    /// Messages per store transaction (the server's default when absent).
    #[arg(long, default_value_t = 0)]
    pub batch_size: u32,
    /// Examine at most this many messages, then print the cursor to go on with.
    #[arg(long)]
    pub limit: Option<u32>,
    /// Go on from this cursor, printed by an earlier run.
    #[arg(long)]
    pub cursor: Option<String>,
}

/// A bulk action on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ActionArg {
    /// The selected live recipients are due now.
    Retry,
    /// The selected messages are held.
    Hold,
    /// The selected messages are released.
    Release,
    /// The selected live recipients are cancelled (requires `--silent` or `--notify-sender`).
    Cancel,
}

impl BulkArgs {
    fn action(&self) -> anyhow::Result<BulkAction> {
        Ok(match self.action {
            ActionArg::Retry => BulkAction::Retry,
            ActionArg::Hold => BulkAction::Hold,
            ActionArg::Release => BulkAction::Release,
            ActionArg::Cancel if self.silent => BulkAction::CancelSilently,
            ActionArg::Cancel if self.notify_sender => BulkAction::CancelWithNotice,
            ActionArg::Cancel => anyhow::bail!(
                "bulk cancel needs --silent (no notice to the senders) or --notify-sender (a \
                 failure notice to each sender)"
            ),
        })
    }

    fn filter(&self) -> anyhow::Result<BulkFilter> {
        let older_than = match &self.older_than {
            None => None,
            Some(text) => Some(
                ferrymail_config::value::parse_duration(text)
                    .map_err(|e| anyhow::anyhow!("--older-than {text:?}: {e}"))?
                    .as_secs(),
            ),
        };
        let priority = match self.priority {
            None => None,
            Some(p) => Some(
                Priority::new(p)
                    .ok_or_else(|| anyhow::anyhow!("--priority {p}: a priority is -9..9"))?,
            ),
        };
        Ok(BulkFilter {
            sender: self.sender.clone(),
            sender_domain: self.sender_domain.clone(),
            recipient: self.recipient.clone(),
            recipient_domain: self.recipient_domain.clone(),
            state: self.state.map(Into::into),
            older_than,
            last_reply: self.last_reply.clone(),
            priority,
            next_hop: self.next_hop.clone(),
        })
    }
}

/// Runs the bulk action: until the whole queue was examined, or up to `--limit` messages.
pub async fn run(queue: &GrpcQueue, args: &BulkArgs, json: bool) -> anyhow::Result<()> {
    let mut request = BulkRequest {
        action: args.action()?,
        filter: args.filter()?,
        dry_run: args.dry_run,
        cursor: args.cursor.clone(),
        batch_size: args.batch_size,
        limit: args.limit.unwrap_or(0),
    };
    let mut total = BulkReport::default();
    loop {
        let report = queue.bulk(request.clone()).await?;
        total.examined += report.examined;
        total.matched += report.matched;
        total.messages_changed += report.messages_changed;
        total.recipients_changed += report.recipients_changed;
        total.cursor = report.cursor;
        if total.cursor.is_none() || args.limit.is_some() {
            break;
        }
        request.cursor = total.cursor.clone();
    }
    if json {
        println!("{}", report_json(args, &total));
    } else {
        println!("{}", report_text(args, &total));
    }
    Ok(())
}

fn action_name(args: &BulkArgs) -> &'static str {
    match args.action {
        ActionArg::Retry => "retry",
        ActionArg::Hold => "hold",
        ActionArg::Release => "release",
        ActionArg::Cancel => "cancel",
    }
}

fn report_json(args: &BulkArgs, r: &BulkReport) -> serde_json::Value {
    ferrymail_admin_api::queue_json::bulk_report(action_name(args), args.dry_run, r)
}

fn report_text(args: &BulkArgs, r: &BulkReport) -> String {
    let mut text = if args.dry_run {
        format!(
            "dry run: {} message(s) selected of {} examined; nothing changed",
            r.matched, r.examined
        )
    } else {
        format!(
            "{}: {} message(s) selected of {} examined, {} changed, {} recipient(s)",
            action_name(args),
            r.matched,
            r.examined,
            r.messages_changed,
            r.recipients_changed
        )
    };
    if let Some(cursor) = &r.cursor {
        text.push_str(&format!("\nmore to examine: go on with --cursor {cursor}"));
    }
    text
}
