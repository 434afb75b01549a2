//! Pauses kept in the store: pausing twice or resuming what is not paused changes nothing,
//! every queue on the store sees the same pauses, and each operation has the same effect
//! when the store runs its closures twice.

use ferrymail_rpc::queue::{DestinationScope, QueueService};
use ferrymail_store::StoreOptions;

use crate::support::{TestQueue, open_with};

async fn scenario(t: &TestQueue) -> Vec<String> {
    let q = &t.queue;
    let mut seen = Vec::new();
    for scope in [
        DestinationScope::Domain("example.net".into()),
        DestinationScope::Remote("relay".into()),
        DestinationScope::All,
    ] {
        assert!(q.pause(scope.clone()).await.unwrap(), "{scope}");
        assert!(!q.pause(scope.clone()).await.unwrap(), "{scope} twice");
    }
    let paused = q.destinations().await.unwrap().paused;
    seen.extend(paused.iter().map(|p| p.scope.to_string()));
    let resumed = q.resume(DestinationScope::Remote("relay".into())).await;
    assert!(resumed.unwrap().resumed);
    let again = q.resume(DestinationScope::Remote("relay".into())).await;
    assert!(!again.unwrap().resumed, "resumed twice");
    let paused = q.destinations().await.unwrap().paused;
    seen.extend(paused.iter().map(|p| p.scope.to_string()));
    assert!(q.destinations().await.unwrap().suspended.is_empty());
    seen
}

#[tokio::test]
async fn pauses_are_idempotent_and_the_same_when_closures_run_twice() {
    let once = scenario(&open_with(StoreOptions::default())).await;
    let twice = scenario(&open_with(StoreOptions {
        run_closures_twice: true,
        ..StoreOptions::default()
    }))
    .await;
    assert_eq!(once, twice);
    assert_eq!(
        once,
        [
            "all",
            "domain example.net",
            "remote.relay",
            "all",
            "domain example.net"
        ]
    );
}
