//! The `ferrymail` binary: one executable, every role.

mod admin_api;
mod check_config;
mod cli;
mod cluster_security;
mod config_args;
mod config_reload;
mod destinations_cli;
mod grpc_server;
mod listeners;
mod operator_cli;
mod queue_bulk_cli;
mod queue_cli;
mod queue_state_arg;
mod restart_keys;
mod role;
mod runtime;
mod services;
mod signals;
mod store_metrics;
mod store_open;
mod store_readiness;

use std::process::ExitCode;

use clap::Parser;
use cli::{Cli, Command};
use ferrymail_config::ConfigSource;

/// jemalloc rather than glibc's malloc: sessions, store pages and delivery buffers are
/// allocated and freed across threads, where glibc's arenas trimmed and refaulted pages and
/// cost a third of the CPU per message under load.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Command::CheckConfig(args) => {
            let source = ConfigSource::file(&args.file);
            let source = match &args.config_dir {
                Some(dir) => source.with_include_dir(dir),
                None => source,
            };
            check_config::run(&source)
        }
        Command::Queue(args) => match queue_command(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("ferrymail queue: {error:#}");
                ExitCode::FAILURE
            }
        },
        Command::Crd => operator_cli::print_crds(),
        Command::Operator(operator_cli::OperatorArgs {
            command: Some(operator_cli::OperatorCommand::Render(args)),
            ..
        }) => operator_cli::render(args),
        Command::ConfigReference => {
            print!("{}", ferrymail_config::reference::markdown());
            ExitCode::SUCCESS
        }
        command => match run_role(&cli, command) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                tracing::error!("{error:#}");
                eprintln!("ferrymail: {error:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn queue_command(args: &queue_cli::QueueArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(queue_cli::run(args))
}

/// `tracing.*` of the configuration, read before logging starts; a configuration that does not
/// load exports nothing here, and the role reports its errors as it starts.
fn trace_settings(source: &ferrymail_config::ConfigSource) -> ferrymail_telemetry::TraceSettings {
    ferrymail_config::load(source)
        .map(|loaded| ferrymail_telemetry::TraceSettings {
            endpoint: loaded.config.tracing.endpoint.clone(),
            service_name: loaded.config.tracing.service_name.clone(),
        })
        .unwrap_or_default()
}

fn run_role(cli: &Cli, command: &Command) -> anyhow::Result<()> {
    let Some((role, args)) = command.role() else {
        return Ok(());
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let controller = match command {
        Command::Operator(args) => Some(args.controller.clone()),
        _ => None,
    };
    // The trace exporter (gRPC) runs on the runtime: started inside it, flushed before it stops.
    let traces = {
        let _inside = runtime.enter();
        let settings = trace_settings(&args.source());
        ferrymail_telemetry::init_telemetry(cli.log_format, role.name(), &settings)?
    };
    let outcome = runtime.block_on(runtime::run(role, args.source(), controller));
    traces.shutdown();
    outcome
}
