//! Rolling windows over fixed-size time buckets: a window of `buckets` buckets of
//! `bucket_secs` seconds holds what was counted in the current bucket and the `buckets - 1`
//! before it. A bucket ages out whole when the window has moved past it, so a limit frees up
//! in steps of one bucket (a second for requests per minute, a minute for tokens per hour, an
//! hour for tokens per day). All arithmetic saturates: stored counts come from shared data.

/// One window's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub bucket_secs: u64,
    pub buckets: u64,
}

/// Requests per minute: sixty one-second buckets.
pub const MINUTE: Window = Window {
    bucket_secs: 1,
    buckets: 60,
};
/// Tokens per rolling hour: sixty one-minute buckets.
pub const HOUR: Window = Window {
    bucket_secs: 60,
    buckets: 60,
};
/// Tokens per rolling day: twenty-four one-hour buckets.
pub const DAY: Window = Window {
    bucket_secs: 3600,
    buckets: 24,
};

/// The counted buckets, oldest first: (bucket number, count). Only non-empty, live buckets
/// are kept, so an idle key's record is small.
pub type Buckets = Vec<(u64, u64)>;

impl Window {
    fn bucket(self, now: u64) -> u64 {
        now.checked_div(self.bucket_secs).unwrap_or(now)
    }

    fn live(self, bucket: u64, now: u64) -> bool {
        let current = self.bucket(now);
        bucket <= current && current - bucket < self.buckets
    }

    /// The second at which `bucket` leaves the window.
    fn expiry(self, bucket: u64) -> u64 {
        bucket
            .saturating_add(self.buckets)
            .saturating_mul(self.bucket_secs)
    }

    /// Drops the buckets that left the window (and any from the future, which a clock step
    /// back would otherwise keep forever).
    pub fn prune(self, buckets: &mut Buckets, now: u64) {
        buckets.retain(|(bucket, count)| *count > 0 && self.live(*bucket, now));
    }

    /// Counts `amount` in the current bucket.
    pub fn add(self, buckets: &mut Buckets, now: u64, amount: u64) {
        self.prune(buckets, now);
        if amount == 0 {
            return;
        }
        let current = self.bucket(now);
        match buckets.last_mut() {
            Some((bucket, count)) if *bucket == current => *count = count.saturating_add(amount),
            _ => buckets.push((current, amount)),
        }
    }

    /// What the window holds now.
    pub fn used(self, buckets: &Buckets, now: u64) -> u64 {
        buckets
            .iter()
            .filter(|(bucket, _)| self.live(*bucket, now))
            .fold(0u64, |sum, (_, count)| sum.saturating_add(*count))
    }

    /// Seconds from `now` until the window holds less than `limit` (0 when it already does):
    /// the oldest buckets age out one after another until what remains is under the limit.
    pub fn wait(self, buckets: &Buckets, now: u64, limit: u64) -> u64 {
        let mut used = self.used(buckets, now);
        if used < limit {
            return 0;
        }
        for (bucket, count) in buckets.iter().filter(|(bucket, _)| self.live(*bucket, now)) {
            used = used.saturating_sub(*count);
            if used < limit {
                return self.expiry(*bucket).saturating_sub(now).max(1);
            }
        }
        // Only reachable with a limit of 0, which the keys file refuses.
        self.bucket_secs.saturating_mul(self.buckets)
    }

    /// When the oldest counted bucket leaves the window, if any.
    pub fn next_release(self, buckets: &Buckets, now: u64) -> Option<u64> {
        buckets
            .iter()
            .find(|(bucket, _)| self.live(*bucket, now))
            .map(|(bucket, _)| self.expiry(*bucket))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minute_of_one_second_buckets() {
        let mut b = Buckets::new();
        MINUTE.add(&mut b, 1000, 1);
        MINUTE.add(&mut b, 1000, 1);
        MINUTE.add(&mut b, 1030, 1);
        assert_eq!(b, vec![(1000, 2), (1030, 1)]);
        assert_eq!(MINUTE.used(&b, 1059), 3);
        // 1000's bucket covers [1000, 1001) and leaves the window at 1060.
        assert_eq!(MINUTE.used(&b, 1060), 1);
        assert_eq!(MINUTE.used(&b, 1089), 1);
        assert_eq!(MINUTE.used(&b, 1090), 0);
        // Limit 3, 3 used: free again when the first bucket leaves, 1060 - 1040 = 20 s.
        assert_eq!(MINUTE.wait(&b, 1040, 3), 20);
        // Limit 1: both buckets must go; the second leaves at 1090.
        assert_eq!(MINUTE.wait(&b, 1040, 1), 50);
        assert_eq!(MINUTE.wait(&b, 1040, 4), 0);
        assert_eq!(MINUTE.next_release(&b, 1040), Some(1060));
        // Seen from before the second request, that request does not count yet.
        assert_eq!(MINUTE.used(&b, 1010), 2);
        MINUTE.add(&mut b, 1075, 1);
        assert_eq!(b, vec![(1030, 1), (1075, 1)], "pruned as it went");
    }

    #[test]
    fn hour_and_day_buckets() {
        let mut b = Buckets::new();
        let t = 3600 * 1000 + 59; // the last second of a minute
        HOUR.add(&mut b, t, 500);
        HOUR.add(&mut b, t + 1, 300); // the next minute
        assert_eq!(HOUR.used(&b, t + 1), 800);
        // The first minute's bucket [t-59, t+1) leaves at t+1 + 3600 - 60.
        assert_eq!(HOUR.used(&b, t + 3540), 800);
        assert_eq!(HOUR.used(&b, t + 3541), 300);
        assert_eq!(HOUR.wait(&b, t + 1, 600), 3540);
        let mut d = Buckets::new();
        DAY.add(&mut d, 0, 10);
        DAY.add(&mut d, 86_399, 5);
        assert_eq!(DAY.used(&d, 86_399), 15);
        assert_eq!(DAY.used(&d, 86_400), 5);
        assert_eq!(DAY.wait(&d, 86_399, 15), 1);
    }

    #[test]
    fn extremes_saturate() {
        let mut b = vec![(u64::MAX, u64::MAX), (u64::MAX - 1, u64::MAX)];
        assert_eq!(MINUTE.used(&b, u64::MAX), u64::MAX);
        assert!(MINUTE.wait(&b, u64::MAX, 5) >= 1);
        MINUTE.add(&mut b, u64::MAX, u64::MAX);
        assert_eq!(MINUTE.used(&b, u64::MAX), u64::MAX);
        // A bucket from the future (the clock stepped back) is not counted and is dropped.
        let mut future = vec![(5000, 7)];
        assert_eq!(MINUTE.used(&future, 100), 0);
        MINUTE.prune(&mut future, 100);
        assert!(future.is_empty());
        assert_eq!(DAY.wait(&Buckets::new(), 0, 1), 0);
        let zero = Window {
            bucket_secs: 0,
            buckets: 0,
        };
        assert_eq!(zero.used(&vec![(1, 1)], 1), 0);
    }
}
