//! Metrics read at scrape time rather than kept up to date: the process's resources and
//! the database pools' connections. Both are a look at a number something else keeps (the
//! kernel, sqlx), so reading them when Prometheus asks is exact and costs nothing between
//! scrapes.

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
};

use crate::db::Database;

/// The process the service runs in: memory, CPU, descriptors and start time, read from
/// `/proc/self` at each scrape (no figures where there is no `/proc`).
///
/// By hand rather than with the `procfs` crate: four numbers from two files do not
/// warrant a dependency with its own tree; prometheus-client has no process collector.
#[derive(Debug)]
pub(crate) struct ProcessCollector {
    /// Seconds since the epoch; it never changes, so it is read once.
    start_time: Option<f64>,
}

/// What `mall up` means for these figures, said in every help text.
const SHARED: &str =
    "of the process the service runs in (under `mall up` all services share one process)";

impl ProcessCollector {
    pub(crate) fn new() -> Self {
        ProcessCollector {
            start_time: ProcessStat::read().and_then(|stat| stat.start_time()),
        }
    }
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Some(stat) = ProcessStat::read() {
            let resident = ConstGauge::new(stat.resident_bytes());
            resident.encode(encoder.encode_descriptor(
                "process_resident_memory_bytes",
                &format!("Resident memory, in bytes, {SHARED}"),
                None,
                MetricType::Gauge,
            )?)?;
            let cpu = ConstCounter::new(stat.cpu_seconds());
            cpu.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                &format!("CPU time, user and system, in seconds, {SHARED}"),
                None,
                MetricType::Counter,
            )?)?;
        }
        if let Ok(descriptors) = std::fs::read_dir("/proc/self/fd") {
            let open = ConstGauge::new(descriptors.count() as i64);
            open.encode(encoder.encode_descriptor(
                "process_open_fds",
                &format!("Open file descriptors {SHARED}"),
                None,
                MetricType::Gauge,
            )?)?;
        }
        if let Some(start_time) = self.start_time {
            ConstGauge::new(start_time).encode(encoder.encode_descriptor(
                "process_start_time_seconds",
                &format!("Start time, in seconds since the Unix epoch, {SHARED}"),
                None,
                MetricType::Gauge,
            )?)?;
        }
        Ok(())
    }
}

/// The fields of `/proc/self/stat` (proc(5)) the metrics use.
struct ProcessStat {
    /// User and system time, in clock ticks.
    cpu_ticks: u64,
    /// Since boot, in clock ticks.
    started_ticks: u64,
    resident_pages: u64,
}

impl ProcessStat {
    fn read() -> Option<Self> {
        Self::parse(&std::fs::read_to_string("/proc/self/stat").ok()?)
    }

    /// Parses the line after the command name, which is in parentheses and may hold
    /// spaces and parentheses itself: fields are counted from its last `)`.
    fn parse(line: &str) -> Option<Self> {
        let (_, after_name) = line.rsplit_once(')')?;
        // Field 3 (state) is the first after the name.
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let field = |number: usize| fields.get(number - 3)?.parse::<u64>().ok();
        Some(ProcessStat {
            cpu_ticks: field(14)? + field(15)?,
            started_ticks: field(22)?,
            resident_pages: field(24)?,
        })
    }

    fn cpu_seconds(&self) -> f64 {
        self.cpu_ticks as f64 / ticks_per_second()
    }

    fn resident_bytes(&self) -> i64 {
        // SAFETY: sysconf(3) only reads a configuration value.
        let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        (self.resident_pages as i64).saturating_mul(page_size)
    }

    /// Boot time (`btime` in `/proc/stat`) plus the ticks from boot to the start.
    fn start_time(&self) -> Option<f64> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let boot: u64 = stat
            .lines()
            .find_map(|line| line.strip_prefix("btime "))?
            .trim()
            .parse()
            .ok()?;
        Some(boot as f64 + self.started_ticks as f64 / ticks_per_second())
    }
}

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf(3) only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    ticks.max(1) as f64
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    pool: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolStateLabels {
    pool: &'static str,
    /// `in_use` or `idle`.
    state: &'static str,
}

/// The connections of the service database's pools, as sqlx counts them.
#[derive(Debug)]
pub(crate) struct PoolCollector(pub(crate) Database);

impl Collector for PoolCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let pools = self.0.pools();
        let mut connections = encoder.encode_descriptor(
            "db_pool_connections",
            "Connections open in a pool of the service's database, in use or idle (SQLite: \
             pool read, its readers, and write, its one writer; PostgreSQL: read_write)",
            None,
            MetricType::Gauge,
        )?;
        for pool in &pools {
            for (state, count) in [("in_use", pool.in_use), ("idle", pool.idle)] {
                let labels = PoolStateLabels {
                    pool: pool.pool,
                    state,
                };
                ConstGauge::new(i64::from(count)).encode(connections.encode_family(&labels)?)?;
            }
        }
        let mut max = encoder.encode_descriptor(
            "db_pool_max_connections",
            "Most connections a pool of the service's database opens",
            None,
            MetricType::Gauge,
        )?;
        for pool in &pools {
            let labels = PoolLabels { pool: pool.pool };
            ConstGauge::new(i64::from(pool.max)).encode(max.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::ProcessStat;

    #[test]
    fn a_stat_line_is_read_from_after_the_command_name_whatever_it_holds() {
        // A command name with a space and a parenthesis; utime 150, stime 50, starttime
        // 4000, rss 2500 pages.
        let line = "4242 (mall (x) up) S 1 4242 4242 0 -1 4194560 500 0 0 0 150 50 0 0 20 0 \
                    9 0 4000 123456789 2500 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 \
                    1 0 0 0 0 0";
        let stat = ProcessStat::parse(line).unwrap();
        assert_eq!(stat.cpu_ticks, 200);
        assert_eq!(stat.started_ticks, 4000);
        assert_eq!(stat.resident_pages, 2500);
        assert!(ProcessStat::parse("4242 (truncated").is_none());
    }

    #[test]
    fn this_process_has_memory_and_started_in_the_past() {
        let stat = ProcessStat::read().unwrap();
        assert!(stat.resident_bytes() > 1 << 20, "{}", stat.resident_bytes());
        let started = stat.start_time().unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(
            started <= now + 1.0 && started > now - 3_600.0,
            "{started} {now}"
        );
    }
}
