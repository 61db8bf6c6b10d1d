//! [`MemoryMonitor`]: samples the resident memory and warns before the process hits its limit.

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use opentelemetry::metrics::{Meter, ObservableUpDownCounter};

/// Samples the process's resident memory every few seconds, records it as
/// `process.memory.usage`, and logs a WARN when it passes a share (80 % by default) of the limit:
/// the cgroup's memory limit when there is one (`memory.max`, or v1 `memory.limit_in_bytes`),
/// else the configured [`limit_bytes`](Self::limit_bytes).
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::time::Duration;
/// use parapet_telemetry::MemoryMonitor;
///
/// let monitor = MemoryMonitor::new()
///     .interval(Duration::from_secs(10))
///     .threshold(0.9)
///     .limit_bytes(512 * 1024 * 1024) // used when the cgroup sets no limit
///     .start()
///     .expect("inside a Tokio runtime");
/// // Sampling stops when `monitor` is dropped.
/// # drop(monitor);
/// # }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct MemoryMonitor {
    interval: Duration,
    threshold: f64,
    limit: Option<u64>,
    cgroup_root: PathBuf,
    meter: Option<Meter>,
}

impl Default for MemoryMonitor {
    fn default() -> Self {
        Self::new()
    }
}

/// Where the resident memory stands against the limit, as computed by [`MemoryMonitor::assess`].
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum MemoryStatus {
    /// No limit is known.
    Unlimited,
    /// Under the threshold; the fraction of the limit in use.
    Below(f64),
    /// At or over the threshold; the fraction of the limit in use.
    Above(f64),
}

impl MemoryMonitor {
    /// Samples every 5 s and warns at 80 % of the cgroup limit (no configured limit).
    pub fn new() -> Self {
        Self {
            interval: Duration::from_secs(5),
            threshold: 0.8,
            limit: None,
            cgroup_root: PathBuf::from("/sys/fs/cgroup"),
            meter: None,
        }
    }

    /// How often to sample.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(10));
        self
    }

    /// The share of the limit (between 0 and 1) above which a WARN is logged.
    pub fn threshold(mut self, fraction: f64) -> Self {
        self.threshold = fraction.clamp(0.0, 1.0);
        self
    }

    /// The limit to use when the cgroup sets none.
    pub fn limit_bytes(mut self, limit: u64) -> Self {
        self.limit = Some(limit);
        self
    }

    /// The meter of `process.memory.usage` (by default the global `parapet-telemetry` meter).
    pub fn meter(mut self, meter: Meter) -> Self {
        self.meter = Some(meter);
        self
    }

    /// The limit in force: the cgroup's, else the configured one.
    pub fn limit(&self) -> Option<u64> {
        cgroup_limit(&self.cgroup_root).or(self.limit)
    }

    /// Compares a resident size with a limit: the pure decision behind every sample.
    pub fn assess(&self, resident: u64, limit: Option<u64>) -> MemoryStatus {
        match limit {
            None | Some(0) => MemoryStatus::Unlimited,
            Some(limit) => {
                #[allow(clippy::cast_precision_loss)]
                let fraction = resident as f64 / limit as f64;
                if fraction >= self.threshold {
                    MemoryStatus::Above(fraction)
                } else {
                    MemoryStatus::Below(fraction)
                }
            }
        }
    }

    /// Starts sampling on the current Tokio runtime; `None` outside one.
    pub fn start(self) -> Option<MemoryMonitorHandle> {
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let resident = Arc::new(AtomicU64::new(read_resident().unwrap_or(0)));
        let meter = self
            .meter
            .clone()
            .unwrap_or_else(|| opentelemetry::global::meter("parapet-telemetry"));
        let observed = resident.clone();
        let gauge = meter
            .i64_observable_up_down_counter(
                opentelemetry_semantic_conventions::metric::PROCESS_MEMORY_USAGE,
            )
            .with_unit("By")
            .with_description("The amount of physical memory in use.")
            .with_callback(move |o| {
                o.observe(
                    i64::try_from(observed.load(Ordering::Relaxed)).unwrap_or(i64::MAX),
                    &[],
                );
            })
            .build();
        let task = runtime.spawn(async move {
            let mut ticker = tokio::time::interval(self.interval);
            let mut above = false;
            loop {
                ticker.tick().await;
                let Some(rss) = read_resident() else { continue };
                resident.store(rss, Ordering::Relaxed);
                let limit = self.limit();
                match self.assess(rss, limit) {
                    MemoryStatus::Above(fraction) if !above => {
                        above = true;
                        tracing::warn!(
                            target: "parapet_telemetry",
                            resident_bytes = rss,
                            limit_bytes = limit.unwrap_or(0),
                            percent = fraction * 100.0,
                            "resident memory above {:.0} % of the limit",
                            self.threshold * 100.0
                        );
                    }
                    MemoryStatus::Above(_) => {}
                    _ => above = false,
                }
            }
        });
        Some(MemoryMonitorHandle {
            task,
            _gauge: gauge,
        })
    }
}

