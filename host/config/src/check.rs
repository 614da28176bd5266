//! The config's checks: every semantic problem, located, in one pass (names, plugins, limits,
//! grants, the ledger, the web role, trust), together with building the plan (`plan.rs`), which
//! reports what does not resolve. `LoadedConfig::parse` runs them; the server adds its own
//! through a [`crate::Report`].

use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;

use crate::deployment::{Role, StorageClass};
use crate::plan::Plan;
use crate::{ConfigSource, LoadedConfig, Problem, model, position};

impl LoadedConfig {
    /// Checks the config and builds its plan in one pass: every problem, located. The plan is
    /// complete only when there are none.
    pub(super) fn check(&self, text: &str) -> (Vec<Problem>, Plan) {
        let mut problems = Vec::new();
        let mut problem = |span: Range<usize>, message: String| {
            problems.push(Problem { at: Some(position(text, span.start)), message });
        };
        let plan = crate::plan::build(&self.config, &self.base_dir, &mut problem);
        let names: Vec<&str> = self.config.disks.keys().map(|k| k.get_ref().as_str()).collect();
        for (name, disk) in &self.config.disks {
            let n = name.get_ref();
            if StorageClass::parse(n).is_some() {
                problem(
                    name.span(),
                    format!(
                        "disk name `{n}` is also a storage class name; addresses like `{n}:path` would be ambiguous: rename the disk"
                    ),
                );
            } else if n.is_empty()
                || !n.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
            {
                problem(name.span(), format!("disk name `{n}` may only use a-z, 0-9, `-` and `_`"));
            }
            let l = &disk.limits;
            check_ranges(
                &format!("disks.{n}.limits"),
                &[
                    ("memory_mib", &l.memory_mib, 1, 4096),
                    ("call_timeout_ms", &l.call_timeout_ms, 10, 3_600_000),
                    ("max_instances", &l.max_instances, 1, 1024),
                    ("max_instances_per_key", &l.max_instances_per_key, 1, 1024),
                    ("wait_ms", &l.wait_ms, 1, 3_600_000),
                ],
                &mut problem,
            );
            if let Some(q) = &disk.quota_gib
                && !(q.get_ref().is_finite() && *q.get_ref() > 0.0 && *q.get_ref() < 1e9)
            {
                problem(q.span(), format!("disks.{n}.quota_gib = {} must be a positive number of GiB", q.get_ref()));
            }
            if let Some(m) = &disk.max_object_mib
                && *m.get_ref() == 0
            {
                problem(m.span(), format!("disks.{n}.max_object_mib must be at least 1"));
            }
        }
        self.check_grants_disjoint(&mut problem);
        self.check_grants_hold_nothing_of_the_host(&plan, &mut problem);
        self.check_ledger(&names, &mut problem);
        self.check_server(&mut problem);
        self.check_web_role(&mut problem);
        self.check_fallbacks(&mut problem);
        self.check_mirrors(&mut problem);
        self.check_trust(&mut problem);
        let map = self.config.storage.get_ref();
        for (class, value) in [
            ("default", Some(&map.default)),
            ("scratch", map.scratch.as_ref()),
            ("submission", map.submission.as_ref()),
        ] {
            if let Some(disk) = value
                && !names.contains(&disk.get_ref().as_str())
            {
                problem(
                    disk.span(),
                    format!(
                        "storage.{class} = \"{}\": no disk of that name; defined disks: {}",
                        disk.get_ref(),
                        if names.is_empty() { "none (add a [disks.NAME] table)".to_string() } else { names.join(", ") }
                    ),
                );
            }
        }
        (problems, plan)
    }
}

