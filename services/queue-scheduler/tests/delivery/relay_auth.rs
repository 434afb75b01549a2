//! A relay's own password (`remote.<id>.auth.secret`) goes only over TLS: to a Dovecot
//! without STARTTLS the attempt fails temporarily and Dovecot sees no login, unless the
//! remote allows plain text.

use std::sync::Arc;
use std::time::SystemTime;

use ferrymail_e2e::{ALICE, Dovecot, DovecotOptions};
use ferrymail_queue_scheduler::{Outcome, Queue, Scheduler};
use ferrymail_store::{Store, StoreOptions};

use crate::{config_text, enqueue, options};

/// The relay is Dovecot's submission service, with alice's credentials.
fn scheduler(dovecot: &Dovecot, allow: bool) -> (Arc<Queue>, Scheduler, tempfile::TempDir) {
    let credentials = format!(
        "auth.username = \"{}\"\nauth.secret = \"{}\"\ntls.allow-plain-text = {allow}\n",
        ALICE.0, ALICE.1
    );
    let text = config_text(dovecot.ports.submission, "smtp").replace(
        "concurrency = 2",
        &format!("concurrency = 2\n{credentials}"),
    );
    let config = ferrymail_config::load_str("test.toml", &text).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_embedded(dir.path(), StoreOptions::default()).unwrap();
    let queue = Arc::new(Queue::new(store, &config.queue));
    let scheduler = Scheduler::new(queue.clone(), &config, options("one"));
    (queue, scheduler, dir)
}

async fn attempt(queue: &Queue, scheduler: &Scheduler) -> Vec<(u32, Outcome)> {
    let id = enqueue(queue, &["bob@example.net"]).await;
    let now = SystemTime::now();
    let claim = scheduler.claim(&id, now).await.unwrap().unwrap();
    scheduler.deliver(&claim, now).await
}

fn logins(dovecot: &Dovecot) -> usize {
    dovecot.log().matches("Login: user=").count()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_relay_password_is_not_sent_in_clear_text_unless_allowed() {
    let dovecot = Dovecot::start_with(DovecotOptions {
        auth_penalty: false,
        tls: false,
        ..DovecotOptions::default()
    });
    let (queue, strict, _dir) = scheduler(&dovecot, false);
    let outcomes = attempt(&queue, &strict).await;
    assert!(
        matches!(&outcomes[..], [(0, Outcome::TempFailed(why))] if why.contains("not encrypted")),
        "{outcomes:?}"
    );
    assert_eq!(logins(&dovecot), 0, "{}", dovecot.log());

    // Allowed, the password goes: Dovecot logs the login (the message then fails
    // temporarily, as its own relay is down, which is beside the point here).
    let (queue, allowed, _dir) = scheduler(&dovecot, true);
    let outcomes = attempt(&queue, &allowed).await;
    assert!(
        matches!(&outcomes[..], [(0, Outcome::TempFailed(_))]),
        "{outcomes:?}"
    );
    dovecot.wait_for_log("Login: user=<alice@example.org>");
}
