//! `ferrymail queue …`: look at and act on the queue of a running installation through its
//! `Queue` gRPC service.

use std::fmt::Write as _;

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use ferrymail_rpc::queue::{
    GrpcQueue, ListFilter, ListRequest, MessageDetail, MessageSummary, QueueId, QueueService,
    RecipientState,
};

/// `ferrymail queue --server URL <command>`.
#[derive(Debug, Args)]
pub struct QueueArgs {
    /// gRPC address of a queue-scheduler (or `all`) process.
    #[arg(
        long,
        default_value = "http://127.0.0.1:50051",
        env = "FERRYMAIL_QUEUE_SERVER"
    )]
    pub server: String,
    /// What to do.
    #[command(subcommand)]
    pub command: QueueCommand,
}

/// Queue commands.
#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Lists queued messages, oldest first.
    List(ListArgs),
    /// Shows one message and the state of each recipient.
    Show {
        /// Queue id.
        id: String,
    },
    /// Schedules recipients (all when none is named) for delivery now.
    Retry {
        /// Queue id.
        id: String,
        /// Recipients to retry.
        recipients: Vec<String>,
    },
    /// Cancels delivery to recipients (all when none is named).
    Cancel {
        /// Queue id.
        id: String,
        /// Recipients to cancel.
        recipients: Vec<String>,
    },
    /// Totals over the whole queue.
    Stats,
}

/// Filters of `queue list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only senders containing this text.
    #[arg(long)]
    pub sender: Option<String>,
    /// Only messages with a recipient in this domain.
    #[arg(long)]
    pub domain: Option<String>,
    /// Only messages with a recipient in this state.
    #[arg(long, value_enum)]
    pub state: Option<StateArg>,
    /// Most messages to show.
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
}

/// A recipient state on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StateArg {
    /// Not attempted yet.
    Pending,
    /// Failed temporarily; will be retried.
    TempFailed,
    /// Failed permanently.
    PermFailed,
    /// Delivered.
    Delivered,
    /// Cancelled by an administrator.
    Cancelled,
}

impl From<StateArg> for RecipientState {
    fn from(state: StateArg) -> Self {
        match state {
            StateArg::Pending => RecipientState::Pending,
            StateArg::TempFailed => RecipientState::TempFailed,
            StateArg::PermFailed => RecipientState::PermFailed,
            StateArg::Delivered => RecipientState::Delivered,
            StateArg::Cancelled => RecipientState::Cancelled,
        }
    }
}

fn summary_line(m: &MessageSummary) -> String {
    format!(
        "{}  {:>10}  {:>3} rcpt  prio {:>2}  <{}>",
        m.queue_id,
        m.size,
        m.recipients,
        m.priority.get(),
        m.sender
    )
}

fn detail(d: &MessageDetail) -> String {
    let mut out = summary_line(&d.summary);
    let _ = write!(out, "\narrived {} (unix)", d.summary.arrival);
    for r in &d.recipients {
        let _ = write!(
            out,
            "\n  {:<40} {:?}, {} attempt(s)",
            r.address, r.state, r.attempts
        );
        if let Some(next) = r.next_attempt {
            let _ = write!(out, ", next at {next} (unix)");
        }
        if let Some(reply) = &r.last_reply {
            let _ = write!(out, "\n    last reply: {reply}");
        }
    }
    out
}

/// Runs one queue command and prints its result.
pub async fn run(args: &QueueArgs) -> anyhow::Result<()> {
    let queue = GrpcQueue::connect(&args.server)
        .with_context(|| format!("queue server {}", args.server))?;
    match &args.command {
        QueueCommand::List(list) => {
            let request = ListRequest {
                page_size: list.limit,
                page_token: None,
                filter: ListFilter {
                    sender: list.sender.clone(),
                    recipient_domain: list.domain.clone(),
                    state: list.state.map(Into::into),
                },
            };
            let page = queue.list(request).await?;
            for message in &page.messages {
                println!("{}", summary_line(message));
            }
            if page.next_page_token.is_some() {
                println!("(more: raise --limit or narrow the filters)");
            }
        }
        QueueCommand::Show { id } => {
            println!("{}", detail(&queue.get(&QueueId::new(id.clone())).await?))
        }
        QueueCommand::Retry { id, recipients } => {
            let n = queue.retry(&QueueId::new(id.clone()), recipients).await?;
            println!("{n} recipient(s) scheduled for delivery now");
        }
        QueueCommand::Cancel { id, recipients } => {
            let n = queue.cancel(&QueueId::new(id.clone()), recipients).await?;
            println!("{n} recipient(s) cancelled");
        }
        QueueCommand::Stats => {
            let s = queue.stats().await?;
            let r = &s.recipients;
            println!("messages {}  bytes {}", s.messages, s.bytes);
            println!(
                "recipients: pending {}  temp-failed {}  perm-failed {}  delivered {}  cancelled {}",
                r.pending, r.temp_failed, r.perm_failed, r.delivered, r.cancelled
            );
            if let Some(oldest) = s.oldest_arrival {
                println!("oldest arrival {oldest} (unix)");
            }
        }
    }
    Ok(())
}
