//! Until when the caller may still have a message handed over: a transaction checks it
//! before each step that could make the next hop take the message (the envelope and DATA,
//! and the end of data), and abandons the message once it has passed.
//!
//! The caller moves it as it learns more (the queue-scheduler extends it with each renewal
//! of its claim on the message), so it is watched rather than fixed.

use tokio::sync::watch;
use tokio::time::Instant;

use super::DeliveryError;

/// The moment after which a message must not be handed over, as the caller sets it.
#[derive(Clone, Debug, Default)]
pub struct Deadline {
    /// `None`: no deadline.
    until: Option<watch::Receiver<Instant>>,
}

impl Deadline {
    /// No deadline: the message may be handed over whenever the next hop takes it.
    pub fn none() -> Self {
        Self::default()
    }

    /// The deadline `until` says, as its sender moves it.
    pub fn watching(until: watch::Receiver<Instant>) -> Self {
        Self { until: Some(until) }
    }

    /// Whether the deadline has passed.
    pub fn passed(&self) -> bool {
        self.until
            .as_ref()
            .is_some_and(|until| *until.borrow() <= Instant::now())
    }

    /// [`DeliveryError::Abandoned`] once the deadline has passed, before `step`.
    pub(crate) fn check(&self, step: &str) -> Result<(), DeliveryError> {
        if self.passed() {
            return Err(DeliveryError::Abandoned(format!(
                "abandoned before {step}: the delivery's deadline passed"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_deadline_passes_and_moves_with_its_sender() {
        assert!(!Deadline::none().passed());
        let (sender, receiver) = watch::channel(Instant::now() - Duration::from_millis(1));
        let deadline = Deadline::watching(receiver);
        assert!(deadline.passed());
        assert!(matches!(
            deadline.check("DATA"),
            Err(DeliveryError::Abandoned(_))
        ));
        sender.send_replace(Instant::now() + Duration::from_secs(60));
        assert!(!deadline.passed());
        assert!(deadline.check("DATA").is_ok());
    }
}
