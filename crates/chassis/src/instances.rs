//! The instances of one service, when it runs as several (`mall up --split --replicas`, or
//! pods listed by hand): their base URLs, each caller taking them in turn.
//!
//! Written here rather than taken from a crate: tower's balancers want a discovery stream
//! and a load metric per endpoint, while a static list in turn is all a shop of a few
//! known instances needs.

use std::{
    str::FromStr,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

/// How long an instance that could not be reached is tried only after the others: a
/// killed one is back within about that (its supervisor's first restart is 250 ms).
const SET_ASIDE: Duration = Duration::from_secs(1);

/// Base URLs of one service's instances, from a comma-separated setting. Clones share
/// the turn and what was unreachable.
#[derive(Clone, Debug)]
pub struct Instances(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    bases: Box<[Box<str>]>,
    next: AtomicUsize,
    /// When each instance last could not be reached, in ms after `epoch` (0: never).
    unreachable_at: Box<[AtomicU64]>,
    epoch: Instant,
}

impl Instances {
    /// Every instance once, beginning with the one whose turn it is, those that could not
    /// be reached in the last [`SET_ASIDE`] last: callers try the next when one fails.
    pub fn in_turn(&self) -> impl Iterator<Item = &str> {
        let shared = &self.0;
        let start = shared.next.fetch_add(1, Ordering::Relaxed);
        let count = shared.bases.len();
        let now = self.now_ms();
        // Read once, so that each instance comes exactly once whatever others record; a
        // bit each, so that a request allocates nothing (past the 64th, never set aside).
        let set_aside: u64 = shared
            .unreachable_at
            .iter()
            .take(64)
            .enumerate()
            .filter(|(_, at)| {
                let at = at.load(Ordering::Relaxed);
                at != 0 && now < at + SET_ASIDE.as_millis() as u64
            })
            .fold(0, |mask, (i, _)| mask | 1 << i);
        let aside = move |i: &usize| *i < 64 && set_aside & (1 << i) != 0;
        let in_turn = move || (0..count).map(move |i| (start + i) % count);
        in_turn()
            .filter(move |i| !aside(i))
            .chain(in_turn().filter(aside))
            .map(|i| &*shared.bases[i])
    }

    /// Records that `base` could not be reached just now.
    pub fn unreachable(&self, base: &str) {
        if let Some(i) = self.0.bases.iter().position(|known| &**known == base) {
            self.0.unreachable_at[i].store(self.now_ms().max(1), Ordering::Relaxed);
        }
    }

    fn now_ms(&self) -> u64 {
        self.0.epoch.elapsed().as_millis() as u64
    }

    /// Every instance, in the order configured: for what asks each of them (the gateway's
    /// operations view), not for sharing work among them.
    pub fn all(&self) -> impl Iterator<Item = &str> {
        self.0.bases.iter().map(|base| &**base)
    }

    /// The first instance, for what one instance answers for all (the JWKS).
    pub fn first(&self) -> &str {
        &self.0.bases[0]
    }

    pub fn count(&self) -> usize {
        self.0.bases.len()
    }
}

impl FromIterator<String> for Instances {
    /// Panics on no instance: callers build lists of at least one.
    fn from_iter<I: IntoIterator<Item = String>>(bases: I) -> Self {
        let bases: Box<[Box<str>]> = bases
            .into_iter()
            .map(|base| base.trim_end_matches('/').into())
            .collect();
        assert!(!bases.is_empty(), "a service has at least one instance");
        Instances(Arc::new(Shared {
            unreachable_at: bases.iter().map(|_| AtomicU64::new(0)).collect(),
            bases,
            next: AtomicUsize::new(0),
            epoch: Instant::now(),
        }))
    }
}

impl FromStr for Instances {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        let bases: Vec<String> = value
            .split(',')
            .map(|base| base.trim().to_owned())
            .collect();
        for base in &bases {
            let valid = base
                .strip_prefix("http://")
                .or_else(|| base.strip_prefix("https://"))
                .is_some_and(|rest| !rest.is_empty() && !rest.contains(char::is_whitespace));
            if !valid {
                return Err(format!(
                    "`{base}` is not an http:// base URL; several instances are separated \
                     by commas (http://10.0.0.1:8081,http://10.0.0.2:8081)"
                ));
            }
        }
        Ok(bases.into_iter().collect())
    }
}

impl std::fmt::Display for Instances {
    /// The setting's form: comma-separated, as children are given it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.bases.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_call_starts_with_the_next_instance_and_offers_all() {
        let instances: Instances = "http://a:1,http://b:2/,http://c:3".parse().unwrap();
        let turns: Vec<Vec<&str>> = (0..4).map(|_| instances.in_turn().collect()).collect();
        assert_eq!(turns[0], ["http://a:1", "http://b:2", "http://c:3"]);
        assert_eq!(turns[1], ["http://b:2", "http://c:3", "http://a:1"]);
        assert_eq!(turns[2], ["http://c:3", "http://a:1", "http://b:2"]);
        assert_eq!(turns[3], turns[0]);
        assert_eq!(instances.to_string(), "http://a:1,http://b:2,http://c:3");
        let all: Vec<&str> = instances.all().collect();
        assert_eq!(
            all,
            ["http://a:1", "http://b:2", "http://c:3"],
            "in order, whose turn it is aside"
        );
    }

    #[test]
    fn an_instance_that_could_not_be_reached_is_tried_last_for_a_while() {
        let instances: Instances = "http://a:1,http://b:2,http://c:3".parse().unwrap();
        instances.unreachable("http://a:1");
        for _ in 0..3 {
            let turn: Vec<&str> = instances.in_turn().collect();
            assert_eq!(turn.len(), 3);
            assert_eq!(turn[2], "http://a:1", "{turn:?}");
        }
        std::thread::sleep(SET_ASIDE + Duration::from_millis(50));
        let firsts: Vec<&str> = (0..3)
            .map(|_| instances.in_turn().next().unwrap())
            .collect();
        assert!(firsts.contains(&"http://a:1"), "back in turn: {firsts:?}");
    }

    #[test]
    fn anything_but_http_base_urls_is_refused() {
        for refused in [
            "",
            "http://",
            "ftp://a",
            "http://a,,http://b",
            "a:80",
            "http://a b",
        ] {
            assert!(refused.parse::<Instances>().is_err(), "{refused:?}");
        }
        assert_eq!("https://a".parse::<Instances>().unwrap().count(), 1);
    }
}
