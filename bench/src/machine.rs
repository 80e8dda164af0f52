//! Facts about where a benchmark ran: the machine (from `/proc`), the versions of Gatehouse,
//! nats-server and Postgres, and CPU accounting per component while a phase runs
//! ([`CpuSample`]: this process, every `postgres` process, every `nats-server` process, and the
//! whole machine), which tells whether a figure is bound by the two cores and by whom.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use serde::Serialize;

/// Kernel clock ticks per second of `/proc` CPU times (`USER_HZ`, 100 on every Linux ABI).
const TICKS_PER_SECOND: f64 = 100.0;

/// The machine a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpu_model: String,
    /// Logical CPUs.
    pub cpus: usize,
    pub memory_mib: u64,
    pub kernel: String,
    pub os: String,
}

/// Reads the machine's facts from `/proc` and `/etc/os-release` (`unknown` where unreadable).
pub fn machine() -> Machine {
    let cpuinfo = read("/proc/cpuinfo");
    let field = |line: &str| line.split_once(':').map(|(_, v)| v.trim().to_owned());
    let cpu_model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(field)
        .unwrap_or_else(|| "unknown".into());
    let cpus = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count()
        .max(std::thread::available_parallelism().map_or(0, usize::from));
    let memory_mib = read("/proc/meminfo")
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |kib| kib / 1024);
    let os = read("/etc/os-release")
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map_or_else(|| "unknown".into(), |v| v.trim_matches('"').to_owned());
    Machine {
        cpu_model,
        cpus,
        memory_mib,
        kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
        os,
    }
}

/// The versions of what was measured.
#[derive(Debug, Clone, Serialize)]
pub struct Versions {
    pub gatehouse: &'static str,
    pub nats_server: String,
    pub postgres: String,
    /// Postgres settings that bound commit rates.
    pub postgres_settings: BTreeMap<String, String>,
}

/// Asks nats-server (from the connection's INFO) and Postgres for their versions.
pub async fn versions(
    nats: &async_nats::Client,
    db: &tokio_postgres::Client,
) -> anyhow::Result<Versions> {
    let postgres: String = db.query_one("SELECT version()", &[]).await?.get(0);
    let rows = db
        .query(
            "SELECT name, current_setting(name) FROM pg_settings WHERE name = ANY($1)",
            &[&vec![
                "shared_buffers",
                "synchronous_commit",
                "fsync",
                "wal_sync_method",
                "max_connections",
                "commit_delay",
            ]],
        )
        .await?;
    Ok(Versions {
        gatehouse: env!("CARGO_PKG_VERSION"),
        nats_server: nats.server_info().version,
        postgres,
        postgres_settings: rows.iter().map(|r| (r.get(0), r.get(1))).collect(),
    })
}

/// CPU time used so far, per component and machine-wide.
#[derive(Debug, Clone)]
pub struct CpuSample {
    at: Instant,
    machine_busy: u64,
    /// Time the hypervisor gave this machine's CPUs to others (part of `machine_busy`).
    steal: u64,
    /// (component, pid) → ticks.
    processes: HashMap<(Component, u32), u64>,
}

/// Who used the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Component {
    /// This process: the bench's clients and every in-process role.
    Gatehouse,
    /// Processes this one started (worker processes).
    Children,
    Postgres,
    Nats,
}

/// CPU used between two samples, in cores (1.0 = one core busy the whole time).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct CpuUse {
    /// Cores busy, stolen time included.
    pub machine: f64,
    /// Cores the hypervisor gave to other guests while this machine wanted them.
    pub steal: f64,
    pub gatehouse: f64,
    pub postgres: f64,
    pub nats: f64,
    /// Processes this one started (worker processes).
    pub children: f64,
    pub seconds: f64,
}

impl CpuUse {
    /// Cores busy outside this process, its children, Postgres and nats-server, stolen time
    /// apart: other work on the machine, which makes the figures noisy.
    pub fn others(&self) -> f64 {
        let ours = self.gatehouse + self.postgres + self.nats + self.children;
        (self.machine - self.steal - ours).max(0.0)
    }

    /// CPU microseconds per operation of each component, given `ops` operations.
    pub fn per_op_us(&self, ops: u64) -> [f64; 3] {
        let per = |cores: f64| cores * self.seconds * 1e6 / (ops.max(1) as f64);
        [per(self.gatehouse), per(self.postgres), per(self.nats)]
    }