impl LoadedConfig {
    fn check_server(&self, problem: &mut impl FnMut(Range<usize>, String)) {
        let t = &self.config.server.timeouts;
        let l = &self.config.server.limits;
        let fields = [
            ("timeouts.tls_handshake_secs", &t.tls_handshake_secs, 1, 3600),
            ("timeouts.header_secs", &t.header_secs, 1, 3600),
            ("timeouts.body_idle_secs", &t.body_idle_secs, 1, 86_400),
            ("timeouts.send_stall_secs", &t.send_stall_secs, 1, 86_400),
            ("limits.max_connections", &l.max_connections, 1, 1_000_000),
            ("limits.max_header_kib", &l.max_header_kib, 8, 1024),
            ("limits.max_requests_per_key", &l.max_requests_per_key, 1, 1_000_000),
            ("limits.max_uploads_per_key", &l.max_uploads_per_key, 1, 100_000),
            ("limits.max_uploads", &l.max_uploads, 1, 100_000),
            ("limits.readiness_interval_secs", &l.readiness_interval_secs, 1, 3600),
            ("limits.worker_threads", &l.worker_threads, 1, 1024),
        ];
        check_ranges("server", &fields, problem);
    }

    fn check_ledger(&self, disks: &[&str], problem: &mut impl FnMut(Range<usize>, String)) {
        let ledger = &self.config.ledger;
        if let Some(on) = &ledger.on_failure
            && *on.get_ref() == model::OnFailure::Log
            && *self.config.role.get_ref() != Role::Testing
        {
            problem(
                on.span(),
                format!(
                    "ledger.on_failure = \"log\" would let role `{}` store and serve PHI without a durable record; it is allowed only on role `testing`",
                    self.config.role.get_ref()
                ),
            );
        }
        if let Some(disk) = &ledger.checkpoint_disk
            && !disks.contains(&disk.get_ref().as_str())
        {
            problem(disk.span(), format!("ledger.checkpoint_disk = \"{}\": no disk of that name", disk.get_ref()));
        }
        let fields = [
            ("checkpoint_every", &ledger.checkpoint_every, 1, 1_000_000_000),
            ("checkpoint_interval_secs", &ledger.checkpoint_interval_secs, 1, 31_536_000),
            ("lock_timeout_ms", &ledger.lock_timeout_ms, 1, 3_600_000),
        ];
        check_ranges("ledger", &fields, problem);
        if let Some(origin) = &ledger.origin
            && (origin.get_ref().is_empty()
                || origin.get_ref().contains('+')
                || origin.get_ref().chars().any(char::is_whitespace))
        {
            problem(
                origin.span(),
                "ledger.origin must be non-empty, without spaces or `+` (it names the signing key)".into(),
            );
        }
    }

    /// Defence in depth for the web role's rule: a web host never keeps PHI on its own disks, so
    /// its PHI classes must map to a disk served by the remote driver.
    fn check_web_role(&self, problem: &mut impl FnMut(Range<usize>, String)) {
        if *self.config.role.get_ref() != Role::Web {
            return;
        }
        let map = self.config.storage.get_ref();
        for (class, value) in [("scratch", map.scratch.as_ref()), ("submission", map.submission.as_ref())] {
            let value = value.unwrap_or(&map.default);
            let disk = value.get_ref();
            if let Some(plugin) = self.plugin_of(disk)
                && !is_remote(plugin)
            {
                problem(
                    value.span(),
                    format!(
                        "role = \"web\" must never keep PHI on its own disks, but storage.{class} resolves to disk `{disk}` (plugin {plugin}): map {class} to a disk with plugin = \"remote\" (this line, or add `{class} = ...` under [storage])"
                    ),
                );
            }
        }
    }

    /// The plugin serving disk `name`, if there is such a disk; for a mirrored disk, the
    /// plugin of its first mirror that is not remote (else of its first).
    fn plugin_of(&self, name: &str) -> Option<&str> {
        let disk = self.disk(name)?;
        match (&disk.plugin, &disk.mirror) {
            (Some(plugin), _) => Some(plugin.get_ref().as_str()),
            (None, Some(members)) => {
                let plugins =
                    members.get_ref().iter().filter(|m| *m != name).filter_map(|m| self.disk(m)?.plugin.as_ref());
                let plugins: Vec<&str> = plugins.map(|p| p.get_ref().as_str()).collect();
                plugins.iter().find(|p| !is_remote(p)).or(plugins.first()).copied()
            }
            (None, None) => None,
        }
    }

