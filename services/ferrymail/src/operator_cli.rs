//! `ferrymail crd`, `ferrymail operator render` and the operator role's controller.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Subcommand};
use ferrymail_operator::controller::{self, Context, ReconcileMetrics, Settings};
use ferrymail_operator::manifests::Manifests;
use ferrymail_operator::render::{DIRECTORIES_FILE, REMOTES_FILE, RenderSettings};
use ferrymail_rpc::directory::GrpcDirectory;
use ferrymail_telemetry::{Health, Metrics};
use tokio_util::sync::CancellationToken;

use crate::config_args::ConfigArgs;

/// `operator [render …]`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct OperatorArgs {
    /// An offline tool instead of the role.
    #[command(subcommand)]
    pub command: Option<OperatorCommand>,
    /// The role's own configuration (admin listener).
    #[command(flatten)]
    pub config: ConfigArgs,
    /// What the controller watches and writes.
    #[command(flatten)]
    pub controller: ControllerArgs,
}

/// Offline operator tools.
#[derive(Debug, Subcommand)]
pub enum OperatorCommand {
    /// Renders RemoteHost and Directory manifests into TOML, as the operator would.
    Render(RenderArgs),
}

/// `operator render -f FILE…`.
#[derive(Debug, Args)]
pub struct RenderArgs {
    /// YAML manifests (files or directories of *.yaml); other kinds are skipped.
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,
    /// Where the pods mount the Secret projection.
    #[arg(long, default_value = "/etc/ferrymail/conf.d")]
    pub secret_dir: PathBuf,
    /// Write remotes.toml and directories.toml here instead of printing them.
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
}

/// Where the controller works.
#[derive(Debug, Clone, Args)]
pub struct ControllerArgs {
    /// Namespace to watch and write (default: the pod's own).
    #[arg(long, env = "FERRYMAIL_OPERATOR_NAMESPACE")]
    pub namespace: Option<String>,
    /// Name of the rendered ConfigMap the pods mount.
    #[arg(
        long,
        env = "FERRYMAIL_OPERATOR_CONFIG_MAP",
        default_value = "ferrymail-rendered"
    )]
    pub config_map: String,
    /// Name of the Secret projection the pods mount.
    #[arg(
        long,
        env = "FERRYMAIL_OPERATOR_SECRET",
        default_value = "ferrymail-rendered-secrets"
    )]
    pub secret: String,
    /// Where the pods mount the Secret projection (next to the rendered files).
    #[arg(
        long = "operator-secret-dir",
        env = "FERRYMAIL_OPERATOR_SECRET_DIR",
        default_value = "/etc/ferrymail/conf.d"
    )]
    pub secret_dir: PathBuf,
}

/// Prints both CRDs as YAML.
pub fn print_crds() -> ExitCode {
    match ferrymail_operator::crd::yaml() {
        Ok(yaml) => {
            print!("{yaml}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("ferrymail crd: {error}");
            ExitCode::FAILURE
        }
    }
}

/// `operator render`: prints (or writes) the files; problems go to standard error and make
/// the exit status 1, as they would keep the resource out of the applied configuration.
pub fn render(args: &RenderArgs) -> ExitCode {
    match render_files(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("ferrymail operator render: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn render_files(args: &RenderArgs) -> anyhow::Result<bool> {
    let mut manifests = Manifests::default();
    for path in manifest_files(&args.files)? {
        manifests.add_file(&path)?;
    }
    let outcome = manifests.render(&RenderSettings {
        secret_dir: args.secret_dir.clone(),
    })?;
    let rendered = &outcome.rendered;
    match &args.out_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            std::fs::write(dir.join(REMOTES_FILE), &rendered.remotes_toml)?;
            std::fs::write(dir.join(DIRECTORIES_FILE), &rendered.directories_toml)?;
        }
        None => {
            println!("# --- {REMOTES_FILE}");
            print!("{}", rendered.remotes_toml);
            println!("\n# --- {DIRECTORIES_FILE}");
            print!("{}", rendered.directories_toml);
        }
    }
    for (resource, problem) in &outcome.problems {
        eprintln!("{resource}: {problem}");
    }
    Ok(outcome.problems.is_empty())
}

/// The files named, with directories replaced by their `*.yaml`/`*.yml` files in name order.
fn manifest_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut inside: Vec<PathBuf> = std::fs::read_dir(path)?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| is_yaml(p))
                .collect();
            inside.sort();
            files.extend(inside);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

