//! ferrymail as a cluster of separate processes on one shared store, under load, while
//! processes crash, freeze and lose the store: every message a client was told was accepted
//! reaches its destination, a duplicate is rare and bounded, and no scheduler delivers once
//! its lease has expired (see the harness's `delivery_audit` for the bound and the checks).
//!
//! The shared store is PostgreSQL, or FoundationDB when `FDB_CLUSTER_FILE` is set (with a
//! binary built with `--features fdb`). The last test runs the same load and checks with
//! one scheduler over the embedded store, which no other process can share.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use ferrymail_e2e::{
    ALICE, ALL, BOB, Cluster, ClusterOptions, Fault, Load, LoadOptions, LoadReport, PROXY,
    SCHEDULER, SharedStore, SmtpClient, TcpRelay, check_deliveries, complete_deliveries,
    wait_delivered, wait_until,
};

/// How long the sink may take to receive every acknowledged message once the load is done:
/// retries come every second and a dead scheduler's work is taken over after a lease.
const DRAIN_PATIENCE: Duration = Duration::from_secs(90);

/// One cluster at a time: each is a dozen processes, and two would starve each other of the
/// CPU the leases are timed against.
static ONE_CLUSTER_AT_A_TIME: Mutex<()> = Mutex::new(());

/// How much the load must grow between two faults: the cluster goes on taking mail.
const PROGRESS: usize = 30;

fn load_options(messages: usize, rate: f64) -> LoadOptions {
    LoadOptions {
        messages,
        sessions: 8,
        recipients: vec![ALICE.0.into(), BOB.0.into()],
        rate: Some(rate),
        // Longer than any fault, so that a session waiting on a stopped process is answered
        // once it runs again.
        reply_timeout: Duration::from_secs(60),
    }
}

/// The live member of `role` that has delivered the most so far: the one a fault hurts most.
fn busiest(cluster: &Cluster, role: &str) -> usize {
    let deliveries = complete_deliveries(&cluster.sink);
    cluster
        .members
        .iter()
        .filter(|m| m.role == role && m.alive)
        .max_by_key(|m| deliveries.iter().filter(|d| d.helo == m.hostname).count())
        .map(|m| m.index)
        .unwrap_or_else(|| panic!("no {role} is alive"))
}

/// Waits until the load has `count` messages accepted.
fn wait_accepted(load: &Load, count: usize) {
    wait_until(
        &format!("{count} messages acknowledged"),
        || load.accepted() >= count || load.report().finished,
        || format!("{:?}", summary(&load.report())),
    );
}

/// Waits until the sink has received something from a member of `role`.
fn wait_delivering(cluster: &Cluster, role: &str) {
    let names: Vec<&str> = cluster
        .members
        .iter()
        .filter(|m| m.role == role)
        .map(|m| m.hostname.as_str())
        .collect();
    wait_until(
        &format!("a {role} to deliver"),
        || {
            complete_deliveries(&cluster.sink)
                .iter()
                .any(|d| names.contains(&d.helo.as_str()))
        },
        String::new,
    );
}

fn summary(report: &ferrymail_e2e::LoadReport) -> String {
    format!(
        "accepted {}, deferred {} (e.g. {:?}), refused {}, unanswered {}, connection failures {}, data sent {}",
        report.accepted.len(),
        report.deferred,
        report.deferred_samples,
        report.refused.len(),
        report.unanswered.len(),
        report.connection_failures,
        report.data_sent
    )
}

/// An unknown recipient is refused with 550 through `ingress` once its directory calls
/// reach a live proxy: while they are redirected the ingress may defer (4xx), never accept.
fn assert_unknown_refused(ingress: SocketAddr) {
    let last = std::cell::RefCell::new(None);
    wait_until(
        &format!("{ingress} to refuse an unknown recipient"),
        || {
            let mut client = SmtpClient::connect(ingress);
            assert_eq!(client.command("EHLO client.test").code, 250);
            assert_eq!(client.command("MAIL FROM:<s@remote.test>").code, 250);
            let reply = client.command("RCPT TO:<nosuch@example.org>");
            let _ = client.try_command("QUIT");
            assert!(
                reply.code == 550 || (400..500).contains(&reply.code),
                "an unknown recipient got {reply:?}"
            );
            let refused = reply.code == 550;
            *last.borrow_mut() = Some(reply);
            refused
        },
        || format!("last reply: {:?}", last.borrow()),
    );
}

