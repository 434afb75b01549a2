//! The `Directory` service: lookups answered from the lists, the caches, or a pooled
//! connection to the configured server.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use async_trait::async_trait;
use ferrymail_config::Config;
use ferrymail_rpc::RpcError;
use ferrymail_rpc::directory::{
    Answer, AuthRequest, DirectoryService, Expansion, LimitAnswer, LimitKey, RateRequest,
    RemoteState, SlotRequest, Verdict,
};
use ferrymail_store::Store;
use futures::future::BoxFuture;
use secrecy::ExposeSecret;
use tokio::sync::Notify;
use tracing::Span;
use tracing::field::{Empty, display};
use zeroize::Zeroizing;

use crate::auth_failures::AuthFailures;
use crate::cache::{Cached, Level, LookupCache, Question};
use crate::connection::{Connection, TlsSettings};
use crate::error::ConnectionError;
use crate::inbound_limits::InboundCounters;
use crate::lists::Lists;
use crate::metrics::{DirectoryMetrics, PoolMetrics};
use crate::pool::{Operation, Pool};
use crate::prober::{Probe, Schedule};
use crate::remote_states::RemoteStates;
use crate::single_flight::SingleFlight;
use crate::target::Target;

/// What one configuration yields: the lookup targets with their pools, the lists, and the
/// probe of every remote host by id.
struct State {
    pools: HashMap<String, Arc<Pool>>,
    lists: Lists,
    probes: BTreeMap<String, Arc<Probe>>,
}

/// The directory-proxy: implements [`DirectoryService`] in-process; the gRPC server of the
/// `rpc` crate serves it to split roles.
pub struct DirectoryProxy {
    state: RwLock<Arc<State>>,
    cache: LookupCache,
    failures: AuthFailures,
    inbound: InboundCounters,
    flights: SingleFlight<(String, u8, String), Result<Cached, String>>,
    tls: TlsSettings,
    metrics: DirectoryMetrics,
    remote_states: RemoteStates,
    /// Wakes the prober when a new configuration brings new probes.
    probes_changed: Notify,
}

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// What earlier versions or other keys left in the shared cache could not be removed.
    #[error("lookup cache: {0}")]
    Cache(#[from] ferrymail_store::StoreError),
}

fn targets(config: &Config) -> Vec<Target> {
    let helo = &config.server.hostname;
    let directories = config
        .directories
        .iter()
        .map(|(name, d)| Target::from_directory(name, d, helo));
    let remotes = config
        .remotes
        .iter()
        .filter(|(_, r)| r.lookup)
        .map(|(id, r)| Target::from_remote(id, r, helo));
    directories.chain(remotes).collect()
}

fn result_label(cached: &Result<Cached, String>) -> &'static str {
    match cached {
        Ok(Cached::Answer(a)) => match a.verdict {
            Verdict::Yes => "yes",
            Verdict::No => "no",
            Verdict::Refused => "refused",
            Verdict::TemporaryFailure => "temporary_failure",
            Verdict::Blocked => "blocked",
        },
        Ok(Cached::Expansion(Expansion::Found { .. })) => "yes",
        Ok(Cached::Expansion(Expansion::NotFound { .. })) => "no",
        Ok(Cached::Expansion(Expansion::CannotTell { .. })) => "cannot_tell",
        Ok(Cached::Expansion(Expansion::TemporaryFailure { .. })) | Err(_) => "temporary_failure",
    }
}