/// Keeps a started [`MemoryMonitor`] sampling; dropping it stops the sampling.
#[derive(Debug)]
pub struct MemoryMonitorHandle {
    task: tokio::task::JoinHandle<()>,
    _gauge: ObservableUpDownCounter<i64>,
}

impl Drop for MemoryMonitorHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The resident set size of this process, from `/proc/self/status`.
pub(crate) fn read_resident() -> Option<u64> {
    parse_vm_rss(&std::fs::read_to_string("/proc/self/status").ok()?)
}

/// `VmRSS:   123456 kB` in bytes.
pub(crate) fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// The memory limit of the cgroup, v2 first, then v1.
fn cgroup_limit(root: &Path) -> Option<u64> {
    if let Ok(v2) = std::fs::read_to_string(root.join("memory.max")) {
        return parse_cgroup_limit(&v2);
    }
    let v1 = std::fs::read_to_string(root.join("memory/memory.limit_in_bytes")).ok()?;
    parse_cgroup_limit(&v1)
}

/// `max` (v2) or a page-rounded `i64::MAX` (v1's "unlimited") mean no limit.
pub(crate) fn parse_cgroup_limit(raw: &str) -> Option<u64> {
    let raw = raw.trim();
    if raw == "max" {
        return None;
    }
    let value: u64 = raw.parse().ok()?;
    (value < 1 << 62).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cgroup_limits() {
        assert_eq!(parse_cgroup_limit("max\n"), None);
        assert_eq!(parse_cgroup_limit("536870912\n"), Some(536_870_912));
        assert_eq!(parse_cgroup_limit("9223372036854771712\n"), None);
        assert_eq!(parse_cgroup_limit("garbage"), None);
    }

    #[test]
    fn reads_cgroup_files_v2_then_v1() {
        let dir = std::env::temp_dir().join(format!("parapet-cgroup-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("memory")).unwrap();
        std::fs::write(dir.join("memory/memory.limit_in_bytes"), "1048576\n").unwrap();
        assert_eq!(cgroup_limit(&dir), Some(1_048_576));
        std::fs::write(dir.join("memory.max"), "max\n").unwrap();
        assert_eq!(cgroup_limit(&dir), None);
        let monitor = MemoryMonitor {
            cgroup_root: dir.clone(),
            ..MemoryMonitor::new()
        };
        assert_eq!(monitor.clone().limit_bytes(42).limit(), Some(42));
        std::fs::write(dir.join("memory.max"), "2048\n").unwrap();
        assert_eq!(
            monitor.limit_bytes(42).limit(),
            Some(2048),
            "the cgroup wins"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn parses_vm_rss() {
        let status = "Name:\tparapet\nVmPeak:\t  9000 kB\nVmRSS:\t    2048 kB\nThreads: 4\n";
        assert_eq!(parse_vm_rss(status), Some(2048 * 1024));
        assert_eq!(parse_vm_rss("Name: x\n"), None);
        assert!(read_resident().is_some_and(|rss| rss > 0));
    }

    #[test]
    fn assesses_against_the_threshold() {
        let monitor = MemoryMonitor::new();
        assert_eq!(monitor.assess(900, None), MemoryStatus::Unlimited);
        assert_eq!(monitor.assess(799, Some(1000)), MemoryStatus::Below(0.799));
        assert_eq!(monitor.assess(800, Some(1000)), MemoryStatus::Above(0.8));
        let strict = MemoryMonitor::new().threshold(0.5);
        assert_eq!(strict.assess(600, Some(1000)), MemoryStatus::Above(0.6));
    }

    #[tokio::test]
    async fn starts_inside_a_runtime_only() {
        let handle = MemoryMonitor::new()
            .interval(Duration::from_millis(10))
            .start();
        assert!(handle.is_some());
        assert!(
            std::thread::spawn(|| MemoryMonitor::new().start().is_none())
                .join()
                .unwrap()
        );
    }
}
