//! `ferrymail queue …`: look at and act on the queue of a running installation through its
//! `Queue` gRPC service.

use std::fmt::Write as _;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use ferrymail_rpc::RpcError;
use ferrymail_rpc::cluster_tls::{ChannelSecurity, ClusterTls, Credentials};
use ferrymail_rpc::queue::{
    GrpcQueue, ListFilter, ListRequest, MessageDetail, MessageSummary, QueueError, QueueId,
    QueueService, QueueStats,
};
use tonic::Code;

use crate::queue_state_arg::StateArg;
use ferrymail_admin_api::queue_json;

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
    /// Certificate (PEM) naming the admin role (`admin.<domain>`), for an https:// server.
    #[arg(long, env = "FERRYMAIL_QUEUE_CERT", requires_all = ["key", "ca"])]
    pub cert: Option<String>,
    /// Its private key (PEM).
    #[arg(long, env = "FERRYMAIL_QUEUE_KEY", requires_all = ["cert", "ca"])]
    pub key: Option<String>,
    /// The cluster's CA bundle (PEM), which issued the server's certificate.
    #[arg(long, env = "FERRYMAIL_QUEUE_CA", requires_all = ["cert", "key"])]
    pub ca: Option<String>,
    /// The domain of role names (`cluster.tls.domain` of the installation).
    #[arg(
        long,
        env = "FERRYMAIL_QUEUE_DOMAIN",
        default_value = "ferrymail.internal"
    )]
    pub domain: String,
    /// Print JSON, one object per line (one per message for `list`), instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: QueueCommand,
}

/// Queue commands.
#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Lists queued messages, oldest first.
    List(ListArgs),
    /// Shows one message and the state of each recipient, or every queued message with a
    /// Message-ID.
    Show {
        /// Queue id.
        #[arg(required_unless_present = "message_id")]
        id: Option<String>,
        /// Find the messages by their Message-ID header instead (brackets optional).
        #[arg(long, conflicts_with = "id")]
        message_id: Option<String>,
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
        /// Send the sender a failure notice (RFC 3464) for the cancelled recipients; without
        /// it the cancel is silent, as `postsuper -d`.
        #[arg(long)]
        notify_sender: bool,
    },
    /// Totals over the whole queue, with the paused and suspended destinations.
    Stats,
    /// Pauses delivery to a destination for every scheduler, until resumed.
    Pause(crate::destinations_cli::DestinationArgs),
    /// Resumes delivery to a paused destination; what its pause deferred is due at once.
    Resume(crate::destinations_cli::DestinationArgs),
    /// Lists what is paused, and the destinations suspended after failed connections.
    Paused,
    /// Puts a message on hold: no scheduler attempts it, and it does not expire, until it is
    /// released.
    Hold {
        /// Queue id.
        id: String,
    },
    /// Releases a held message: its recipients are due again on their schedule.
    Release {
        /// Queue id.
        id: String,
    },
    /// Retries, holds, releases or cancels every message a filter selects.
    Bulk(crate::queue_bulk_cli::BulkArgs),
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

