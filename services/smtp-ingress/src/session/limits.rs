//! `queue.limiter.inbound.<id>`: each limiter is taken at the stage where its key and
//! `match` variables are all known, from counters the directory-proxy keeps in the store, so
//! that a client spread over every ingress pod meets one limit.
//!
//! Over a limit, the client is answered as Postfix's anvil and Stalwart do, with a
//! temporary refusal: `421 4.4.5` at connect (only 220, 421 and 554 may open a session,
//! RFC 5321 §3.1; the connection is then closed), `451 4.4.5` at EHLO and MAIL, `452 4.4.5`
//! at RCPT (the other recipients of the transaction stand).
//!
//! Concurrency slots are leases: this session renews what it holds every third of the
//! shortest lease, gives back a transaction's slots at the next MAIL FROM and every slot when
//! it ends. An ingress that dies renews nothing, and its slots stop counting when their
//! leases end.
//!
//! Counters that cannot be reached (directory-proxy or store down, a slow answer) never
//! refuse anyone: the client is let through, counted in `ingress_limiter_unavailable_total`
//! and logged at most once per 10 s.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferrymail_config::model::inbound_limits::InboundLimiter;
use ferrymail_config::model::stage_rules::Stage;
use ferrymail_config::value::LimiterKey;
use ferrymail_rpc::directory::{
    DirectoryService, LimitAnswer, LimitKey, MAX_KEY_VALUE_LEN, RateRequest, SlotRequest,
};
use ferrymail_telemetry::LogLimit;
use tokio::task::JoinHandle;

use super::Session;
use super::reply::Reply;
use super::rules::CommandValues;

/// Longest wait for a limiter's answer before the client is let through.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// While the counters cannot be reached, one line per 10 s says so.
static UNAVAILABLE: LogLimit = LogLimit::new(Duration::from_secs(10));

/// One concurrency slot this session holds.
#[derive(Clone)]
struct Held {
    key: LimitKey,
    max: u32,
    lease: Duration,
    /// Given back at the next MAIL FROM (taken at MAIL or RCPT) or at the session's end.
    transaction: bool,
}

/// The limiter state of one session: its slots, the task renewing them, and whether the
/// greeting's limiters were taken already (a second EHLO, after STARTTLS, is not counted).
#[derive(Default)]
pub(crate) struct SessionLimits {
    held: Arc<Mutex<Vec<Held>>>,
    renewer: Option<JoinHandle<()>>,
    greeted: bool,
    /// This session's name for its slots.
    slot: String,
    directory: Option<Arc<dyn DirectoryService>>,
}

impl Drop for SessionLimits {
    fn drop(&mut self) {
        if let Some(renewer) = self.renewer.take() {
            renewer.abort();
        }
        let held = std::mem::take(&mut *lock(&self.held));
        if let (Some(directory), false) = (self.directory.clone(), held.is_empty()) {
            release(directory, self.slot.clone(), held);
        }
    }
}

fn lock(held: &Mutex<Vec<Held>>) -> std::sync::MutexGuard<'_, Vec<Held>> {
    held.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Gives `slots` back in the background: nobody waits for it, and a slot that could not be
/// given back ends with its lease.
fn release(directory: Arc<dyn DirectoryService>, slot: String, slots: Vec<Held>) {
    if tokio::runtime::Handle::try_current().is_err() {
        return;
    }
    tokio::spawn(async move {
        for held in slots {
            let _ =
                tokio::time::timeout(ANSWER_TIMEOUT, directory.release_slot(held.key, &slot)).await;
        }
    });
}

/// The network a client address belongs to: its IPv4 /24 or IPv6 /64, where one customer's
/// hosts usually are (IPv4-mapped IPv6 addresses count as IPv4).
fn network(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            format!("{a}.{b}.{c}.0/24")
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let prefix = std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
            format!("{prefix}/64")
        }
    }
}

/// What the limiters of a stage decided.
enum Verdict {
    Admitted,
    /// Over the rate.
    Rate,
    /// Over the concurrency.
    Concurrency,
}

