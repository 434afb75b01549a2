//! The `Directory` service: lookups answered from the lists, the caches, or a pooled
//! connection to the configured server.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use async_trait::async_trait;
use ferrymail_config::Config;
use ferrymail_rpc::RpcError;
use ferrymail_rpc::directory::{Answer, AuthRequest, DirectoryService, Expansion, Verdict};
use ferrymail_store::Store;
use futures::future::BoxFuture;
use secrecy::ExposeSecret;
use tracing::Span;
use tracing::field::{Empty, display};

use crate::cache::{Cached, Level, LookupCache, Question};
use crate::connection::{Connection, TlsSettings};
use crate::error::ConnectionError;
use crate::lists::Lists;
use crate::metrics::DirectoryMetrics;
use crate::pool::{Operation, Pool};
use crate::single_flight::SingleFlight;
use crate::target::Target;

/// What one configuration yields: the lookup targets with their pools, and the lists.
struct State {
    pools: HashMap<String, Arc<Pool>>,
    lists: Lists,
}

/// The directory-proxy: implements [`DirectoryService`] in-process; the gRPC server of the
/// `rpc` crate serves it to split roles.
pub struct DirectoryProxy {
    state: RwLock<Arc<State>>,
    cache: LookupCache,
    flights: SingleFlight<(String, u8, String), Result<Cached, String>>,
    tls: TlsSettings,
    metrics: DirectoryMetrics,
}

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The shared cache's key could not be read or created.
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
            Verdict::TemporaryFailure => "temporary_failure",
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
        let cache = LookupCache::open(store).await?;
        let proxy = Self {
            state: RwLock::new(Arc::new(State {
                pools: HashMap::new(),
                lists: Lists::default(),
            })),
            cache,
            flights: SingleFlight::new(),
            tls,
            metrics,
        };
        proxy.apply(config).await;
        Ok(proxy)
    }

    /// Takes a new configuration: pools of unchanged targets are kept; a changed or removed
    /// target's pool is drained and its cache flushed.
    pub async fn apply(&self, config: &Config) {
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
        let state = Arc::new(State {
            pools,
            lists: Lists::from_config(config),
        });
        *self
            .state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = state;
        for name in flush {
            tracing::info!(target = %name, "lookup target changed; its cache is flushed");
            self.cache.flush(&name).await;
        }
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
                let result = pool.run(run).await.map_err(|e| describe(&target, &e));
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

fn describe(target: &Target, error: &ConnectionError) -> String {
    match error {
        ConnectionError::Timeout(_) => format!(
            "{}:{} timed out after {:?}",
            target.address, target.port, target.timeout
        ),
        other => format!("{}:{}: {other}", target.address, target.port),
    }
}

#[async_trait]
impl DirectoryService for DirectoryProxy {
    async fn authenticate(&self, request: AuthRequest) -> Result<Answer, RpcError> {
        let name = format!("directory/{}", request.directory);
        let username = request.username.clone();
        let secret = request.secret.expose_secret().to_vec();
        let mechanism = request.mechanism;
        let question = Question::Auth {
            username: &request.username,
            secret: request.secret.expose_secret(),
        };
        self.yes_no(
            &name,
            "auth",
            question,
            Box::new(move |c| {
                let (username, secret) = (username.clone(), secret.clone());
                Box::pin(async move { c.authenticate(mechanism, &username, &secret).await })
            }),
        )
        .await
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
}
