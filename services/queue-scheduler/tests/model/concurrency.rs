//! Many writers at once: ids never collide and no count is lost.

use std::collections::HashSet;

use ferrymail_rpc::queue::QueueService;

use crate::support::{body, envelope, open};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_concurrent_enqueues_get_distinct_ids_and_exact_counts() {
    const TASKS: usize = 16;
    const TOTAL: usize = 1000;
    let t = open();
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..TASKS {
        let queue = t.queue.clone();
        tasks.spawn(async move {
            let mut ids = Vec::new();
            for n in (task..TOTAL).step_by(TASKS) {
                let data = format!("Subject: {n}\r\n\r\nmessage {n}\r\n");
                let env = envelope("load@example.org", &["sink@example.net"]);
                ids.push(queue.enqueue(env, body(data.as_bytes(), 8)).await.unwrap());
            }
            ids
        });
    }
    let mut ids = HashSet::new();
    while let Some(done) = tasks.join_next().await {
        for id in done.unwrap() {
            assert!(ids.insert(id.clone()), "duplicate id {id}");
        }
    }
    assert_eq!(ids.len(), TOTAL);
    let stats = t.queue.stats().await.unwrap();
    assert_eq!(stats.messages, TOTAL as u64);
    assert_eq!(stats.recipients.pending, TOTAL as u64);
}