impl Session {
    /// Takes from every enabled limiter of `stage` that applies to this session and command;
    /// `true` when one refused (the reply queued; at connect, the caller closes).
    pub(crate) async fn refused_by_limiter(
        &mut self,
        stage: Stage,
        values: CommandValues<'_>,
    ) -> bool {
        if stage == Stage::Ehlo && self.limits.greeted {
            return false;
        }
        if stage == Stage::Mail {
            self.release_transaction_slots();
        }
        let settings = self.settings.clone();
        for (id, limiter) in settings.limiters.iter().filter(|(_, l)| l.stage == stage) {
            let applies = limiter
                .conditions
                .iter()
                .all(|c| c.holds(&self.variable(c.variable, values)));
            if !applies {
                continue;
            }
            let key = LimitKey {
                limiter: id.clone(),
                values: limiter
                    .key
                    .iter()
                    .map(|k| self.key_value(*k, values))
                    .collect(),
            };
            match self.take(stage, id, limiter, key).await {
                Verdict::Admitted => {}
                refused => {
                    self.refuse_by_limiter(stage, id, &refused);
                    return true;
                }
            }
        }
        if stage == Stage::Ehlo {
            self.limits.greeted = true;
        }
        false
    }

    /// The value of a limiter's key now.
    fn key_value(&self, key: LimiterKey, values: CommandValues<'_>) -> String {
        let mut value = match key {
            LimiterKey::RemoteNetwork => network(self.peer.ip()),
            // Addresses are counted as the client wrote them, but not by case.
            other => self.variable(other.variable(), values).to_lowercase(),
        };
        // The directory refuses longer values: an overlong address must not slip past its
        // limiter by making the counters unreachable. Truncated ones share counters.
        if value.len() > MAX_KEY_VALUE_LEN {
            let mut end = MAX_KEY_VALUE_LEN;
            while !value.is_char_boundary(end) {
                end -= 1;
            }
            value.truncate(end);
        }
        value
    }

    /// Takes a slot and an event from `limiter`.
    async fn take(
        &mut self,
        stage: Stage,
        id: &str,
        limiter: &InboundLimiter,
        key: LimitKey,
    ) -> Verdict {
        let directory = self.shared.directory.clone();
        if self.limits.slot.is_empty() {
            self.limits.slot = format!("{:032x}", fastrand::u128(..));
        }
        let mut taken = None;
        if let Some(max) = limiter.concurrency {
            let request = SlotRequest {
                key: key.clone(),
                max,
                lease: limiter.lease,
                slot: self.limits.slot.clone(),
            };
            match self.answer(id, directory.take_slot(request)).await {
                Some(LimitAnswer::Refused { .. }) => return Verdict::Concurrency,
                Some(LimitAnswer::Admitted) => {
                    let held = Held {
                        key: key.clone(),
                        max,
                        lease: limiter.lease,
                        transaction: matches!(stage, Stage::Mail | Stage::Rcpt),
                    };
                    // A slot held already (a second recipient with the same key) was only
                    // renewed: it stays held whatever the rate says.
                    if self.hold(held.clone()) {
                        taken = Some(held);
                    }
                }
                None => {}
            }
        }
        if let Some(rate) = limiter.rate {
            let request = RateRequest {
                key,
                count: rate.count,
                period: rate.period,
            };
            if let Some(LimitAnswer::Refused { .. }) =
                self.answer(id, directory.take_rate(request)).await
            {
                // A refused command holds no slot.
                if let Some(held) = taken {
                    lock(&self.limits.held).retain(|h| h.key != held.key);
                    release(directory, self.limits.slot.clone(), vec![held]);
                }
                return Verdict::Rate;
            }
        }
        Verdict::Admitted
    }

