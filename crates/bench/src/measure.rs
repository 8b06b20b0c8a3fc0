//! Timing samples and their medians.

use std::time::Instant;

use anyhow::Context;

/// Runs a command to completion (the testkit's runner, for timing closures).
pub fn run_command(cmd: &mut std::process::Command) -> anyhow::Result<()> {
    limiquantix_testkit::run_command(cmd)?;
    Ok(())
}

/// Three decimals, for the JSON line.
pub fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The resident memory of a process, from /proc (VmRSS), in bytes.
pub fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).with_context(|| format!("process {pid}"))?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .context("no VmRSS line")?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()
        .context("VmRSS is not a number")?;
    Ok(kb * 1024)
}

#[derive(Debug, Default, Clone)]
pub struct Stats {
    samples_ms: Vec<f64>,
}

impl Stats {
    pub fn push(&mut self, ms: f64) {
        self.samples_ms.push(ms);
    }

    fn sorted(&self) -> Vec<f64> {
        let mut s = self.samples_ms.clone();
        s.sort_by(|a, b| a.total_cmp(b));
        s
    }

    pub fn median_ms(&self) -> f64 {
        let s = self.sorted();
        if s.is_empty() {
            return f64::NAN;
        }
        let mid = s.len() / 2;
        if s.len().is_multiple_of(2) { (s[mid - 1] + s[mid]) / 2.0 } else { s[mid] }
    }

    pub fn p99_ms(&self) -> f64 {
        let s = self.sorted();
        if s.is_empty() {
            return f64::NAN;
        }
        let idx = ((s.len() as f64 * 0.99).ceil() as usize).clamp(1, s.len()) - 1;
        s[idx]
    }

    pub fn summary(&self) -> String {
        format!("{:8.3} / {:8.3}  (n={})", self.median_ms(), self.p99_ms(), self.samples_ms.len())
    }
}

pub fn time_once(f: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    let start = Instant::now();
    f()?;
    Ok(start.elapsed().as_secs_f64() * 1000.0)
}

pub fn time_n(n: usize, mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<Stats> {
    let mut stats = Stats::default();
    for _ in 0..n {
        stats.push(time_once(&mut f)?);
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_p99() {
        let mut s = Stats::default();
        for v in [5.0, 1.0, 3.0, 2.0, 4.0] {
            s.push(v);
        }
        assert_eq!(s.median_ms(), 3.0);
        assert_eq!(s.p99_ms(), 5.0);
        s.push(6.0);
        assert_eq!(s.median_ms(), 3.5);
    }
}
