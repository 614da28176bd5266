//! Who started an operation that leaves something behind if it dies: every write and delete
//! gets an owner tag, `<host id>-<n>`, that names this host process and the operation. Drivers
//! put it in the names of their temp objects (`write-options.owner`) and the host in its
//! write-ahead records, so any later host can tell a live operation's leftovers from those of
//! one that is gone:
//!
//! - another process's on this machine: gone when that process is (its id holds the machine
//!   and PID namespace, the boot, the pid and the start time, checked against `/proc`), or
//!   when it ran before the last boot;
//! - another machine's or another container's: not known (judged by age);
//! - this process's own: gone when the operation is no longer in [`Owners`]'s live set (it
//!   was dropped mid-call, say).
//!
//! A tag that does not parse (an older version's, or a driver that keeps none) is judged by
//! age instead.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// This host process: `<place><boot>-<pid>-<start>`, where `place` is 8 hex digits naming the
/// machine (its host name) and the process's PID namespace (where a pid means one process),
/// `boot` 8 hex digits of the kernel's boot id, and `start` the process's start time in clock
/// ticks since boot.
///
/// Another container on the same kernel (the same boot, perhaps the same host name) has a PID
/// namespace of its own, whose processes this one cannot see in `/proc`: its place differs, so
/// its processes are never judged gone by a look that could not find them. The same place on
/// another boot is this machine before it restarted: every process of it is gone. (Machines
/// that share a disk need distinct host names, as their ledger records do.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostId {
    place: String,
    boot: String,
    pid: u32,
    start: u64,
}

/// What neither the place nor the boot is when it cannot be read.
const UNKNOWN: &str = "00000000";

/// This process's (place, boot).
fn here() -> &'static (String, String) {
    static HERE: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();
    HERE.get_or_init(|| {
        let read = |f: &str| std::fs::read_to_string(f).map(|s| s.trim().to_string()).unwrap_or_default();
        let pid_ns = std::fs::read_link("/proc/self/ns/pid").map(|p| p.display().to_string()).unwrap_or_default();
        (place_of(&read("/proc/sys/kernel/hostname"), &pid_ns), digest8(&read("/proc/sys/kernel/random/boot_id")))
    })
}

/// 8 hex digits of a host name and PID namespace (`pid:[INODE]`); [`UNKNOWN`] if either is.
fn place_of(machine: &str, pid_ns: &str) -> String {
    if machine.is_empty() || pid_ns.is_empty() { UNKNOWN.into() } else { digest8(&format!("{machine}\n{pid_ns}")) }
}

/// 8 hex digits of `text`'s sha256; [`UNKNOWN`] for nothing.
fn digest8(text: &str) -> String {
    use sha2::Digest as _;
    if text.is_empty() { UNKNOWN.into() } else { hex::encode(&sha2::Sha256::digest(text.as_bytes())[..4]) }
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
        let (place, boot) = here().clone();
        HostId { place, boot, pid, start: start_time(pid).unwrap_or(0) }
    }

    /// Parses `<place><boot>-<pid>-<start>`.
    pub fn parse(s: &str) -> Option<HostId> {
        let mut parts = s.split('-');
        let (ids, pid, start) = (parts.next()?, parts.next()?.parse().ok()?, parts.next()?.parse().ok()?);
        let hex = ids.len() == 16 && ids.bytes().all(|b| b.is_ascii_hexdigit());
        (hex && parts.next().is_none()).then(|| HostId {
            place: ids[..8].to_string(),
            boot: ids[8..].to_string(),
            pid,
            start,
        })
    }

    /// Whether the process ran where this one runs (the same machine and PID namespace),
    /// whatever the boot: its pid can be looked at here, on this boot.
    pub fn of_this_place(&self) -> bool {
        let (place, boot) = here();
        self.place == *place && *place != UNKNOWN && *boot != UNKNOWN
    }

    /// Whether the process ran where this one runs, since the last boot (another machine's,
    /// another container's or an earlier boot's cannot be looked at here).
    pub fn on_this_boot(&self) -> bool {
        self.of_this_place() && self.boot == here().1
    }

    /// Whether this host process still runs. A process of an earlier boot never does.
    pub fn is_alive(&self) -> bool {
        self.on_this_boot() && start_time(self.pid) == Some(self.start)
    }
}

impl std::fmt::Display for HostId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}-{}-{}", self.place, self.boot, self.pid, self.start)
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
        if !host.of_this_place() {
            // Another machine's (a disk shared over NFS) or another container's: its process
            // cannot be looked at from here.
            return Liveness::Unknown;
        }
        // Here, on this boot or an earlier one (whose processes are all gone).
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
        let elsewhere = Owners::new(HostId { place: UNKNOWN.into(), boot: UNKNOWN.into(), pid: 1, start: 1 });
        assert_eq!(elsewhere.liveness(&text), Liveness::Live, "this process is alive");
        let dead = HostId { start: 1, ..HostId::current() };
        assert_eq!(elsewhere.liveness(&format!("{dead}-0")), Liveness::Gone, "same pid, another start time");
        assert_eq!(owners.liveness("none"), Liveness::Unknown);
        assert_eq!(owners.liveness("abc-1"), Liveness::Unknown);
    }

    #[test]
    fn a_process_of_another_machine_or_pid_namespace_is_never_judged_by_this_ones_proc() {
        let (place, boot) = here().clone();
        let me = HostId::current();
        assert!(me.is_alive() && me.on_this_boot() && me.of_this_place());
        assert_eq!(HostId::parse(&me.to_string()), Some(me.clone()));
        assert_eq!(
            place,
            place_of(
                std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim(),
                &std::fs::read_link("/proc/self/ns/pid").unwrap().display().to_string()
            )
        );
        assert_ne!(place_of("svc-1", "pid:[4026531836]"), place_of("svc-1", "pid:[4026532512]"), "another container");
        assert_ne!(place_of("svc-1", "pid:[4026531836]"), place_of("svc-2", "pid:[4026531836]"), "another machine");
        assert_eq!(place_of("", "pid:[1]"), UNKNOWN);
        let observer = Owners::default();
        // Its pid names a live process here (this one): still, another place cannot be looked
        // at, so it is not gone.
        let start = start_time(std::process::id()).unwrap_or(0) + 1;
        let elsewhere =
            HostId { place: place_of("elsewhere", "pid:[1]"), boot: boot.clone(), pid: std::process::id(), start };
        assert!(!elsewhere.of_this_place() && !elsewhere.is_alive());
        assert_eq!(observer.liveness(&format!("{elsewhere}-0")), Liveness::Unknown);
        // The same place on an earlier boot: this machine before it restarted, all gone.
        let earlier = HostId { place: place.clone(), boot: digest8("an earlier boot"), pid: 1, start: 1 };
        assert!(earlier.of_this_place() && !earlier.on_this_boot());
        assert_eq!(observer.liveness(&format!("{earlier}-0")), Liveness::Gone);
        // An id in the format before the place was added says nothing.
        assert_eq!(observer.liveness(&format!("{boot}-1-1-0")), Liveness::Unknown);
    }
}