impl DirectoryProxy {
    /// A proxy for `config`, caching in `store` when given.
    pub async fn new(
        config: &Config,
        store: Option<Store>,
        metrics: DirectoryMetrics,
    ) -> Result<Self, ProxyError> {
        let tls = TlsSettings::new();
        let failures = AuthFailures::new(store.clone(), config);
        let inbound = InboundCounters::new(store.clone(), config);
        let cache = LookupCache::open(store, config.cluster.cache_key.as_ref()).await?;
        let proxy = Self {
            state: RwLock::new(Arc::new(State {
                pools: HashMap::new(),
                lists: Lists::default(),
                probes: BTreeMap::new(),
            })),
            cache,
            failures,
            inbound,
            flights: SingleFlight::new(),
            tls,
            remote_states: RemoteStates::new(metrics.clone()),
            metrics,
            probes_changed: Notify::new(),
        };
        proxy.apply(config).await;
        Ok(proxy)
    }

    /// Takes a new configuration: pools of unchanged targets are kept; a changed or removed
    /// target's pool is drained and its cache flushed; a changed `cluster.cache-key`
    /// empties the whole cache.
    pub async fn apply(&self, config: &Config) {
        self.cache.rekey(config.cluster.cache_key.as_ref()).await;
        self.failures.apply(config);
        self.inbound.apply(config).await;
        let old = self.state();
        let mut pools = HashMap::new();
        let mut flush = Vec::new();
        for target in targets(config) {
            match old.pools.get(&target.name) {
                Some(pool) if *pool.target() == target => {
                    pools.insert(target.name.clone(), pool.clone());
                }
                existing => {
                    if existing.is_some() {
                        flush.push(target.name.clone());
                    }
                    let metrics = self.metrics.pool(&target.name);
                    pools.insert(
                        target.name.clone(),
                        Arc::new(Pool::new(target, self.tls.clone(), metrics)),
                    );
                }
            }
        }
        for (name, pool) in &old.pools {
            if !pools.get(name).is_some_and(|p| Arc::ptr_eq(p, pool)) {
                pool.drain();
                if !pools.contains_key(name) {
                    flush.push(name.clone());
                }
            }
        }
        let probes = self.probes(config, &old.probes, &pools);
        let state = Arc::new(State {
            pools,
            lists: Lists::from_config(config),
            probes,
        });
        *self
            .state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = state;
        self.probes_changed.notify_one();
        for name in flush {
            tracing::info!(target = %name, "lookup target changed; its cache is flushed");
            self.cache.flush(&name).await;
        }
    }

    /// The probe of every `remote.<id>`: on the lookup pool when the host serves lookups (so
    /// probes count towards its `concurrency`), else on a pool of its own. An unchanged
    /// host keeps its probe; a changed or removed one loses its last finding.
    fn probes(
        &self,
        config: &Config,
        old: &BTreeMap<String, Arc<Probe>>,
        pools: &HashMap<String, Arc<Pool>>,
    ) -> BTreeMap<String, Arc<Probe>> {
        let helo = &config.server.hostname;
        let mut probes = BTreeMap::new();
        let mut targets = BTreeMap::new();
        for (id, remote) in &config.remotes {
            let target = Target::from_remote(id, remote, helo);
            let interval = remote.probe_interval;
            let pool = match (pools.get(&target.name), old.get(id)) {
                (Some(pool), _) => pool.clone(),
                (None, Some(probe)) if *probe.pool().target() == target => probe.pool().clone(),
                (None, _) => Arc::new(Pool::new(
                    target.clone(),
                    self.tls.clone(),
                    PoolMetrics::detached(),
                )),
            };
            let probe = match old.get(id) {
                Some(probe) if Arc::ptr_eq(probe.pool(), &pool) && probe.interval() == interval => {
                    probe.clone()
                }
                _ => Arc::new(Probe::new(id, pool, interval)),
            };
            probes.insert(id.clone(), probe);
            targets.insert(id.clone(), target);
        }
        for (id, probe) in old {
            let kept = probes
                .get(id)
                .is_some_and(|p| Arc::ptr_eq(p.pool(), probe.pool()));
            if !kept && !pools.values().any(|p| Arc::ptr_eq(p, probe.pool())) {
                probe.pool().drain();
            }
        }
        self.remote_states.configure(targets);
        probes
    }

