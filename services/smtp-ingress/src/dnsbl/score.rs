//! Adding up the weights of the zones that list a name, against the threshold.

use ferrymail_config::model::dnsbl::DnsblZone;

use super::answer::Answer;

/// The combined verdict of the zones of one scope about one name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Score {
    /// The sum of the weights of the zones that list the name.
    pub(crate) total: i64,
    /// The zones that list it with a positive weight, in configuration order: named in the
    /// refusal (an allow list is not why a client was refused).
    pub(crate) blocking: Vec<String>,
}

impl Score {
    /// The score of `answers`, one per zone.
    pub(crate) fn of<'z>(answers: impl IntoIterator<Item = (&'z DnsblZone, Answer)>) -> Self {
        let mut score = Score::default();
        for (zone, answer) in answers {
            if answer != Answer::Listed {
                continue;
            }
            score.total += i64::from(zone.weight);
            if zone.weight > 0 {
                score.blocking.push(zone.zone.clone());
            }
        }
        score
    }

    /// Whether the score refuses the client: at or above `threshold` (Postfix's rule).
    pub(crate) fn refuses(&self, threshold: u32) -> bool {
        self.total >= i64::from(threshold)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use ferrymail_config::value::DnsblScope;

    use super::*;

    fn zone(name: &str, weight: i32) -> DnsblZone {
        DnsblZone {
            id: name.into(),
            zone: name.into(),
            scope: DnsblScope::Ip,
            weight,
            replies: Vec::new(),
        }
    }

    #[test]
    fn weights_of_listing_zones_add_up_to_the_threshold() {
        let (a, b, c) = (
            zone("a.example", 1),
            zone("b.example", 1),
            zone("c.example", 3),
        );
        let one = Score::of([(&a, Answer::Listed), (&b, Answer::NotListed)]);
        assert_eq!(one.total, 1);
        assert!(!one.refuses(2));
        assert!(one.refuses(1));
        let both = Score::of([(&a, Answer::Listed), (&b, Answer::Listed)]);
        assert_eq!(both.total, 2);
        assert!(both.refuses(2));
        assert_eq!(both.blocking, ["a.example", "b.example"]);
        let heavy = Score::of([(&c, Answer::Listed)]);
        assert!(heavy.refuses(3));
    }

    #[test]
    fn errors_and_failures_count_nothing() {
        let a = zone("a.example", 5);
        let failed = Score::of([(&a, Answer::Failed)]);
        assert_eq!(failed.total, 0);
        let error = Score::of([(&a, Answer::ErrorCode("127.255.255.254".parse().unwrap()))]);
        assert_eq!(error.total, 0);
        assert!(!error.refuses(1));
    }

    #[test]
    fn an_allow_list_takes_weight_away() {
        let (bl, wl) = (zone("bl.example", 1), zone("wl.example", -2));
        let score = Score::of([(&bl, Answer::Listed), (&wl, Answer::Listed)]);
        assert_eq!(score.total, -1);
        assert!(!score.refuses(1));
        assert_eq!(score.blocking, ["bl.example"]);
    }
}
