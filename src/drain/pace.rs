//! How long the drain sleeps before it polls the rings again: long enough that each poll moves a batch,
//! short enough that no ring fills. Each wake-up of the drain thread preempts a busy core of the host (on a
//! serving loop that keeps every core busy, 1000 wake-ups a second cost 5-10 times the records themselves),
//! so the work is made proportional to the data: the wait is the time the fullest ring takes to fill to
//! [`Pacer::TARGET`] of its capacity at the rate the last polls saw, between [`Pacer::MIN`] and
//! [`Pacer::MAX`]. A burst is caught by the next poll (the estimate takes the new rate at once, and decays
//! slowly after it).

use std::time::{Duration, Instant};

#[derive(Debug)]
pub(super) struct Pacer {
    last: Option<Instant>,
    /// Estimated fill rate of the fullest ring, in ring capacities per second.
    rate: f64,
}

impl Pacer {
    /// The fill of the fullest ring the next poll aims at: a quarter, so a rate four times the estimate still
    /// fits before that poll.
    pub(super) const TARGET: f64 = 0.25;
    pub(super) const MIN: Duration = Duration::from_millis(1);
    /// The longest wait while a profile is open (also how late `NPUPROF_MAX_STEPS`-free idle profiles see
    /// the records of a thread that just exited).
    pub(super) const MAX: Duration = Duration::from_millis(100);
    /// Without a profile the rings are not polled: only messages (which wake the drain at once) and the
    /// 200 ms control tick.
    pub(super) const IDLE: Duration = Duration::from_millis(200);
    /// The estimate halves every this long without a faster poll.
    const HALF_LIFE: f64 = 0.25;

    pub(super) fn new() -> Pacer {
        Pacer {
            last: None,
            rate: 0.0,
        }
    }

    /// A profile starts: the rate is unknown, the first poll comes after 10 ms (and the next ones measure).
    pub(super) fn reset(&mut self) {
        self.last = None;
        self.rate = Self::TARGET / 0.010;
    }

    /// A poll at `now` found the fullest ring `fill` full (records moved / capacity).
    pub(super) fn polled(&mut self, now: Instant, fill: f64) {
        if let Some(last) = self.last {
            let dt = now.duration_since(last).as_secs_f64().max(1e-4);
            let seen = fill / dt;
            let decayed = self.rate * 0.5f64.powf(dt / Self::HALF_LIFE);
            self.rate = seen.max(decayed);
        }
        self.last = Some(now);
    }

    /// How long to wait for a message before the next poll.
    pub(super) fn wait(&self, active: bool) -> Duration {
        if !active {
            return Self::IDLE;
        }
        if self.rate <= 0.0 {
            return Self::MAX;
        }
        Duration::from_secs_f64(Self::TARGET / self.rate).clamp(Self::MIN, Self::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(d: Duration) -> u128 {
        d.as_millis()
    }

    #[test]
    fn the_wait_follows_the_data() {
        let t = Instant::now();
        let at = |ms: u64| t + Duration::from_millis(ms);
        let mut p = Pacer::new();
        assert_eq!(p.wait(false), Pacer::IDLE);
        p.reset();
        // A new profile polls soon.
        assert!(ms(p.wait(true)) <= 10, "{:?}", p.wait(true));
        p.polled(at(0), 0.0);
        // 1% of a ring in 100 ms (a realistic serving rate with the default 1 MiB rings): the longest wait.
        p.polled(at(100), 0.01);
        for i in 2..20 {
            p.polled(at(100 * i), 0.01);
        }
        assert_eq!(p.wait(true), Pacer::MAX);
        // A burst: half a ring in 50 ms (10 rings per second) -> a quarter takes 25 ms.
        p.polled(at(1950), 0.5);
        assert_eq!(ms(p.wait(true)), 25);
        // It decays after the burst, not at once.
        p.polled(at(1975), 0.0);
        let w = ms(p.wait(true));
        assert!(w > 25 && w < 40, "{w}");
        for i in 0..40 {
            p.polled(at(2000 + 100 * i), 0.0);
        }
        assert_eq!(p.wait(true), Pacer::MAX);
        // Never below the floor, whatever the rate.
        p.polled(at(5901), 1.0);
        assert_eq!(p.wait(true), Pacer::MIN);
    }
}
