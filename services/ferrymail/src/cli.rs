//! Command-line interface.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use ferrymail_telemetry::LogFormat;

use crate::config_args::ConfigArgs;
use crate::role::Role;

/// ferrymail: a Kubernetes-native, horizontally scalable mail transfer agent.
#[derive(Debug, Parser)]
#[command(name = "ferrymail", version, about)]
pub struct Cli {
    /// Log format on standard error.
    #[arg(long, global = true, default_value = "text", value_parser = parse_log_format, env = "FERRYMAIL_LOG_FORMAT")]
    pub log_format: LogFormat,

    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

fn parse_log_format(text: &str) -> Result<LogFormat, String> {
    text.parse()
        .map_err(|e: ferrymail_telemetry::TelemetryError| e.to_string())
}

/// Roles and tools.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Every role in one process, wired in-process, on the embedded store.
    All(ConfigArgs),
    /// The stateless SMTP/LMTP front door.
    SmtpIngress(ConfigArgs),
    /// The shared durable queue and outbound delivery.
    QueueScheduler(ConfigArgs),
    /// Authentication and recipient validation against remote servers.
    DirectoryProxy(ConfigArgs),
    /// Renders RemoteHost and Directory resources into configuration (`operator render`
    /// does it offline from YAML files).
    Operator(crate::operator_cli::OperatorArgs),
    /// Prints the RemoteHost and Directory CustomResourceDefinitions (YAML).
    Crd,
    /// Validates a configuration and prints every problem found.
    CheckConfig(CheckConfigArgs),
    /// Prints the configuration reference (Markdown) generated from the key catalogue.
    ConfigReference,
    /// Lists, shows, retries, cancels, holds and releases queued messages of a running
    /// installation.
    Queue(crate::queue_cli::QueueArgs),
}

impl Command {
    /// The role this command runs, if it runs one.
    pub fn role(&self) -> Option<(Role, &ConfigArgs)> {
        match self {
            Command::All(args) => Some((Role::All, args)),
            Command::SmtpIngress(args) => Some((Role::SmtpIngress, args)),
            Command::QueueScheduler(args) => Some((Role::QueueScheduler, args)),
            Command::DirectoryProxy(args) => Some((Role::DirectoryProxy, args)),
            Command::Operator(args) if args.command.is_none() => {
                Some((Role::Operator, &args.config))
            }
            Command::Operator(_)
            | Command::Crd
            | Command::CheckConfig(_)
            | Command::ConfigReference
            | Command::Queue(_) => None,
        }
    }
}

/// `check-config FILE [--config-dir DIR]`.
#[derive(Debug, Args)]
pub struct CheckConfigArgs {
    /// Main configuration file.
    pub file: PathBuf,
    /// Directory of further `*.toml` files merged after the main file.
    #[arg(long = "config-dir")]
    pub config_dir: Option<PathBuf>,
}
