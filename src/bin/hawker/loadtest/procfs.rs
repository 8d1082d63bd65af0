//! The server process as `/proc` sees it: find it by its listening port, sample its CPU time
//! (utime+stime) and resident memory, and the CPU time of its shard threads.

use std::fs;
use std::path::Path;

/// One sample of a process.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    /// utime + stime of the whole process (every thread, dead ones included), seconds.
    pub cpu_s: f64,
    /// Resident set size, KiB.
    pub rss_kib: u64,
    /// Summed run time of the threads named `hawker-shard-*` (from `schedstat`, ns precision),
    /// seconds.
    pub shard_cpu_s: f64,
    /// Summed time the shard threads spent runnable but waiting for a CPU (`schedstat`
    /// field 2), seconds: high when other processes compete for the cores.
    pub shard_wait_s: f64,
    /// Number of shard threads seen.
    pub shard_threads: usize,
    /// Bytes queued in the receive buffers of the process's UDP sockets (/proc/net/udp
    /// `rx_queue`): a backlog the shards have not read yet.
    pub udp_rx_queue: u64,
    /// File descriptors the process holds open (`/proc/<pid>/fd`).
    pub open_fds: u64,
}

fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// utime + stime of a `stat` file, in seconds.
fn stat_cpu(path: &Path) -> Option<f64> {
    let s = fs::read_to_string(path).ok()?;
    // Fields after the command name (which may contain spaces) start at field 3.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / clk_tck())
}

fn comm_of(path: &Path) -> Option<String> {
    let s = fs::read_to_string(path.join("stat")).ok()?;
    let a = s.find('(')?;
    let b = s.rfind(')')?;
    Some(s[a + 1..b].to_string())
}

/// Sample process `pid`.
pub fn sample(pid: u32) -> Option<Sample> {
    let base = Path::new("/proc").join(pid.to_string());
    let cpu_s = stat_cpu(&base.join("stat"))?;
    let status = fs::read_to_string(base.join("status")).ok()?;
    let rss_kib = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut shard_ns: u64 = 0;
    let mut wait_ns: u64 = 0;
    let mut shard_threads = 0;
    let mut shard_ticks_s = 0.0;
    if let Ok(rd) = fs::read_dir(base.join("task")) {
        for e in rd.flatten() {
            let p = e.path();
            if !comm_of(&p).is_some_and(|c| c.starts_with("hawker-shard")) {
                continue;
            }
            shard_threads += 1;
            let sched: Vec<u64> = fs::read_to_string(p.join("schedstat"))
                .ok()
                .map(|s| {
                    s.split_whitespace()
                        .filter_map(|v| v.parse().ok())
                        .collect()
                })
                .unwrap_or_default();
            match sched.first() {
                Some(ns) => {
                    shard_ns += ns;
                    wait_ns += sched.get(1).copied().unwrap_or(0);
                }
                None => shard_ticks_s += stat_cpu(&p.join("stat")).unwrap_or(0.0),
            }
        }
    }
    Some(Sample {
        cpu_s,
        rss_kib,
        shard_cpu_s: shard_ns as f64 / 1e9 + shard_ticks_s,
        shard_wait_s: wait_ns as f64 / 1e9,
        shard_threads,
        udp_rx_queue: udp_backlog(&base),
        open_fds: fs::read_dir(base.join("fd")).map_or(0, |d| d.count() as u64),
    })
}

/// Sum of `rx_queue` over the UDP sockets a process holds open.
fn udp_backlog(proc_dir: &Path) -> u64 {
    let mut mine = std::collections::HashSet::new();
    if let Ok(fds) = fs::read_dir(proc_dir.join("fd")) {
        for fd in fds.flatten() {
            if let Ok(l) = fs::read_link(fd.path()) {
                let l = l.to_string_lossy();
                if let Some(i) = l.strip_prefix("socket:[").and_then(|r| r.strip_suffix(']')) {
                    if let Ok(i) = i.parse::<u64>() {
                        mine.insert(i);
                    }
                }
            }
        }
    }
    let mut total = 0;
    for table in ["udp", "udp6"] {
        let Ok(s) = fs::read_to_string(Path::new("/proc/net").join(table)) else {
            continue;
        };
        for l in s.lines().skip(1) {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (Some(q), Some(inode)) = (f.get(4), f.get(9)) else {
                continue;
            };
            if inode.parse::<u64>().is_ok_and(|i| mine.contains(&i)) {
                // tx_queue:rx_queue in hex.
                if let Some(rx) = q.split(':').nth(1) {
                    total += u64::from_str_radix(rx, 16).unwrap_or(0);
                }
            }
        }
    }
    total
}

/// CPU time of this process, seconds.
pub fn own_cpu() -> f64 {
    stat_cpu(Path::new("/proc/self/stat")).unwrap_or(0.0)
}

/// CPU time of the calling thread, seconds (`CLOCK_THREAD_CPUTIME_ID`, ns precision).
pub fn thread_cpu() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// Socket inodes bound to local `port` in a `/proc/net/{tcp,udp}[6]` table; `listen_only`
/// keeps TCP sockets in state LISTEN.
fn inodes(table: &str, port: u16, listen_only: bool) -> Vec<u64> {
    let Ok(s) = fs::read_to_string(Path::new("/proc/net").join(table)) else {
        return Vec::new();
    };
    s.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let local = f.get(1)?;
            let p = u16::from_str_radix(local.rsplit(':').next()?, 16).ok()?;
            if p != port || (listen_only && *f.get(3)? != "0A") {
                return None;
            }
            f.get(9)?.parse().ok()
        })
        .filter(|&i| i != 0)
        .collect()
}

fn pid_owning(inodes: &[u64]) -> Option<u32> {
    if inodes.is_empty() {
        return None;
    }
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    for e in fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(fds) = fs::read_dir(e.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(l) = fs::read_link(fd.path()) {
                let l = l.to_string_lossy();
                if wanted.iter().any(|w| *w == l) {
                    return Some(pid);
                }
            }
        }
    }
    None
}

/// The process listening on TCP `port` (the HTTP listener).
pub fn pid_by_tcp_port(port: u16) -> Option<u32> {
    let mut v = inodes("tcp", port, true);
    v.extend(inodes("tcp6", port, true));
    pid_owning(&v)
}

/// The process bound to UDP `port` (a shard socket).
pub fn pid_by_udp_port(port: u16) -> Option<u32> {
    let mut v = inodes("udp", port, false);
    v.extend(inodes("udp6", port, false));
    pid_owning(&v)
}

/// `nproc` and the CPU model.
pub fn machine() -> (usize, String) {
    let n = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let model = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    (n, model)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_itself_by_port() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert_eq!(pid_by_tcp_port(port), Some(std::process::id()));
        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = u.local_addr().unwrap().port();
        assert_eq!(pid_by_udp_port(port), Some(std::process::id()));
        let s = sample(std::process::id()).unwrap();
        assert!(s.rss_kib > 0);
        assert!(thread_cpu() >= 0.0);
    }
}