    /// Probes every remote host each `probe.interval`, the first time at once, until the
    /// runtime ends. Probes run side by side, each bounded by its host's `timeout`.
    pub async fn probe_remotes(self: Arc<Self>) {
        let mut schedule = Schedule::default();
        loop {
            let (due, next) = schedule.due(&self.state().probes, tokio::time::Instant::now());
            for probe in due {
                let proxy = self.clone();
                tokio::spawn(async move { probe.run(&proxy.remote_states).await });
            }
            match next {
                Some(at) => tokio::select! {
                    () = tokio::time::sleep_until(at) => {}
                    () = self.probes_changed.notified() => {}
                },
                None => self.probes_changed.notified().await,
            }
        }
    }

    /// Probes every remote host once, now, and returns when all have answered or failed.
    pub async fn probe_all(&self) {
        let probes = self.state().probes.clone();
        futures::future::join_all(probes.values().map(|p| p.run(&self.remote_states))).await;
    }

    fn state(&self) -> Arc<State> {
        self.state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn pool(&self, name: &str) -> Result<Arc<Pool>, RpcError> {
        self.state().pools.get(name).cloned().ok_or_else(|| {
            RpcError::InvalidArgument(format!("no lookup target {name:?} is configured"))
        })
    }

    /// Connections open to a target right now (for tests and diagnostics).
    pub fn open_connections(&self, target: &str) -> usize {
        self.state()
            .pools
            .get(target)
            .map_or(0, |p| p.open_connections())
    }

    /// A lookup on a remote host is a probe too: an answer shows it reachable, a failed
    /// connection or TLS handshake shows it unreachable. Other failures (a timeout waiting
    /// for a busy pool, a lookup the protocol cannot do) say nothing about the host.
    fn record_lookup_outcome<T>(&self, target: &Target, result: &Result<T, ConnectionError>) {
        let Some(remote) = target.name.strip_prefix("remote/") else {
            return;
        };
        match result {
            Ok(_) => self.remote_states.record(remote, target, Ok(())),
            Err(
                error @ (ConnectionError::Io(_)
                | ConnectionError::Tls(_)
                | ConnectionError::Closed(_)),
            ) => {
                self.remote_states
                    .record(remote, target, Err(target.describe(error)));
            }
            Err(_) => {}
        }
    }

    /// Answers `question` for the target `name`: cache, then one shared request.
    #[tracing::instrument(name = "directory.lookup", skip_all, fields(directory.target = name, operation, remote.host = Empty, cache = Empty, result = Empty))]
    async fn lookup(
        &self,
        name: &str,
        operation: &'static str,
        question: Question<'_>,
        run: Operation<'_, Cached>,
    ) -> Result<Result<Cached, String>, RpcError> {
        let started = Instant::now();
        let pool = self.pool(name)?;
        let target = pool.target().clone();
        let span = Span::current();
        span.record(
            "remote.host",
            display(format_args!("{}:{}", target.address, target.port)),
        );
        if let Some((cached, level)) = self.cache.get(&target, &question).await {
            span.record("cache", level_name(level));
            self.metrics.cache(name, level_name(level), true);
            if level == Level::Shared {
                self.metrics.cache(name, "local", false);
            }
            let result = Ok(cached);
            span.record("result", result_label(&result));
            self.metrics
                .lookup(name, operation, result_label(&result), started.elapsed());
            return Ok(result);
        }
        span.record("cache", "miss");
        self.metrics.cache(name, "local", false);
        self.metrics.cache(name, "shared", false);
        let key = flight_key(name, &question);
        let result = self
            .flights
            .run(key, || async {
                let result = pool.run(run).await;
                self.record_lookup_outcome(&target, &result);
                let result = result.map_err(|e| target.describe(&e));
                if let Ok(value) = &result {
                    self.cache.put(&target, &question, value).await;
                }
                result
            })
            .await;
        if let Err(reason) = &result {
            tracing::warn!(target = %name, operation, reason = %reason, "lookup failed; answering with a temporary failure");
        }
        span.record("result", result_label(&result));
        self.metrics
            .lookup(name, operation, result_label(&result), started.elapsed());
        Ok(result)
    }

    async fn yes_no(
        &self,
        name: &str,
        operation: &'static str,
        question: Question<'_>,
        run: Operation<'_, Answer>,
    ) -> Result<Answer, RpcError> {
        let mut run = run;
        let wrapped: Operation<'_, Cached> =
            Box::new(move |c: &mut dyn Connection| -> BoxFuture<'_, _> {
                let fut = run(c);
                Box::pin(async move { fut.await.map(Cached::Answer) })
            });
        Ok(
            match self.lookup(name, operation, question, wrapped).await? {
                Ok(Cached::Answer(answer)) => answer,
                _ => Answer::temporary_failure(),
            },
        )
    }

