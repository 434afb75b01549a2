//! The Message-ID index: written with the message, found however the id is written, gone
//! with the message; under retried closures.

use ferrymail_rpc::queue::{QueueError, QueueService};
use ferrymail_store::StoreOptions;

use crate::support::{enqueue, envelope, open_with, sample};

#[tokio::test]
async fn a_message_is_found_by_its_message_id_until_it_leaves() {
    let t = open_with(StoreOptions {
        run_closures_twice: true,
        ..StoreOptions::default()
    });
    let q = &t.queue;
    let header = b"Received: x\r\nMessage-ID: <Twin@Example.org>\r\n\r\nbody\r\n";
    let first = enqueue(q, envelope("a@example.org", &["b@example.net"]), header).await;
    // A body larger than one transaction holds is streamed: its header is indexed as well.
    let mut large = header.to_vec();
    large.extend(sample(400_000));
    let second = enqueue(q, envelope("a@example.org", &["c@example.net"]), &large).await;
    let _other = enqueue(
        q,
        envelope("a@example.org", &["d@example.net"]),
        b"Subject: x\r\n\r\n",
    )
    .await;

    let mut expected = vec![first.clone(), second.clone()];
    expected.sort();
    for written in [
        "twin@example.org",
        "<TWIN@example.org>",
        " <Twin@Example.org> ",
    ] {
        assert_eq!(
            q.find_by_message_id(written).await.unwrap(),
            expected,
            "{written}"
        );
    }
    assert_eq!(q.cancel(&first, &[]).await.unwrap(), 1);
    assert_eq!(
        q.find_by_message_id("twin@example.org").await.unwrap(),
        std::slice::from_ref(&second)
    );
    assert_eq!(q.cancel(&second, &[]).await.unwrap(), 1);
    let gone = q.find_by_message_id("twin@example.org").await;
    assert!(matches!(gone, Err(QueueError::NotFound(_))), "{gone:?}");
    let malformed = q.find_by_message_id("<>").await;
    assert!(
        matches!(malformed, Err(QueueError::InvalidArgument(_))),
        "{malformed:?}"
    );
}
