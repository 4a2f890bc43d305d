//! CPU time and memory of a process, from `/proc/PID/stat` and `/proc/PID/status`.

use std::sync::OnceLock;
use std::time::Duration;

/// One reading.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sample {
    /// User plus system time of all the process's threads.
    pub(crate) cpu: Duration,
    /// Resident set now.
    pub(crate) rss_kib: u64,
    /// Peak resident set (VmHWM).
    pub(crate) hwm_kib: u64,
}

/// Clock ticks per second of `/proc/PID/stat` (`getconf CLK_TCK`; 100 on Linux x86).
fn ticks_per_sec() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|&t| t > 0)
            .unwrap_or(100)
    })
}

/// Reads `pid`'s counters; `None` if it is gone or unreadable.
pub(crate) fn sample(pid: u32) -> Option<Sample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, utime 14, stime 15 (proc(5)).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let ticks = utime + stime;
    let tps = ticks_per_sec();
    let cpu = Duration::from_secs(ticks / tps)
        + Duration::from_nanos((ticks % tps) * 1_000_000_000 / tps);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    };
    Some(Sample {
        cpu,
        rss_kib: kib("VmRSS:")?,
        hwm_kib: kib("VmHWM:")?,
    })
}
