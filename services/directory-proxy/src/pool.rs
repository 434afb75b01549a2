//! Connections to one lookup server, reused across lookups within the target's limits.
//!
//! At most `concurrency` connections exist at any time: a connection is either idle in the
//! pool or held by a lookup holding one of `concurrency` permits, and a new one is opened
//! only by a permit holder that found no idle connection. A connection is retired after
//! `limits.requests` requests, after a successful authentication, after too many failed
//! ones and after any error.

use std::sync::atomic::{AtomicUsize, Ordering};

use futures::future::BoxFuture;
use tokio::sync::Semaphore;

use crate::connection::{self, Connection, TlsSettings};
use crate::error::ConnectionError;
use crate::metrics::PoolMetrics;
use crate::target::Target;

struct Idle {
    connection: Box<dyn Connection>,
    requests: u32,
}

/// The pool of one target.
pub(crate) struct Pool {
    target: Target,
    tls: TlsSettings,
    permits: Semaphore,
    idle: std::sync::Mutex<Vec<Idle>>,
    open: AtomicUsize,
    metrics: PoolMetrics,
}

/// A lookup run on a connection.
pub(crate) type Operation<'a, T> = Box<
    dyn for<'c> FnMut(&'c mut dyn Connection) -> BoxFuture<'c, Result<T, ConnectionError>>
        + Send
        + 'a,
>;

impl Pool {
    pub(crate) fn new(target: Target, tls: TlsSettings, metrics: PoolMetrics) -> Self {
        let permits = Semaphore::new(target.concurrency.max(1));
        Self {
            target,
            tls,
            permits,
            idle: std::sync::Mutex::default(),
            open: AtomicUsize::new(0),
            metrics,
        }
    }

    /// The target this pool connects to.
    pub(crate) fn target(&self) -> &Target {
        &self.target
    }

    /// Connections open right now (idle and in use).
    pub(crate) fn open_connections(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    fn take_idle(&self) -> Option<Idle> {
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop()
    }

    fn put_idle(&self, idle: Idle) {
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(idle);
    }

    fn retire(&self, connection: Box<dyn Connection>, polite: bool) {
        self.open.fetch_sub(1, Ordering::Relaxed);
        self.metrics.set_open(self.open_connections());
        if polite {
            // QUIT/LOGOUT off the lookup's path; the answer does not wait for it.
            tokio::spawn(async move { connection.close().await });
        }
    }

    async fn open(&self) -> Result<Idle, ConnectionError> {
        self.open.fetch_add(1, Ordering::Relaxed);
        self.metrics.set_open(self.open_connections());
        match connection::connect(&self.target, &self.tls).await {
            Ok(connection) => Ok(Idle {
                connection,
                requests: 0,
            }),
            Err(error) => {
                self.open.fetch_sub(1, Ordering::Relaxed);
                self.metrics.set_open(self.open_connections());
                self.metrics.connection_error();
                Err(error)
            }
        }
    }

    /// Runs `operation` on a pooled connection, within the target's timeout. A stale idle
    /// connection (closed by the server while it waited) is replaced: a new connection is
    /// opened once, and its outcome is the answer.
    pub(crate) async fn run<T: Send>(
        &self,
        mut operation: Operation<'_, T>,
    ) -> Result<T, ConnectionError> {
        let timeout = self.target.timeout;
        let _permit = match self.permits.try_acquire() {
            Ok(permit) => permit,
            Err(_) => {
                self.metrics.wait();
                tokio::time::timeout(timeout, self.permits.acquire())
                    .await
                    .map_err(|_| ConnectionError::Timeout(timeout))?
                    .map_err(|_| ConnectionError::Protocol("pool closed".into()))?
            }
        };
        let mut reused = self.take_idle();
        loop {
            let was_reused = reused.is_some();
            let mut idle = match reused.take() {
                Some(idle) => idle,
                None => self.open().await?,
            };
            let outcome = tokio::time::timeout(timeout, operation(idle.connection.as_mut())).await;
            match outcome {
                Ok(Ok(value)) => {
                    idle.requests += 1;
                    if idle.connection.reusable() && idle.requests < self.target.max_requests {
                        self.put_idle(idle);
                    } else {
                        self.retire(idle.connection, true);
                    }
                    return Ok(value);
                }
                // The server closed the idle connection (an idle timeout, with or without a
                // 421 first, or a restart): nothing was answered, so ask on a new one.
                Ok(Err(error @ (ConnectionError::Io(_) | ConnectionError::Closed(_))))
                    if was_reused =>
                {
                    tracing::debug!(target = %self.target.name, %error, "idle connection went stale; reconnecting");
                    self.retire(idle.connection, false);
                }
                Ok(Err(error)) => {
                    self.metrics.connection_error();
                    self.retire(idle.connection, false);
                    return Err(error);
                }
                Err(_) => {
                    self.metrics.connection_error();
                    self.retire(idle.connection, false);
                    return Err(ConnectionError::Timeout(timeout));
                }
            }
        }
    }

    /// Opens a fresh connection and closes it again: connect, greeting, TLS as configured and
    /// EHLO/LHLO or CAPABILITY, exactly as for a lookup. An idle pooled connection would prove
    /// none of that now, hence a new one. It counts towards `concurrency`; when every allowed
    /// connection is busy, the host is plainly serving lookups and `None` is returned.
    pub(crate) async fn probe(&self) -> Option<Result<(), ConnectionError>> {
        let _permit = self.permits.try_acquire().ok()?;
        Some(match self.open().await {
            Ok(idle) => {
                self.retire(idle.connection, true);
                Ok(())
            }
            Err(error) => Err(error),
        })
    }

    /// Closes every idle connection (configuration changed or process stopping).
    pub(crate) fn drain(&self) {
        while let Some(idle) = self.take_idle() {
            self.retire(idle.connection, true);
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // Idle connections close with the pool; spawning QUIT needs a runtime, which a
        // dropping pool may not have, so they are simply dropped.
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
    }
}
