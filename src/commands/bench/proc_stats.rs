//! What a process of the bench's own (rocky serve, mosquitto) costs, read from `/proc`, and
//! the open-files limit a fleet of its own connections needs.

use anyhow::{Context, bail};

/// A process's peak resident set (VmHWM, bytes) and CPU seconds (user and system) so far; or,
/// from [`ProcessStats::since`], over a span of its life.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessStats {
    pub peak_rss: u64,
    pub cpu_s: f64,
}

impl ProcessStats {
    pub fn read(pid: u32) -> anyhow::Result<Self> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("cannot read /proc/{pid}/status (Linux only)"))?;
        let peak_kib = status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse::<u64>().ok())
            .context("no VmHWM in /proc status")?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .with_context(|| format!("cannot read /proc/{pid}/stat"))?;
        Ok(Self { peak_rss: peak_kib * 1024, cpu_s: cpu_seconds(&stat).context("an unreadable /proc stat")? })
    }

    /// The CPU spent between `before` and this reading; the peak as of this one.
    pub fn since(&self, before: &Self) -> Self {
        Self { peak_rss: self.peak_rss, cpu_s: (self.cpu_s - before.cpu_s).max(0.0) }
    }
}

/// A process's CPU seconds so far (user and system), if it can be read.
pub fn cpu_seconds_of(pid: u32) -> Option<f64> {
    cpu_seconds(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The CPU seconds (user and system) this process has used so far, to the microsecond
/// (`/proc` counts in clock ticks of 10 ms: too coarse for a short round).
pub fn own_cpu_seconds() -> f64 {
    // SAFETY: an all-zero rusage is a valid value of the plain C struct getrusage fills.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct it is given and nothing else.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return f64::NAN;
    }
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// The CPU seconds the calling thread has used so far (NaN, as [`own_cpu_seconds`], when the
/// clock cannot be read: a figure then says it is unknown instead of a made-up zero).
pub fn thread_cpu_seconds() -> f64 {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the struct it is given.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) } != 0 {
        return f64::NAN;
    }
    now.tv_sec as f64 + now.tv_nsec as f64 / 1e9
}

/// utime + stime of a `/proc/<pid>/stat` line, in seconds. The command name (field 2) may hold
/// spaces and parentheses, so fields are counted after its last `)`.
fn cpu_seconds(stat: &str) -> Option<f64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the name: state is field 3, so utime (14) and stime (15) are at 11 and 12 here.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks = if ticks > 0 { ticks as f64 } else { 100.0 };
    Some((utime + stime) as f64 / ticks)
}

/// Raises this process's open-files limit (which its children inherit) to at least `want`,
/// raising the hard limit too where it may (root); the limit it got.
pub fn raise_open_files(want: u64) -> anyhow::Result<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        bail!("cannot read the open-files limit: {}", std::io::Error::last_os_error());
    }
    if limit.rlim_cur >= want {
        return Ok(limit.rlim_cur);
    }
    let raised = libc::rlimit { rlim_cur: want, rlim_max: limit.rlim_max.max(want) };
    // SAFETY: setrlimit reads the struct it is given.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
        return Ok(want);
    }
    if limit.rlim_max >= want {
        let soft = libc::rlimit { rlim_cur: want, rlim_max: limit.rlim_max };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &soft) } == 0 {
            return Ok(want);
        }
    }
    bail!(
        "{want} open files are needed (one per connection in the broker and in the fleet, and some), and the limit \
         is {} (hard {}): raise it (ulimit -Hn, as root with CAP_SYS_RESOURCE), bench fewer devices, or put \
         several on a connection (--per-connection)",
        limit.rlim_cur,
        limit.rlim_max
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_read_past_a_name_with_spaces_and_parentheses() {
        let stat = "4242 (rocky (serve) x) S 1 4242 4242 0 -1 4194560 5 0 0 0 250 150 0 0 20 0 9 0 100 1 1";
        // SAFETY: sysconf only reads a system constant.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        assert_eq!(cpu_seconds(stat), Some(400.0 / ticks));
        assert_eq!(cpu_seconds("garbage"), None);
    }

    #[test]
    fn this_process_reads_and_its_limit_is_kept_when_it_is_enough() {
        let stats = ProcessStats::read(std::process::id()).unwrap();
        assert!(stats.peak_rss > 0);
        assert!(raise_open_files(16).unwrap() >= 16);
        assert!(cpu_seconds_of(std::process::id()).is_some());
        assert!(own_cpu_seconds() > 0.0);
        assert_eq!(cpu_seconds_of(u32::MAX), None, "no such process");
    }

    #[test]
    fn a_thread_counts_its_own_work_only() {
        let busy = std::thread::spawn(|| {
            let before = thread_cpu_seconds();
            let mut x = 0u64;
            while thread_cpu_seconds() - before < 0.05 {
                x = std::hint::black_box(x.wrapping_add(1));
            }
            thread_cpu_seconds() - before
        });
        let idle_before = thread_cpu_seconds();
        let spent = busy.join().unwrap();
        assert!(spent >= 0.05);
        assert!(
            thread_cpu_seconds() - idle_before < spent,
            "the waiting thread did not get the busy one's time"
        );
    }
}
