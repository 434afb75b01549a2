//! Running a role: listeners, admin endpoints, configuration reloads and graceful shutdown.

use std::sync::Arc;

use anyhow::{Context as _, bail};
use ferrymail_config::ConfigSource;
use ferrymail_config::model::server::ListenerProtocol;
use ferrymail_rpc::cluster_tls::{HandshakeMetrics, Permissions, RefusalMetrics};
use ferrymail_telemetry::{Health, Metrics};
use futures::future::OptionFuture;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config_reload::{ConfigWatcher, ReloadMetrics};
use crate::role::Role;
use crate::services::Services;
use crate::signals::StopSignals;
use crate::{admin_api, grpc_server, listeners};

/// The readiness component that is not ready until every service has started.
const STARTUP_COMPONENT: &str = "startup";

/// Runs `role` until SIGTERM or SIGINT, then stops gracefully. `controller` says where the
/// operator role works.
pub async fn run(
    role: Role,
    source: ConfigSource,
    controller: Option<crate::operator_cli::ControllerArgs>,
) -> anyhow::Result<()> {
    let mut signals = StopSignals::install()?;
    let loaded = match ferrymail_config::load(&source) {
        Ok(loaded) => loaded,
        Err(errors) => {
            eprintln!("{errors}");
            bail!(
                "the configuration has {} problem(s); nothing was started",
                errors.len()
            );
        }
    };
    let config = loaded.config.clone();
    let metrics = Metrics::new(role.name());
    let health = Health::new();
    let reload_metrics = ReloadMetrics::register(&metrics, &loaded.hash);
    reload_metrics.set_rendered(&loaded);
    tracing::info!(role = role.name(), hash = %loaded.hash, files = loaded.files.len(), "configuration loaded");
    // Two stages of shutdown: `stop` ends the work (and readiness goes false first);
    // `admin_stop` ends the admin endpoints last, so probes answer until the very end.
    let stop = CancellationToken::new();
    let admin_stop = CancellationToken::new();
    let mut admin = JoinSet::new();
    let mut work = JoinSet::new();

    // Served before the services start, not ready until they have: a start that waits (for
    // a store's database to answer) is seen by probes, with its reason.
    let startup = health.component(STARTUP_COMPONENT);
    let admin_sockets = listeners::bind(&config, ListenerProtocol::Http).await?;
    if admin_sockets.is_empty() {
        tracing::warn!(
            "no http listener is configured: /healthz, /readyz and /metrics are not served"
        );
    }
    let queue_slot = ferrymail_admin_api::QueueSlot::new();
    let api = admin_api::router(role, &config, &metrics, &queue_slot);
    for (id, socket) in admin_sockets {
        admin.spawn(ferrymail_telemetry::serve_admin_with(
            admin_api::listener(&config, &id, socket)?,
            health.clone(),
            metrics.clone(),
            api.clone(),
            admin_stop.clone(),
        ));
    }
    let services = tokio::select! {
        services = Services::start(role, &loaded, &metrics, &health) => services?,
        signal = signals.recv() => {
            tracing::info!(signal, "stopping before the services started");
            admin_stop.cancel();
            while admin.join_next().await.is_some() {}
            return Ok(());
        }
    };
    if let Some(queue) = &services.queue {
        queue_slot.fill(queue.clone());
    }
    let (config_updates, updates) = watch::channel(Arc::new(loaded));
    let follower = tokio::spawn(services.clone().follow(updates));
    let current = config_updates.borrow().clone();
    // The configuration in force when the process stops (server.shutdown-timeout).
    let latest = config_updates.subscribe();
    let reloader = match ConfigWatcher::install(source, &current) {
        Ok(watcher) => Some(tokio::spawn(watcher.run(
            role,
            config_updates,
            reload_metrics,
            admin_stop.clone(),
        ))),
        Err(e) => {
            tracing::error!(error = %e, "cannot watch the configuration files; changes need a restart");
            None
        }
    };

    if role.serves(ListenerProtocol::Grpc) {
        let guard = grpc_server::Guard {
            security: services.cluster.channel().clone(),
            handshakes: HandshakeMetrics::register(&metrics),
            permissions: Permissions::new(RefusalMetrics::register(&metrics)),
        };
        for (_, socket) in listeners::bind(&config, ListenerProtocol::Grpc).await? {
            work.spawn(grpc_server::serve(
                socket,
                role.grpc_services(),
                services.clone(),
                guard.clone(),
                stop.clone(),
            ));
        }
    }
    if let Some(scheduler) = &services.scheduler {
        let (scheduler, stop) = (scheduler.clone(), stop.clone());
        // In-flight deliveries finish within the shutdown deadline, or are aborted with the
        // rest of the work: their leases then expire and the next run delivers them.
        work.spawn(async move {
            scheduler.run(stop).await;
            Ok(())
        });
    }
    if let Some(ingress) = &services.ingress {
        for protocol in [ListenerProtocol::Smtp, ListenerProtocol::Lmtp] {
            for (id, socket) in listeners::bind(&config, protocol).await? {
                let (ingress, config, stop) = (ingress.clone(), config.clone(), stop.clone());
                work.spawn(async move {
                    ingress.serve(&id, &config, socket, stop).await;
                    Ok(())
                });
            }
        }
    }
    if let Some(args) = controller.filter(|_| role == Role::Operator)
        && crate::operator_cli::kubernetes_configured(&health)
    {
        work.spawn(crate::operator_cli::run_controller(
            args,
            config.cluster.directory_endpoint.clone(),
            services.cluster.channel().clone(),
            metrics.clone(),
            health.clone(),
            stop.clone(),
        ));
    }
    for part in role.parts() {
        let component = health.component(part.name);
        match part.not_built {
            Some(reason) => {
                tracing::warn!(part = part.name, "not doing its job: {reason}");
                component.set_not_ready(reason);
            }
            None => component.set_ready(),
        }
    }
    if let Some(store) = services.store.clone() {
        let component = health.component(crate::store_readiness::COMPONENT);
        tokio::spawn(crate::store_readiness::follow(store, component));
    }
    startup.set_ready();
    tracing::info!(role = role.name(), "started");

    let outcome = tokio::select! {
        signal = signals.recv() => {
            tracing::info!(signal, "stopping: readiness is off and no new work is accepted");
            Ok(())
        }
        Some(ended) = work.join_next() => Err(match ended {
            Ok(Ok(())) => anyhow::anyhow!("a server stopped on its own"),
            Ok(Err(e)) => e,
            Err(e) => anyhow::Error::new(e).context("a server task failed"),
        }),
    };
    health.start_draining();
    stop.cancel();
    let deadline = latest.borrow().config.server.shutdown_timeout;
    if tokio::time::timeout(deadline, async {
        while work.join_next().await.is_some() {}
        if let Some(ingress) = &services.ingress {
            ingress.drained().await;
        }
    })
    .await
    .is_err()
    {
        tracing::warn!(
            ?deadline,
            "in-flight work did not finish in time (server.shutdown-timeout); exiting anyway"
        );
        work.abort_all();
    }
    admin_stop.cancel();
    while let Some(ended) = admin.join_next().await {
        if let Ok(Err(e)) = ended {
            tracing::warn!(error = %e, "admin endpoint stopped with an error");
        }
    }
    follower.abort();
    if let Some(Err(e)) = OptionFuture::from(reloader).await {
        tracing::warn!(error = %e, "configuration watcher failed");
    }
    tracing::info!(role = role.name(), "stopped");
    outcome.context("the role stopped because of an error")
}