/// Holds a fault for longer than a lease: the duration is the fault itself, not a wait for
/// something to happen.
fn outlast_lease(lease: Duration) {
    std::thread::sleep(lease * 2 + Duration::from_secs(1));
}

/// Freezes scheduler `index` (SIGSTOP) for longer than its lease, then lets it run again:
/// a GC pause, or a partition that heals. Nothing it delivers after its lease ran out counts.
fn freeze_past_lease(cluster: &mut Cluster, load: &Load, index: usize, what: &str) -> Fault {
    let mut fault = Fault::now(
        what,
        Some(cluster.hostname(SCHEDULER, index)),
        cluster.options.under_way(),
        &load.report(),
        &cluster.sink,
    );
    fault.fenced = true;
    cluster.pause(SCHEDULER, index);
    outlast_lease(cluster.options.lease);
    // Taken before the signal: the scheduler may deliver the moment it runs again.
    fault.ended = Some(SystemTime::now());
    cluster.resume(SCHEDULER, index);
    fault
}

/// Waits for every message `report` says was accepted to reach the sink, then checks the
/// deliveries against `faults`; the scheduler's lease log lines explain a failure.
fn check_all_delivered(cluster: &mut Cluster, report: &LoadReport, faults: &[Fault]) {
    let deliveries = wait_delivered(
        &cluster.sink,
        &report.accepted_ids(),
        DRAIN_PATIENCE,
        || summary(report),
    );
    let lease_lines = cluster.log_lines("lease");
    let findings = check_deliveries(&deliveries, report, faults, cluster.options.lease, || {
        format!("{}\nlease lines: {lease_lines:#?}", summary(report))
    });
    eprintln!("{findings:?}");
}

#[test]
fn split_roles_on_a_shared_store_lose_nothing_when_processes_crash_freeze_or_lose_the_store() {
    let _one = ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let store = SharedStore::from_environment("cluster");
    eprintln!("shared store: {}", store.name());
    let mut cluster = Cluster::start(store, ClusterOptions::default());
    let lease = cluster.options.lease;
    let load = Load::start(cluster.smtp_addresses(), load_options(400, 20.0));
    let mut faults = Vec::new();

    // A scheduler dies mid-delivery: the others take its messages over once its leases expire.
    wait_accepted(&load, PROGRESS);
    wait_delivering(&cluster, SCHEDULER);
    let killed = busiest(&cluster, SCHEDULER);
    let killed_name = cluster.hostname(SCHEDULER, killed);
    faults.push(Fault::now(
        "SIGKILL a scheduler",
        Some(killed_name),
        cluster.options.under_way(),
        &load.report(),
        &cluster.sink,
    ));
    cluster.kill(SCHEDULER, killed);

    // A scheduler freezes for longer than its lease, then runs again.
    wait_accepted(&load, load.accepted() + PROGRESS);
    let paused = busiest(&cluster, SCHEDULER);
    let what = "SIGSTOP a scheduler past its lease";
    faults.push(freeze_past_lease(&mut cluster, &load, paused, what));

    // A scheduler loses the store for longer than its lease while it delivers.
    wait_accepted(&load, load.accepted() + PROGRESS);
    if let Some(reason) = cluster.store.cut_unsupported() {
        eprintln!("skipped: cutting a scheduler off the store ({reason})");
    } else {
        let cut = busiest(&cluster, SCHEDULER);
        let mut fault = Fault::now(
            "a scheduler cut off the store past its lease",
            Some(cluster.hostname(SCHEDULER, cut)),
            cluster.options.within_a_lease(),
            &load.report(),
            &cluster.sink,
        );
        fault.fenced = true;
        cluster.cut_store(SCHEDULER, cut);
        outlast_lease(lease);
        fault.ended = Some(SystemTime::now());
        cluster.restore_store(SCHEDULER, cut);
        faults.push(fault);
    }

    // A directory-proxy goes away: the other answers, from the shared cache and the remote.
    wait_accepted(&load, load.accepted() + PROGRESS);
    cluster.kill(PROXY, 0);
    let after_proxy = load.accepted();
    wait_accepted(&load, after_proxy + PROGRESS);
    for ingress in cluster.smtp_addresses() {
        assert_unknown_refused(ingress);
    }

    let report = load.wait();
    eprintln!("load: {}", summary(&report));
    assert!(
        report.accepted.len() >= 4 * PROGRESS,
        "the cluster took mail between the faults: {}",
        summary(&report)
    );
    check_all_delivered(&mut cluster, &report, &faults);
}