    pub(crate) fn disk(&self, name: &str) -> Option<&model::DiskConfig> {
        self.config.disks.iter().find(|(n, _)| n.get_ref() == name).map(|(_, d)| d)
    }

    /// A disk's `fallback` names another disk that has no fallback itself (a chain would hide
    /// where a write landed), and on role `web` one served by the remote driver: the web host
    /// never keeps PHI, not even while its services host is away.
    fn check_fallbacks(&self, problem: &mut impl FnMut(Range<usize>, String)) {
        for (name, disk) in &self.config.disks {
            let Some(fallback) = &disk.fallback else { continue };
            let (n, f) = (name.get_ref(), fallback.get_ref());
            let target = self.config.disks.iter().find(|(other, _)| other.get_ref() == f).map(|(_, d)| d);
            let Some(target) = target else {
                problem(fallback.span(), format!("disks.{n}.fallback = \"{f}\": no disk of that name"));
                continue;
            };
            if f == n {
                problem(fallback.span(), format!("disks.{n}.fallback = \"{f}\": a disk cannot be its own fallback"));
            } else if target.fallback.is_some() {
                problem(
                    fallback.span(),
                    format!("disks.{n}.fallback = \"{f}\": disk `{f}` has a fallback itself; fallbacks do not chain"),
                );
            }
            if *self.config.role.get_ref() == Role::Web
                && let Some(plugin) = self.plugin_of(f)
                && !is_remote(plugin)
            {
                problem(
                    fallback.span(),
                    format!(
                        "disks.{n}.fallback = \"{f}\": role = \"web\" must never keep PHI on its own disks, but disk `{f}` is served by plugin {plugin}: a web host's fallback must be a disk with plugin = \"remote\" (another services host)"
                    ),
                );
            }
        }
    }

    fn check_trust(&self, problem: &mut impl FnMut(Range<usize>, String)) {
        let trust = &self.config.trust;
        let role = *self.config.role.get_ref();
        if let Some(allow) = &trust.allow_unsigned
            && *allow.get_ref()
            && role != Role::Testing
            && !trust.force_allow_unsigned
        {
            problem(
                allow.span(),
                format!(
                    "trust.allow_unsigned = true is refused on role `{role}`: sign the plugins (stowage plugin sign), or set force_allow_unsigned = true if you really must"
                ),
            );
        }
        let pins = self
            .config
            .disks
            .iter()
            .map(|(n, d)| (format!("disks.{}", n.get_ref()), &d.pin))
            .chain(self.config.policies.iter().enumerate().map(|(i, p)| (format!("policies[{i}]"), &p.pin)));
        let lower_hex =
            |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        for (owner, pin) in pins {
            if let Some(sha) = &pin.sha256
                && !lower_hex(sha.get_ref(), 64)
            {
                problem(sha.span(), format!("{owner}.pin.sha256 must be 64 lowercase hex digits"));
            }
            if let Some(key) = &pin.key_id
                && !lower_hex(key.get_ref(), 16)
            {
                problem(
                    key.span(),
                    format!("{owner}.pin.key_id must be 16 lowercase hex digits (as `stowage plugin keygen` prints)"),
                );
            }
        }
    }

    /// Two disks whose granted directories nest could read and delete each other's objects
    /// (compared where they really are: symlinks resolved).
    fn check_grants_disjoint(&self, problem: &mut impl FnMut(Range<usize>, String)) {
        let dirs = self.granted_dirs();
        for (i, (a, _, pa)) in dirs.iter().enumerate() {
            for (b, db, pb) in &dirs[i + 1..] {
                if pa.starts_with(pb) || pb.starts_with(pa) {
                    problem(
                        db.span(),
                        format!(
                            "disks.{b}.grant.dir and disks.{a}.grant.dir overlap ({} and {}): each disk needs a directory of its own",
                            pb.display(),
                            pa.display()
                        ),
                    );
                }
            }
        }
    }

