//! Concurrent identical lookups share one request to the server.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::Mutex;

use tokio::sync::broadcast;

/// Runs at most one computation per key at a time; callers that arrive meanwhile wait for
/// its result instead of asking again.
pub(crate) struct SingleFlight<K, V> {
    running: Mutex<HashMap<K, broadcast::Sender<V>>>,
}

impl<K: Hash + Eq + Clone, V: Clone> SingleFlight<K, V> {
    pub(crate) fn new() -> Self {
        Self {
            running: Mutex::new(HashMap::new()),
        }
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<K, broadcast::Sender<V>>> {
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The result of `compute` for `key`, computed once for everyone asking at the same time.
    pub(crate) async fn run<F: Future<Output = V>>(
        &self,
        key: K,
        compute: impl FnOnce() -> F,
    ) -> V {
        loop {
            let waiting = {
                let mut running = self.running();
                match running.get(&key) {
                    Some(sender) => Some(sender.subscribe()),
                    None => {
                        running.insert(key.clone(), broadcast::channel(1).0);
                        None
                    }
                }
            };
            match waiting {
                // The leader went away without an answer: try to lead.
                Some(mut receiver) => match receiver.recv().await {
                    Ok(value) => return value,
                    Err(_) => continue,
                },
                None => {
                    let guard = Leader {
                        flight: self,
                        key: Some(key),
                    };
                    let value = compute().await;
                    guard.finish(value.clone());
                    return value;
                }
            }
        }
    }
}

/// Removes the key when the leader finishes or is cancelled, so waiters never hang.
struct Leader<'a, K: Hash + Eq + Clone, V: Clone> {
    flight: &'a SingleFlight<K, V>,
    key: Option<K>,
}

impl<K: Hash + Eq + Clone, V: Clone> Leader<'_, K, V> {
    fn finish(mut self, value: V) {
        if let Some(key) = self.key.take()
            && let Some(sender) = self.flight.running().remove(&key)
        {
            let _ = sender.send(value);
        }
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Drop for Leader<'_, K, V> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            // Dropping the sender wakes the waiters with an error; they compute themselves.
            self.flight.running().remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn concurrent_callers_share_one_computation() {
        let flight = Arc::new(SingleFlight::<&str, usize>::new());
        let calls = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Notify::new());
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let (flight, calls, gate) = (flight.clone(), calls.clone(), gate.clone());
            tasks.push(tokio::spawn(async move {
                flight
                    .run("k", || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        gate.notified().await;
                        42
                    })
                    .await
            }));
        }
        // Let every task reach the flight, then release the one computation.
        while flight.running().get("k").map_or(0, |s| s.receiver_count()) < 9 {
            tokio::task::yield_now().await;
        }
        gate.notify_waiters();
        for task in tasks {
            assert_eq!(task.await.ok(), Some(42));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_cancelled_leader_does_not_strand_waiters() {
        let flight = Arc::new(SingleFlight::<&str, usize>::new());
        let leader = {
            let flight = flight.clone();
            tokio::spawn(async move { flight.run("k", std::future::pending::<usize>).await })
        };
        while flight.running().get("k").is_none() {
            tokio::task::yield_now().await;
        }
        let waiter = {
            let flight = flight.clone();
            tokio::spawn(async move { flight.run("k", || async { 7 }).await })
        };
        while flight.running().get("k").map_or(0, |s| s.receiver_count()) < 1 {
            tokio::task::yield_now().await;
        }
        leader.abort();
        assert_eq!(waiter.await.ok(), Some(7));
    }
}
