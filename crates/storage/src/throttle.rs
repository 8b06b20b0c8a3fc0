//! A bandwidth limit for data copies (full clones, imports), so a large copy
//! does not starve the VMs that run on the same datastore (Proxmox's
//! `bwlimit`). Copies call [`Throttle::pace`] with the bytes done so far.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The longest a paced copy sleeps before it looks at its cancel flag again.
const CANCEL_CHECK: Duration = Duration::from_millis(50);

#[derive(Debug)]
pub struct Throttle {
    bytes_per_sec: Option<u64>,
    start: Instant,
}

impl Throttle {
    /// `None`: no limit.
    pub fn new(bytes_per_sec: Option<u64>) -> Self {
        Self { bytes_per_sec: bytes_per_sec.filter(|r| *r > 0), start: Instant::now() }
    }

    /// Blocks until `done` bytes are within the limit, or until `cancel` is set.
    pub fn pace(&self, done: u64, cancel: &AtomicBool) {
        let Some(rate) = self.bytes_per_sec else { return };
        let due = Duration::from_secs_f64(done as f64 / rate as f64);
        while let Some(wait) = due.checked_sub(self.start.elapsed()).filter(|w| !w.is_zero()) {
            if cancel.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(wait.min(CANCEL_CHECK));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paces_to_the_rate_and_stops_waiting_when_cancelled() {
        let t = Throttle::new(Some(10 << 20));
        let cancel = AtomicBool::new(false);
        let start = Instant::now();
        t.pace(2 << 20, &cancel);
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(190), "2 MiB at 10 MiB/s: {took:?}");
        cancel.store(true, Ordering::Relaxed);
        let start = Instant::now();
        t.pace(1 << 30, &cancel);
        assert!(start.elapsed() < Duration::from_millis(200));
        Throttle::new(None).pace(u64::MAX, &AtomicBool::new(false));
    }
}