fn is_yaml(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    )
}

/// Whether a Kubernetes API is configured (in a pod, or a kubeconfig). When it is not, the
/// operator part is marked not ready with the reason, at once, and `false` is returned: the
/// role then stays alive and not ready instead of exiting, so the same binary and config run
/// everywhere.
pub fn kubernetes_configured(health: &Health) -> bool {
    let component = health.component("operator");
    let in_pod = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
    let kubeconfig = match std::env::var_os("KUBECONFIG") {
        Some(paths) => std::env::split_paths(&paths).any(|p| p.is_file()),
        None => std::env::var_os("HOME")
            .is_some_and(|home| Path::new(&home).join(".kube/config").is_file()),
    };
    if in_pod || kubeconfig {
        component.set_not_ready("connecting to the Kubernetes API");
        return true;
    }
    let reason = "no Kubernetes API to reconcile against: not in a pod and no kubeconfig";
    tracing::warn!(part = "operator", "not doing its job: {reason}");
    component.set_not_ready(reason);
    false
}

/// The operator role's work: reconcile until `stop`. A configuration that names an API the
/// client cannot use leaves the role alive and not ready, saying why. With
/// `cluster.directory.endpoint`, RemoteHosts also get the `Reachable` condition from the
/// directory-proxy's probes.
pub async fn run_controller(
    args: ControllerArgs,
    directory_endpoint: Option<String>,
    security: ferrymail_rpc::cluster_tls::ChannelSecurity,
    metrics: Metrics,
    health: Health,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let component = health.component("operator");
    let client = match kube::Client::try_default().await {
        Ok(client) => client,
        Err(error) => {
            let reason = format!("no Kubernetes API to reconcile against: {error}");
            tracing::warn!(part = "operator", "not doing its job: {reason}");
            component.set_not_ready(reason);
            stop.cancelled().await;
            return Ok(());
        }
    };
    let namespace = args
        .namespace
        .unwrap_or_else(|| client.default_namespace().to_string());
    tracing::info!(%namespace, config_map = %args.config_map, "reconciling RemoteHost and Directory resources");
    let settings = Settings {
        namespace,
        config_map: args.config_map,
        secret: args.secret,
        field_manager: "ferrymail-operator".into(),
        render: RenderSettings {
            secret_dir: args.secret_dir,
        },
    };
    let mut ctx = Context::new(client, settings, ReconcileMetrics::register(&metrics));
    match directory_endpoint.map(|e| (GrpcDirectory::connect_with(&e, &security), e)) {
        Some((Ok(directory), endpoint)) => {
            tracing::info!(%endpoint, "reporting RemoteHost reachability from the directory-proxy");
            ctx = ctx.with_directory(Arc::new(directory));
        }
        // Reconciling does not need the directory-proxy: it goes on without reachability.
        Some((Err(error), _)) => tracing::warn!(
            %error,
            "cluster.directory.endpoint is unusable: the Reachable condition of RemoteHosts is not reported"
        ),
        None => tracing::info!(
            "cluster.directory.endpoint is not set: the Reachable condition of RemoteHosts is not reported"
        ),
    }
    let ctx = Arc::new(ctx);
    // Ready once the controller runs: a failing pass keeps the last good configuration in
    // place, which is no reason to restart the pod.
    component.set_ready();
    controller::run(ctx, stop).await;
    Ok(())
}