    async fn expansion(
        &self,
        name: &str,
        operation: &'static str,
        question: Question<'_>,
        run: Operation<'_, Expansion>,
    ) -> Result<Expansion, RpcError> {
        let mut run = run;
        let wrapped: Operation<'_, Cached> =
            Box::new(move |c: &mut dyn Connection| -> BoxFuture<'_, _> {
                let fut = run(c);
                Box::pin(async move { fut.await.map(Cached::Expansion) })
            });
        Ok(
            match self.lookup(name, operation, question, wrapped).await? {
                Ok(Cached::Expansion(expansion)) => expansion,
                _ => Expansion::TemporaryFailure { reply: None },
            },
        )
    }

    async fn rcpt_at(&self, name: &str, address: &str) -> Result<Answer, RpcError> {
        let owned = address.to_string();
        self.yes_no(
            name,
            "rcpt",
            Question::Rcpt(address),
            Box::new(move |c| {
                let address = owned.clone();
                Box::pin(async move { c.verify_recipient(&address).await })
            }),
        )
        .await
    }

    /// Asks the cache, then the server, about `request`'s credentials.
    async fn check_credentials(
        &self,
        name: &str,
        request: AuthRequest,
    ) -> Result<Answer, RpcError> {
        let username = request.username.clone();
        // Each attempt takes its own copy; every copy is wiped when dropped.
        let secret = Zeroizing::new(request.secret.expose_secret().to_vec());
        let mechanism = request.mechanism;
        let question = Question::Auth {
            username: &request.username,
            secret: request.secret.expose_secret(),
        };
        self.yes_no(
            name,
            "auth",
            question,
            Box::new(move |c| {
                let (username, secret) = (username.clone(), secret.clone());
                Box::pin(async move { c.authenticate(mechanism, &username, &secret).await })
            }),
        )
        .await
    }
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Local => "local",
        Level::Shared => "shared",
    }
}

/// Identical questions in flight share one request; the key holds no secret in clear.
fn flight_key(target: &str, question: &Question<'_>) -> (String, u8, String) {
    use sha2::Digest;
    match question {
        Question::Auth { username, secret } => {
            let mut hash = sha2::Sha256::new();
            hash.update((username.len() as u64).to_le_bytes());
            hash.update(username.as_bytes());
            hash.update(secret);
            let digest: String = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
            (target.to_string(), 1, digest)
        }
        Question::Rcpt(a) => (target.to_string(), 2, (*a).to_string()),
        Question::Vrfy(a) => (target.to_string(), 3, (*a).to_string()),
        Question::Expn(a) => (target.to_string(), 4, (*a).to_string()),
    }
}

