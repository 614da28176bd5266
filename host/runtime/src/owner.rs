//! Who started an operation that leaves something behind if it dies: every write and delete
//! gets an owner tag, `<host id>-<n>`, that names this host process and the operation. Drivers
//! put it in the names of their temp objects (`write-options.owner`) and the host in its
//! write-ahead records, so any later host can tell a live operation's leftovers from those of
//! one that is gone:
//!
//! - another process's on this machine: gone when that process is (its id holds the boot and
//!   PID namespace, the pid and the start time, checked against `/proc`);
//! - another machine's, another container's or an earlier boot's: not known (judged by age);
//! - this process's own: gone when the operation is no longer in [`Owners`]'s live set (it
//!   was dropped mid-call, say).
//!
//! A tag that does not parse (an older version's, or a driver that keeps none) is judged by
//! age instead.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// This host process: `<boot>-<pid>-<start>`, where `boot` is 8 hex digits naming the
/// kernel's boot and the process's PID namespace (where a pid means one process, see
/// [`boot_id`]) and `start` the process's start time in clock ticks since boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostId {
    boot: String,
    pid: u32,
    start: u64,
}

/// Where this process's pids mean one process each: the kernel's boot and this process's PID
/// namespace. Another container on the same kernel (the same boot id, perhaps the same host
/// name) has a namespace of its own, whose processes this one cannot see in `/proc`: their
/// ids differ here, so they are never judged gone by a look that could not find them.
fn boot_id() -> String {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
        let pid_ns = std::fs::read_link("/proc/self/ns/pid").map(|p| p.display().to_string()).unwrap_or_default();
        process_space(boot.trim(), &pid_ns)
    })
    .clone()
}

/// 8 hex digits of the boot id and PID namespace (`pid:[INODE]`); `00000000` if the boot is
/// unknown.
fn process_space(boot: &str, pid_ns: &str) -> String {
    use sha2::Digest as _;
    if boot.is_empty() {
        return "00000000".into();
    }
    hex::encode(&sha2::Sha256::digest(format!("{boot}\n{pid_ns}").as_bytes())[..4])
}

/// Field 22 of `/proc/PID/stat`: the start time (after the command, which may hold spaces).
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 2..];
    after_comm.split_whitespace().nth(19)?.parse().ok()
}

impl HostId {
    /// This process.
    pub fn current() -> HostId {
        let pid = std::process::id();
        HostId { boot: boot_id(), pid, start: start_time(pid).unwrap_or(0) }
    }

    /// Parses `<boot>-<pid>-<start>`.
    pub fn parse(s: &str) -> Option<HostId> {
        let mut parts = s.split('-');
        let (boot, pid, start) = (parts.next()?, parts.next()?.parse().ok()?, parts.next()?.parse().ok()?);
        (boot.len() == 8 && boot.bytes().all(|b| b.is_ascii_hexdigit()) && parts.next().is_none()).then(|| HostId {
            boot: boot.to_string(),
            pid,
            start,
        })
    }

    /// Whether the process ran on this machine since its last boot (another machine's, or an
    /// earlier boot's, cannot be looked at here).
    pub fn on_this_boot(&self) -> bool {
        self.boot == boot_id()
    }

    /// Whether this host process still runs. A process of an earlier boot never does.
    pub fn is_alive(&self) -> bool {
        self.boot == boot_id() && start_time(self.pid) == Some(self.start)
    }
}

impl std::fmt::Display for HostId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}-{}", self.boot, self.pid, self.start)
    }
}

/// What an owner tag tells about its operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// Still running (here or in another live process): leave its leftovers alone.
    Live,
    /// Gone: its leftovers are orphans.
    Gone,
    /// The tag names no operation we can judge (another format, or none).
    Unknown,
}

/// This process's owner tags: the host id and the operations in flight.
#[derive(Debug, Clone)]
pub struct Owners {
    host: Arc<HostId>,
    host_text: Arc<str>,
    next: Arc<AtomicU64>,
    live: Arc<Mutex<HashSet<u64>>>,
}

/// A live operation's tag; dropping it ends the operation.
#[derive(Debug)]
pub struct OwnerTag {
    tag: String,
    n: u64,
    live: Arc<Mutex<HashSet<u64>>>,
}

impl OwnerTag {
    /// A tag this process did not make and does not track: an upload session's, which outlives
    /// any one host process (`tag` is `a-z`, `0-9` and `-`, at most 64 characters; else none).
    pub fn external(tag: &str) -> Option<OwnerTag> {
        let plain = !tag.is_empty()
            && tag.len() <= 64
            && tag.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        plain.then(|| OwnerTag { tag: tag.to_string(), n: u64::MAX, live: Arc::default() })
    }

