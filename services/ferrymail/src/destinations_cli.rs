//! `ferrymail queue pause|resume|paused`: pausing and resuming delivery to a destination, and
//! what is paused or suspended after failed connections.

use std::fmt::Write as _;

use clap::{ArgGroup, Args};
use ferrymail_rpc::queue::{DestinationScope, Destinations, GrpcQueue, QueueService};

/// Which destination: exactly one of `--domain`, `--remote`, `--all`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("destination").required(true).args(["domain", "remote", "all"])))]
pub struct DestinationArgs {
    /// Recipients of this domain.
    #[arg(long)]
    pub domain: Option<String>,
    /// Deliveries through `remote.<id>`: the id.
    #[arg(long)]
    pub remote: Option<String>,
    /// Every delivery: the whole queue.
    #[arg(long)]
    pub all: bool,
}

impl DestinationArgs {
    fn scope(&self) -> DestinationScope {
        match (&self.domain, &self.remote) {
            (Some(domain), _) => DestinationScope::Domain(domain.clone()),
            (None, Some(remote)) => {
                // `remote.relay` and `relay` both name remote.relay.
                let id = remote.strip_prefix("remote.").unwrap_or(remote);
                DestinationScope::Remote(id.to_owned())
            }
            (None, None) => DestinationScope::All,
        }
    }
}

/// `queue pause`.
pub async fn pause(queue: &GrpcQueue, args: &DestinationArgs) -> anyhow::Result<()> {
    let scope = args.scope();
    if queue.pause(scope.clone()).await? {
        println!("{scope} paused");
    } else {
        println!("{scope} was already paused");
    }
    Ok(())
}

/// `queue resume`.
pub async fn resume(queue: &GrpcQueue, args: &DestinationArgs) -> anyhow::Result<()> {
    let scope = args.scope();
    let resumed = queue.resume(scope.clone()).await?;
    if resumed.resumed {
        println!("{scope} resumed");
    } else {
        println!("{scope} was not paused");
    }
    println!(
        "{} recipient(s) deferred by a pause scheduled for delivery now",
        resumed.rescheduled
    );
    Ok(())
}

/// `queue paused`: every pause in force and every destination with failed connections, in
/// text or, with `json`, as one JSON object.
pub async fn paused(queue: &GrpcQueue, json: bool) -> anyhow::Result<()> {
    let destinations = queue.destinations().await?;
    if json {
        println!(
            "{}",
            ferrymail_admin_api::queue_json::destinations(&destinations)
        );
    } else {
        print!("{}", describe(&destinations));
    }
    Ok(())
}

/// The destinations as `queue paused` and `queue stats` print them.
pub fn describe(destinations: &Destinations) -> String {
    let mut out = String::new();
    if destinations.paused.is_empty() {
        out.push_str("paused: none\n");
    }
    for paused in &destinations.paused {
        let _ = writeln!(
            out,
            "paused: {} since {} (unix)",
            paused.scope, paused.since
        );
    }
    for s in &destinations.suspended {
        let _ = match s.until {
            Some(until) => writeln!(
                out,
                "suspended: {} until {until} (unix) after {} failed connection(s): {}",
                s.destination, s.failures, s.reason
            ),
            None => writeln!(
                out,
                "failing: {} {} failed connection(s), not suspended: {}",
                s.destination, s.failures, s.reason
            ),
        };
    }
    if destinations.suspended.is_empty() {
        out.push_str("suspended: none\n");
    }
    out
}