#[async_trait]
impl DirectoryService for DirectoryProxy {
    /// Checks credentials, unless the login name or the client address has had too many
    /// failures lately: then [`Verdict::Blocked`], without asking the server or the cache
    /// (a cached answer would tell a right password from a wrong one all the same).
    async fn authenticate(&self, request: AuthRequest) -> Result<Answer, RpcError> {
        let name = format!("directory/{}", request.directory);
        self.pool(&name)?;
        let attempt = self.failures.attempt(&request.username, request.client);
        if let Some(attempt) = &attempt
            && let Some(by) = self.failures.blocked(attempt).await
        {
            self.metrics.auth_blocked(&name, by.label());
            return Ok(Answer::new(Verdict::Blocked));
        }
        let answer = self.check_credentials(&name, request).await?;
        // Only a "no" counts: a temporary failure says nothing about the password, and a
        // success resets nothing (see README, "Brute force").
        if answer.verdict == Verdict::No
            && let Some(attempt) = &attempt
        {
            self.failures.record(attempt).await;
        }
        Ok(answer)
    }

    async fn verify_recipient(&self, directory: &str, address: &str) -> Result<Answer, RpcError> {
        self.rcpt_at(&format!("directory/{directory}"), address)
            .await
    }

    async fn vrfy(&self, directory: &str, address: &str) -> Result<Expansion, RpcError> {
        let owned = address.to_string();
        self.expansion(
            &format!("directory/{directory}"),
            "vrfy",
            Question::Vrfy(address),
            Box::new(move |c| {
                let address = owned.clone();
                Box::pin(async move { c.vrfy(&address).await })
            }),
        )
        .await
    }

    async fn expn(&self, directory: &str, address: &str) -> Result<Expansion, RpcError> {
        let owned = address.to_string();
        self.expansion(
            &format!("directory/{directory}"),
            "expn",
            Question::Expn(address),
            Box::new(move |c| {
                let address = owned.clone();
                Box::pin(async move { c.expn(&address).await })
            }),
        )
        .await
    }

    async fn is_local_domain(&self, directory: &str, domain: &str) -> Result<Answer, RpcError> {
        let state = self.state();
        if !state.pools.contains_key(&format!("directory/{directory}")) {
            return Err(RpcError::InvalidArgument(format!(
                "no directory named {directory:?}"
            )));
        }
        let local = state
            .lists
            .get(directory, "domains")
            .is_some_and(|l| l.contains(domain.trim_end_matches('.')));
        Ok(if local { Answer::yes() } else { Answer::no() })
    }

    async fn in_list(&self, list: &str, value: &str) -> Result<Answer, RpcError> {
        match list.split_once('/') {
            Some(("remote", id)) => self.rcpt_at(&format!("remote/{id}"), value).await,
            Some((directory, name)) => {
                let state = self.state();
                let found = state
                    .lists
                    .get(directory, name)
                    .ok_or_else(|| RpcError::InvalidArgument(format!("no lookup list {list:?}")))?
                    .contains(value);
                Ok(if found { Answer::yes() } else { Answer::no() })
            }
            None => Err(RpcError::InvalidArgument(format!(
                "invalid list {list:?}: expected \"<directory>/<list>\" or \"remote/<id>\""
            ))),
        }
    }

    async fn remote_states(&self) -> Result<Vec<RemoteState>, RpcError> {
        Ok(self.remote_states.snapshot())
    }

    /// A store that cannot be reached is [`RpcError::Unavailable`]: the ingress lets the
    /// client through and says so (limits fail open).
    async fn take_rate(&self, request: RateRequest) -> Result<LimitAnswer, RpcError> {
        self.inbound
            .take_rate(&request)
            .await
            .map_err(|e| RpcError::Unavailable(e.to_string()))
    }

    async fn take_slot(&self, request: SlotRequest) -> Result<LimitAnswer, RpcError> {
        self.inbound
            .take_slot(&request)
            .await
            .map_err(|e| RpcError::Unavailable(e.to_string()))
    }

    async fn release_slot(&self, key: LimitKey, slot: &str) -> Result<(), RpcError> {
        self.inbound
            .release_slot(&key, slot)
            .await
            .map_err(|e| RpcError::Unavailable(e.to_string()))
    }
}