#[test]
fn two_all_processes_share_the_queue_and_one_takes_over_when_the_other_is_killed() {
    let _one = ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let store = SharedStore::from_environment("two_all");
    eprintln!("shared store: {}", store.name());
    let options = ClusterOptions {
        ingresses: 0,
        schedulers: 0,
        proxies: 0,
        alls: 2,
        ..ClusterOptions::default()
    };
    let mut cluster = Cluster::start(store, options);
    let lease = cluster.options.lease;
    let load = Load::start(cluster.smtp_addresses(), load_options(240, 20.0));

    wait_accepted(&load, PROGRESS);
    wait_delivering(&cluster, ALL);
    let killed = busiest(&cluster, ALL);
    let killed_name = cluster.hostname(ALL, killed);
    let fault = Fault::now(
        "SIGKILL one of two `all`",
        Some(killed_name),
        cluster.options.under_way(),
        &load.report(),
        &cluster.sink,
    );
    cluster.kill(ALL, killed);

    let report = load.wait();
    eprintln!("load: {}", summary(&report));
    let survivor = cluster.hostname(ALL, 1 - killed);
    let deliveries = wait_delivered(
        &cluster.sink,
        &report.accepted_ids(),
        DRAIN_PATIENCE,
        || summary(&report),
    );
    assert!(
        deliveries
            .iter()
            .any(|d| d.helo == survivor && d.arrived > fault.started),
        "the survivor delivers after the kill"
    );
    let findings = check_deliveries(&deliveries, &report, &[fault], lease, || summary(&report));
    eprintln!("{findings:?}");
}

/// The load, the relays, the sink and the checks where the only store is embedded, so one
/// scheduler: two ingresses behind one address, and two directory-proxies. Clients are cut
/// off the ingresses for a while, a proxy goes away, and the scheduler freezes past its lease.
#[test]
fn split_roles_with_one_scheduler_on_the_embedded_store_lose_nothing_through_faults() {
    let _one = ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let options = ClusterOptions {
        schedulers: 1,
        ..ClusterOptions::default()
    };
    let mut cluster = Cluster::start(SharedStore::Embedded, options);
    let lease = cluster.options.lease;
    let front = TcpRelay::balancing(cluster.smtp_addresses());
    let mut options = load_options(150, 20.0);
    // A session blackholed by the cut notices it by this timeout, and connects again.
    options.reply_timeout = Duration::from_secs(5);
    let load = Load::start(vec![front.address()], options);
    let mut faults = Vec::new();

    wait_accepted(&load, PROGRESS);
    let cut = Fault::now(
        "clients cut off the ingresses",
        None,
        0,
        &load.report(),
        &cluster.sink,
    );
    front.cut();
    outlast_lease(lease);
    front.restore();
    faults.push(cut);

    wait_accepted(&load, load.accepted() + PROGRESS);
    cluster.kill(PROXY, 0);
    wait_accepted(&load, load.accepted() + PROGRESS);
    for ingress in cluster.smtp_addresses() {
        assert_unknown_refused(ingress);
    }

    let what = "SIGSTOP the scheduler past its lease";
    faults.push(freeze_past_lease(&mut cluster, &load, 0, what));

    let report = load.wait();
    eprintln!("load: {}", summary(&report));
    assert!(
        report.connection_failures > 0,
        "the cut was noticed by the clients: {}",
        summary(&report)
    );
    assert!(
        report.accepted.len() >= 3 * PROGRESS,
        "the cluster took mail between the faults: {}",
        summary(&report)
    );
    check_all_delivered(&mut cluster, &report, &faults);
}