    /// A plugin may rewrite anything under its granted directory: the host's own files (the
    /// ledger and what goes with it, the config, the compiled-plugin cache) must be elsewhere,
    /// symlinks resolved.
    fn check_grants_hold_nothing_of_the_host(&self, plan: &Plan, problem: &mut impl FnMut(Range<usize>, String)) {
        let mut host_files = vec![("the ledger", plan.ledger.path.clone(), "move one of them")];
        if let Some(c) = plan.ledger.options.checkpoints.clone() {
            host_files.push(("the ledger's checkpoints", c.file, "set [ledger] checkpoints elsewhere"));
            host_files.push(("the ledger's signing key", c.key_file, "set [ledger] host_key elsewhere"));
        }
        if let ConfigSource::File(path) = &self.source {
            host_files.push(("this config file", path.clone(), "move one of them"));
        }
        if let Some(cache) = plan.cache_dir.clone() {
            host_files.push(("the compiled-plugin cache", cache, "set [cache] dir elsewhere"));
        }
        for (disk, dir, granted) in self.granted_dirs() {
            let mut ledger_reported = false;
            for (what, path, fix) in &host_files {
                let real = resolved(path);
                // The ledger's own files usually sit beside it: one problem says it.
                let of_the_ledger = what.starts_with("the ledger");
                if real.starts_with(&granted) && !(of_the_ledger && ledger_reported) {
                    ledger_reported |= of_the_ledger;
                    problem(
                        dir.span(),
                        format!(
                            "disks.{disk}.grant.dir ({}) contains {what} ({}): its plugin could rewrite it; {fix}",
                            granted.display(),
                            real.display()
                        ),
                    );
                }
            }
        }
    }

    /// Each disk's granted directory, where it really is.
    fn granted_dirs(&self) -> Vec<(&str, &Spanned<PathBuf>, PathBuf)> {
        self.config
            .disks
            .iter()
            .filter_map(|(name, d)| {
                d.grant
                    .dir
                    .as_ref()
                    .map(|dir| (name.get_ref().as_str(), dir, resolved(&self.base_dir.join(dir.get_ref()))))
            })
            .collect()
    }
}

/// Each of `fields` (name under `table`, value, min, max) that is set must be in its range.
fn check_ranges(
    table: &str,
    fields: &[(&str, &Option<Spanned<u64>>, u64, u64)],
    problem: &mut impl FnMut(Range<usize>, String),
) {
    for (field, value, min, max) in fields {
        if let Some(v) = value
            && !(min..=max).contains(&v.get_ref())
        {
            problem(v.span(), format!("{table}.{field} = {} is out of range {min}..={max}", v.get_ref()));
        }
    }
}

/// Where `path` really is: made absolute, `.` and `..` resolved, and symlinks in the part of
/// it that exists followed (what does not exist yet is appended as written).
fn resolved(path: &Path) -> PathBuf {
    let lexical = normalize(path);
    let mut existing = lexical.as_path();
    let mut missing = Vec::new();
    loop {
        if let Ok(mut real) = std::fs::canonicalize(existing) {
            real.extend(missing.iter().rev());
            return real;
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                missing.push(name);
                existing = parent;
            }
            _ => return lexical,
        }
    }
}

/// `path` made absolute with `.` and `..` resolved lexically (no symlinks followed).
fn normalize(path: &Path) -> PathBuf {
    let absolute = std::env::current_dir().map(|cwd| cwd.join(path)).unwrap_or_else(|_| path.to_path_buf());
    let mut out = PathBuf::new();
    for c in absolute.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Whether `plugin` is the remote driver: bundled `remote`, or a plugin file named remote.wasm.
pub(crate) fn is_remote(plugin: &str) -> bool {
    plugin == "remote" || Path::new(plugin).file_stem().is_some_and(|s| s == "remote") && plugin.ends_with(".wasm")
}