fn summary_line(m: &MessageSummary) -> String {
    format!(
        "{}  {:>10}  {:>3} rcpt  prio {:>2}  <{}>{}",
        m.queue_id,
        m.size,
        m.recipients,
        m.priority.get(),
        m.sender,
        if m.held { "  HELD" } else { "" }
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

/// How to speak to the server: mutual TLS with `--cert`, `--key` and `--ca`, else plain text.
fn security(args: &QueueArgs) -> anyhow::Result<ChannelSecurity> {
    let (Some(cert), Some(key), Some(ca)) = (&args.cert, &args.key, &args.ca) else {
        if args.server.starts_with("https://") {
            anyhow::bail!(
                "{} is mutual TLS: give --cert, --key (a certificate naming admin.{}) and --ca",
                args.server,
                args.domain
            );
        }
        return Ok(ChannelSecurity::PlainText);
    };
    let credentials =
        Credentials::from_files(cert, key, ca, &args.domain).context("the admin certificate")?;
    Ok(ChannelSecurity::MutualTls(ClusterTls::new(credentials)))
}

/// Runs one queue command and prints its result; a failure says what went wrong in one line.
pub async fn run(args: &QueueArgs) -> anyhow::Result<()> {
    command(args)
        .await
        .map_err(|error| match error.downcast::<QueueError>() {
            Ok(error) => anyhow::anyhow!(failure(&args.server, error)),
            Err(other) => other,
        })
}

/// What a failed call says to the person who made it.
fn failure(server: &str, error: QueueError) -> String {
    let QueueError::Transport(RpcError::Transport(status)) = &error else {
        return error.to_string();
    };
    match status.code() {
        Code::PermissionDenied | Code::Unauthenticated => {
            format!("{server} refused the call: {}", status.message())
        }
        _ => format!("{server} could not be asked: {}", status.message()),
    }
}

async fn command(args: &QueueArgs) -> anyhow::Result<()> {
    let queue = GrpcQueue::connect_with(&args.server, &security(args)?)
        .with_context(|| format!("queue server {}", args.server))?;
    match &args.command {
        QueueCommand::List(list) => list_messages(&queue, list, args.json).await?,
        QueueCommand::Show { id, message_id } => {
            let ids = match (id, message_id) {
                (Some(id), _) => vec![QueueId::new(id.clone())],
                (None, Some(message_id)) => queue.find_by_message_id(message_id).await?,
                (None, None) => anyhow::bail!("give a queue id or --message-id"),
            };
            for id in &ids {
                let message = queue.get(id).await?;
                print(
                    args.json,
                    || detail(&message),
                    || queue_json::detail(&message),
                );
            }
        }
        QueueCommand::Retry { id, recipients } => {
            let n = queue.retry(&QueueId::new(id.clone()), recipients).await?;
            print(
                args.json,
                || format!("{n} recipient(s) scheduled for delivery now"),
                || queue_json::change("retry", id, n.into()),
            );
        }
        QueueCommand::Cancel {
            id,
            recipients,
            notify_sender,
        } => {
            let queue_id = QueueId::new(id.clone());
            let n = if *notify_sender {
                queue.cancel_with_notice(&queue_id, recipients).await?
            } else {
                queue.cancel(&queue_id, recipients).await?
            };
            print(
                args.json,
                || format!("{n} recipient(s) cancelled"),
                || queue_json::change("cancel", id, n.into()),
            );
        }
        QueueCommand::Hold { id } => {
            let changed = queue.hold(&QueueId::new(id.clone())).await?;
            print(
                args.json,
                || held_line(id, changed, "held", "was already held"),
                || queue_json::change("hold", id, changed.into()),
            );
        }
        QueueCommand::Release { id } => {
            let changed = queue.release(&QueueId::new(id.clone())).await?;
            print(
                args.json,
                || held_line(id, changed, "released", "was not held"),
                || queue_json::change("release", id, changed.into()),
            );
        }
        QueueCommand::Bulk(bulk) => crate::queue_bulk_cli::run(&queue, bulk, args.json).await?,
        QueueCommand::Stats => {
            let s = queue.stats().await?;
            // A server that cannot tell of its destinations still gives its totals.
            let destinations = queue.destinations().await;
            if args.json {
                let mut value = queue_json::stats(&s);
                value["destinations"] = match &destinations {
                    Ok(destinations) => queue_json::destinations(destinations),
                    Err(error) => serde_json::json!({ "unknown": error.to_string() }),
                };
                println!("{value}");
            } else {
                println!("{}", stats_text(&s));
                match &destinations {
                    Ok(destinations) => {
                        print!("{}", crate::destinations_cli::describe(destinations));
                    }
                    Err(error) => println!("destinations: unknown ({error})"),
                }
            }
        }
        QueueCommand::Pause(destination) => {
            crate::destinations_cli::pause(&queue, destination).await?;
        }
        QueueCommand::Resume(destination) => {
            crate::destinations_cli::resume(&queue, destination).await?;
        }
        QueueCommand::Paused => crate::destinations_cli::paused(&queue, args.json).await?,
    }
    Ok(())
}

/// Prints the text or, with `--json`, the JSON form of a result.
fn print(json: bool, text: impl FnOnce() -> String, value: impl FnOnce() -> serde_json::Value) {
    if json {
        println!("{}", value());
    } else {
        println!("{}", text());
    }
}

fn held_line(id: &str, changed: bool, done: &str, unchanged: &str) -> String {
    if changed {
        format!("{id} {done}")
    } else {
        format!("{id} {unchanged}")
    }
}

async fn list_messages(queue: &GrpcQueue, list: &ListArgs, json: bool) -> anyhow::Result<()> {
    let request = ListRequest {
        page_size: list.limit,
        page_token: None,
        filter: ListFilter {
            sender: list.sender.clone(),
            recipient_domain: list.domain.clone(),
            state: list.state.map(Into::into),
            ..ListFilter::default()
        },
    };
    let page = queue.list(request).await?;
    for message in &page.messages {
        print(
            json,
            || summary_line(message),
            || queue_json::summary(message),
        );
    }
    // In JSON every line is a message: whether more remain is for the text form only.
    if page.next_page_token.is_some() && !json {
        println!("(more: raise --limit or narrow the filters)");
    }
    Ok(())
}

fn stats_text(s: &QueueStats) -> String {
    let r = &s.recipients;
    let mut out = format!("messages {}  bytes {}", s.messages, s.bytes);
    let _ = write!(
        out,
        "\nrecipients: pending {}  temp-failed {}  perm-failed {}  delivered {}  cancelled {}",
        r.pending, r.temp_failed, r.perm_failed, r.delivered, r.cancelled
    );
    if let Some(oldest) = s.oldest_arrival {
        let _ = write!(out, "\noldest arrival {oldest} (unix)");
    }
    out
}
