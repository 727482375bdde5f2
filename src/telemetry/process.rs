//! The standard `process_*` metrics, read from `/proc` at each scrape.
//!
//! Why not the `prometheus` crate's process collector: it keeps `process_cpu_seconds_total` in
//! an integer counter, so the CPU a gateway uses shows in whole seconds and a `rate()` over a
//! few minutes of moderate load reads 0. This one exports CPU time with the kernel's tick
//! resolution (usually 10 ms). Names, types and help follow the Prometheus client conventions,
//! so dashboards written for any exporter work unchanged. On systems without `/proc` nothing
//! is exported.

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Counter, Gauge, Opts};

/// The process collector; register it once in the default registry.
pub struct ProcessCollector {
    cpu: Counter,
    resident: Gauge,
    virtual_bytes: Gauge,
    open_fds: Gauge,
    max_fds: Gauge,
    start_time: Gauge,
    threads: Gauge,
    descs: Vec<Desc>,
}

impl Default for ProcessCollector {
    fn default() -> Self {
        let counter = |name: &str, help: &str| Counter::with_opts(Opts::new(name, help));
        let gauge = |name: &str, help: &str| Gauge::with_opts(Opts::new(name, help));
        let made = (|| -> prometheus::Result<Self> {
            let mut c = Self {
                cpu: counter(
                    "process_cpu_seconds_total",
                    "Total user and system CPU time spent in seconds.",
                )?,
                resident: gauge(
                    "process_resident_memory_bytes",
                    "Resident memory size in bytes.",
                )?,
                virtual_bytes: gauge(
                    "process_virtual_memory_bytes",
                    "Virtual memory size in bytes.",
                )?,
                open_fds: gauge("process_open_fds", "Number of open file descriptors.")?,
                max_fds: gauge(
                    "process_max_fds",
                    "Maximum number of open file descriptors.",
                )?,
                start_time: gauge(
                    "process_start_time_seconds",
                    "Start time of the process since unix epoch in seconds.",
                )?,
                threads: gauge("process_threads", "Number of OS threads in the process.")?,
                descs: Vec::new(),
            };
            c.descs = c.metrics().iter().flat_map(|m| m.desc()).cloned().collect();
            Ok(c)
        })();
        made.expect("constant metric options are valid")
    }
}

impl ProcessCollector {
    fn metrics(&self) -> [&dyn Collector; 7] {
        [
            &self.cpu,
            &self.resident,
            &self.virtual_bytes,
            &self.open_fds,
            &self.max_fds,
            &self.start_time,
            &self.threads,
        ]
    }

    /// Reads `/proc` into the metrics; false when it cannot.
    fn refresh(&self) -> bool {
        let Some(stat) = Stat::read() else {
            return false;
        };
        let cpu = stat.cpu_seconds();
        // A counter only goes up: add what the kernel counted since the last scrape.
        let delta = cpu - self.cpu.get();
        if delta > 0.0 {
            self.cpu.inc_by(delta);
        }
        self.resident.set(stat.rss_bytes());
        self.virtual_bytes.set(stat.vsize as f64);
        self.threads.set(stat.threads as f64);
        if let Some(start) = stat.start_seconds() {
            self.start_time.set(start);
        }
        if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
            self.open_fds.set(fds.count() as f64);
        }
        if let Some(max) = max_open_files() {
            self.max_fds.set(max);
        }
        true
    }
}

impl Collector for ProcessCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        if !self.refresh() {
            return Vec::new();
        }
        self.metrics().iter().flat_map(|m| m.collect()).collect()
    }
}

/// The fields of `/proc/self/stat` the metrics need.
struct Stat {
    utime: u64,
    stime: u64,
    threads: u64,
    starttime: u64,
    vsize: u64,
    rss_pages: u64,
}

impl Stat {
    fn read() -> Option<Self> {
        Self::parse(&std::fs::read_to_string("/proc/self/stat").ok()?)
    }

    /// Fields after the command name (which may hold spaces and parentheses: it ends at the
    /// last `)`), numbered as in proc(5) from field 3.
    fn parse(text: &str) -> Option<Self> {
        let rest = &text[text.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
        Some(Self {
            utime: field(14)?,
            stime: field(15)?,
            threads: field(20)?,
            starttime: field(22)?,
            vsize: field(23)?,
            rss_pages: field(24)?,
        })
    }

    fn cpu_seconds(&self) -> f64 {
        (self.utime + self.stime) as f64 / clock_ticks()
    }

    fn rss_bytes(&self) -> f64 {
        // SAFETY: sysconf only reads a system constant.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1);
        (self.rss_pages * page as u64) as f64
    }

    /// Boot time plus the start offset.
    fn start_seconds(&self) -> Option<f64> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let btime: f64 = stat
            .lines()
            .find_map(|l| l.strip_prefix("btime "))?
            .trim()
            .parse()
            .ok()?;
        Some(btime + self.starttime as f64 / clock_ticks())
    }
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// The soft limit of open files, from `/proc/self/limits`.
fn max_open_files() -> Option<f64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_survive_a_command_name_with_spaces_and_parentheses() {
        let line = "4242 (port ico) (x)) S 1 2 3 4 5 6 7 8 9 10 250 125 0 0 20 0 7 0 \
                    12345 987654321 2048 18446744073709551615";
        let s = Stat::parse(line).unwrap();
        assert_eq!((s.utime, s.stime, s.threads), (250, 125, 7));
        assert_eq!(
            (s.starttime, s.vsize, s.rss_pages),
            (12345, 987654321, 2048)
        );
    }

    #[test]
    fn cpu_time_is_exported_with_sub_second_resolution() {
        let c = ProcessCollector::default();
        let families = c.collect();
        let cpu = families
            .iter()
            .find(|f| f.name() == "process_cpu_seconds_total")
            .expect("exported on Linux");
        let value = cpu.get_metric()[0].get_counter().value();
        // Burn some CPU; the counter must move by less than a second, not stay at a whole one.
        let mut x = 0u64;
        let until = std::time::Instant::now() + std::time::Duration::from_millis(120);
        while std::time::Instant::now() < until {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        let again = c.collect();
        let after = again
            .iter()
            .find(|f| f.name() == "process_cpu_seconds_total")
            .unwrap()
            .get_metric()[0]
            .get_counter()
            .value();
        let moved = after - value;
        assert!(moved > 0.0 && moved < 1.0, "moved by {moved}");
        assert!(families.iter().any(|f| f.name() == "process_open_fds"));
    }
}