    /// The limiter's answer, or `None` (let through, counted and logged) when it could not
    /// be had.
    async fn answer(
        &self,
        id: &str,
        call: impl std::future::Future<Output = Result<LimitAnswer, ferrymail_rpc::RpcError>>,
    ) -> Option<LimitAnswer> {
        let error = match tokio::time::timeout(ANSWER_TIMEOUT, call).await {
            Ok(Ok(answer)) => return Some(answer),
            Ok(Err(error)) => error.to_string(),
            Err(_) => format!("no answer within {ANSWER_TIMEOUT:?}"),
        };
        self.shared.metrics.limiter_unavailable(id);
        if let Some(left_out) = UNAVAILABLE.admit() {
            tracing::warn!(limiter = id, %error, left_out, "inbound limiter counters cannot be reached; not limiting");
        }
        None
    }

    /// Records a slot, starting the renewal when it is the first; `false` when it was held
    /// already.
    fn hold(&mut self, held: Held) -> bool {
        let mut slots = lock(&self.limits.held);
        if slots.iter().any(|h| h.key == held.key) {
            return false;
        }
        slots.push(held);
        drop(slots);
        if self.limits.renewer.is_none() {
            self.limits.directory = Some(self.shared.directory.clone());
            self.limits.renewer = Some(tokio::spawn(renew(
                self.shared.directory.clone(),
                self.limits.slot.clone(),
                self.limits.held.clone(),
            )));
        }
        true
    }

    /// Gives back the slots of the transaction that ends.
    fn release_transaction_slots(&mut self) {
        let ended: Vec<Held> = {
            let mut held = lock(&self.limits.held);
            let (ended, kept) = held.drain(..).partition(|h| h.transaction);
            *held = kept;
            ended
        };
        if let (Some(directory), false) = (self.limits.directory.clone(), ended.is_empty()) {
            release(directory, self.limits.slot.clone(), ended);
        }
    }

    fn refuse_by_limiter(&mut self, stage: Stage, id: &str, why: &Verdict) {
        self.shared.metrics.limiter_refused(id);
        self.shared.metrics.rejected("limit");
        let concurrency = matches!(why, Verdict::Concurrency);
        tracing::info!(
            stage = stage.as_str(),
            client = %self.peer.ip(),
            limiter = id,
            concurrency,
            "refused by queue.limiter.inbound.{id}"
        );
        let text = match (concurrency, stage) {
            (false, _) => "Rate limit exceeded, try again later",
            (true, Stage::Connect | Stage::Ehlo) => "Too many concurrent sessions, try again later",
            (true, _) => "Too many concurrent transactions, try again later",
        };
        let code = match stage {
            Stage::Connect => 421,
            Stage::Rcpt => 452,
            _ => 451,
        };
        self.reply(Reply::new(code, "4.4.5", text));
    }
}

/// Renews `held` every third of the shortest lease until aborted.
async fn renew(directory: Arc<dyn DirectoryService>, slot: String, held: Arc<Mutex<Vec<Held>>>) {
    loop {
        let slots = lock(&held).clone();
        let every = slots
            .iter()
            .map(|h| h.lease / 3)
            .min()
            .unwrap_or(Duration::from_secs(1));
        tokio::time::sleep(every).await;
        let slots = lock(&held).clone();
        for h in slots {
            let request = SlotRequest {
                key: h.key,
                max: h.max,
                lease: h.lease,
                slot: slot.clone(),
            };
            // A renewal that fails is tried again a third of a lease later; a slot is
            // renewed even when the limit has since been lowered: its holder is under way.
            let _ = tokio::time::timeout(ANSWER_TIMEOUT, directory.take_slot(request)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_are_ipv4_24_and_ipv6_64() {
        let net = |ip: &str| network(ip.parse().unwrap_or(IpAddr::from([0, 0, 0, 0])));
        assert_eq!(net("192.0.2.77"), "192.0.2.0/24");
        assert_eq!(net("192.0.2.77"), net("192.0.2.1"));
        assert_ne!(net("192.0.2.77"), net("192.0.3.77"));
        assert_eq!(net("::ffff:192.0.2.9"), "192.0.2.0/24");
        assert_eq!(net("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64");
        assert_ne!(net("2001:db8:1:2::1"), net("2001:db8:1:3::1"));
    }
}