    /// The tag text.
    pub fn as_str(&self) -> &str {
        &self.tag
    }
}

impl Drop for OwnerTag {
    fn drop(&mut self) {
        if let Ok(mut live) = self.live.lock() {
            live.remove(&self.n);
        }
    }
}

impl Default for Owners {
    fn default() -> Self {
        Owners::new(HostId::current())
    }
}

/// This process's owner tags (one host id per process).
pub fn owners() -> &'static Owners {
    static OWNERS: std::sync::OnceLock<Owners> = std::sync::OnceLock::new();
    OWNERS.get_or_init(Owners::default)
}

impl Owners {
    /// The tags of host process `host`.
    pub fn new(host: HostId) -> Owners {
        let host_text: Arc<str> = host.to_string().into();
        Owners { host: Arc::new(host), host_text, next: Arc::default(), live: Arc::default() }
    }

    /// A tag for a new operation, live until dropped.
    pub fn begin(&self) -> OwnerTag {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut live) = self.live.lock() {
            live.insert(n);
        }
        OwnerTag { tag: format!("{}-{n}", self.host_text), n, live: self.live.clone() }
    }

    /// Whether the operation `tag` names is still running.
    pub fn liveness(&self, tag: &str) -> Liveness {
        let Some((host, n)) = tag.rsplit_once('-') else { return Liveness::Unknown };
        let (Some(host), Ok(n)) = (HostId::parse(host), n.parse::<u64>()) else { return Liveness::Unknown };
        if host == *self.host {
            let live = self.live.lock().map(|l| l.contains(&n)).unwrap_or(true);
            return if live { Liveness::Live } else { Liveness::Gone };
        }
        if !host.on_this_boot() {
            // Another machine's (a disk shared over NFS), another container's, or an earlier
            // boot's: its process cannot be looked at from here.
            return Liveness::Unknown;
        }
        if host.is_alive() { Liveness::Live } else { Liveness::Gone }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_tags_are_live_until_dropped_and_a_dead_process_is_gone() {
        let owners = Owners::default();
        let tag = owners.begin();
        let text = tag.as_str().to_string();
        assert!(text.bytes().all(|b| b.is_ascii_hexdigit() || b.is_ascii_digit() || b == b'-'), "{text}");
        assert_eq!(owners.liveness(&text), Liveness::Live);
        drop(tag);
        assert_eq!(owners.liveness(&text), Liveness::Gone);
        // Seen from another process: this one is alive; one with another start time is not.
        let elsewhere = Owners::new(HostId { boot: "00000000".into(), pid: 1, start: 1 });
        assert_eq!(elsewhere.liveness(&text), Liveness::Live, "this process is alive");
        let dead = HostId { boot: boot_id(), pid: std::process::id(), start: 1 };
        assert_eq!(elsewhere.liveness(&format!("{dead}-0")), Liveness::Gone, "same pid, another start time");
        assert_eq!(owners.liveness("none"), Liveness::Unknown);
        assert_eq!(owners.liveness("abc-1"), Liveness::Unknown);
    }

    #[test]
    fn a_process_of_another_pid_namespace_is_never_judged_by_this_ones_proc() {
        let boot = "3f1d2c9a-0b7e-4c55-9a1e-5d2f7e8b9c01";
        let here = process_space(boot, "pid:[4026531836]");
        assert_eq!(here.len(), 8);
        assert_eq!(here, process_space(boot, "pid:[4026531836]"));
        assert_ne!(here, process_space(boot, "pid:[4026532512]"), "another container on this kernel");
        assert_ne!(here, process_space("another-boot", "pid:[4026531836]"));
        assert_eq!(process_space("", "pid:[1]"), "00000000");
        // A process of another namespace, with a pid that here names a live process (this
        // one), is not on this "boot": its liveness cannot be seen, so it is not gone.
        let other_ns = HostId {
            boot: process_space(boot, "pid:[1]"),
            pid: std::process::id(),
            start: start_time(std::process::id()).unwrap_or(0) + 1,
        };
        assert!(!other_ns.on_this_boot() && !other_ns.is_alive());
        assert_eq!(Owners::default().liveness(&format!("{other_ns}-0")), Liveness::Unknown);
        assert!(HostId::current().is_alive() && HostId::current().on_this_boot());
    }
}