    /// CPU microseconds per operation of the child processes, given `ops` operations.
    pub fn children_per_op_us(&self, ops: u64) -> f64 {
        self.children * self.seconds * 1e6 / (ops.max(1) as f64)
    }
}

impl CpuSample {
    /// Reads `/proc` now (best effort: unreadable processes are left out).
    pub fn take() -> CpuSample {
        let me = std::process::id();
        let mut processes = HashMap::new();
        if let Ok(dir) = std::fs::read_dir("/proc") {
            for entry in dir.flatten() {
                let Some(pid) = entry
                    .file_name()
                    .to_str()
                    .and_then(|s| s.parse::<u32>().ok())
                else {
                    continue;
                };
                let Some((comm, parent, ticks)) = process_ticks(pid) else {
                    continue;
                };
                let component = match comm.as_str() {
                    _ if pid == me => Component::Gatehouse,
                    _ if parent == me => Component::Children,
                    "postgres" => Component::Postgres,
                    "nats-server" => Component::Nats,
                    _ => continue,
                };
                processes.insert((component, pid), ticks);
            }
        }
        let (machine_busy, steal) = machine_ticks();
        CpuSample {
            at: Instant::now(),
            machine_busy,
            steal,
            processes,
        }
    }

    /// What was used since `earlier` (processes that ended in between are not counted).
    pub fn since(&self, earlier: &CpuSample) -> CpuUse {
        let seconds = self.at.duration_since(earlier.at).as_secs_f64().max(1e-9);
        let cores = |ticks: u64| ticks as f64 / TICKS_PER_SECOND / seconds;
        let of = |component: Component| {
            let ticks = self
                .processes
                .iter()
                .filter(|((c, _), _)| *c == component)
                .map(|(key, now)| now.saturating_sub(*earlier.processes.get(key).unwrap_or(&0)))
                .sum();
            cores(ticks)
        };
        CpuUse {
            machine: cores(self.machine_busy.saturating_sub(earlier.machine_busy)),
            steal: cores(self.steal.saturating_sub(earlier.steal)),
            gatehouse: of(Component::Gatehouse),
            postgres: of(Component::Postgres),
            nats: of(Component::Nats),
            children: of(Component::Children),
            seconds,
        }
    }
}

/// `(comm, parent pid, utime + stime)` of a process from `/proc/<pid>/stat`.
fn process_ticks(pid: u32) -> Option<(String, u32, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (head, rest) = stat.rsplit_once(") ")?;
    let comm = head.split_once(" (")?.1.to_owned();
    // After the comm: state is field 3, ppid 4, utime 14 and stime 15 (1-based over the whole
    // line).
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let parent: u32 = fields.get(1)?.parse().ok()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((comm, parent, utime + stime))
}

/// Busy ticks of all CPUs together (everything but idle and iowait) from `/proc/stat`.
/// The machine's busy ticks (stolen ones included) and its stolen ticks, from `/proc/stat`.
fn machine_ticks() -> (u64, u64) {
    let stat = read("/proc/stat");
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return (0, 0);
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let at = |i: usize| v.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal (guest time is included in user).
    let total: u64 = v.iter().take(8).sum();
    (total.saturating_sub(at(3) + at(4)), at(7))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_machine_has_a_cpu_and_memory() {
        let m = machine();
        assert!(m.cpus >= 1);
        assert!(m.memory_mib > 0);
    }

    #[test]
    fn this_process_is_counted_as_gatehouse() {
        let before = CpuSample::take();
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        std::hint::black_box(x);
        let used = CpuSample::take().since(&before);
        assert!(used.gatehouse >= 0.0 && used.seconds > 0.0);
    }

    #[test]
    fn other_work_is_what_is_busy_beyond_ours_and_the_stolen_time() {
        let used = CpuUse {
            machine: 2.0,
            steal: 0.5,
            gatehouse: 0.25,
            postgres: 0.5,
            nats: 0.125,
            children: 0.125,
            seconds: 1.0,
        };
        assert_eq!(used.others(), 0.5);
        let idle_but_stolen = CpuUse {
            machine: 0.5,
            ..used
        };
        assert_eq!(idle_but_stolen.others(), 0.0);
    }
}
