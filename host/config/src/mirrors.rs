//! The checks of mirrored disks (`mirror = [...]`, `write_quorum`).

use std::ops::Range;

use crate::LoadedConfig;
use crate::check::is_remote;
use crate::deployment::Role;

impl LoadedConfig {
    /// A disk has a plugin or mirrors other disks, never both. A mirror names two or more
    /// distinct disks that have plugins (a mirror of mirrors would hide where a copy is),
    /// neither itself nor one with a fallback, and asks a quorum it can reach. On role `web`
    /// every mirror is remote: the web host never keeps PHI.
    pub(crate) fn check_mirrors(&self, problem: &mut impl FnMut(Range<usize>, String)) {
        for (name, disk) in &self.config.disks {
            let n = name.get_ref();
            let Some(mirror) = &disk.mirror else {
                if disk.plugin.is_none() {
                    problem(
                        name.span(),
                        format!(
                            "disks.{n} needs `plugin` (the driver that serves it) or `mirror` (the disks it mirrors)"
                        ),
                    );
                }
                if let Some(q) = &disk.write_quorum {
                    problem(q.span(), format!("disks.{n}.write_quorum is for a disk with `mirror = [...]`"));
                }
                continue;
            };
            let members = mirror.get_ref();
            let at = |m: &str| {
                format!(
                    "disks.{n}.mirror = [{}]: {m}",
                    members.iter().map(|m| format!("\"{m}\"")).collect::<Vec<_>>().join(", ")
                )
            };
            if disk.plugin.is_some() {
                problem(
                    mirror.span(),
                    at("a disk with a plugin cannot also mirror other disks; remove one of the two"),
                );
            }
            for (field, span) in [
                ("max_object_mib", disk.max_object_mib.as_ref().map(|v| v.span())),
                ("quota_gib", disk.quota_gib.as_ref().map(|v| v.span())),
                ("orphan_after_secs", disk.orphan_after_secs.as_ref().map(|v| v.span())),
            ] {
                if let Some(span) = span {
                    problem(
                        span,
                        format!(
                            "disks.{n}.{field}: a mirrored disk has no storage of its own; set it on each of its disks"
                        ),
                    );
                }
            }
            if disk.fallback.is_some() {
                problem(
                    mirror.span(),
                    at(
                        "a mirrored disk keeps writes on its quorum, not on a fallback; give the fallback to its mirrors instead",
                    ),
                );
            }
            if members.len() < 2 {
                problem(mirror.span(), at("a mirror needs at least two disks"));
            }
            for (i, m) in members.iter().enumerate() {
                if members[..i].contains(m) {
                    problem(mirror.span(), at(&format!("disk `{m}` is named twice")));
                } else if m == n {
                    problem(mirror.span(), at("a disk cannot mirror itself"));
                } else {
                    match self.disk(m) {
                        None => problem(mirror.span(), at(&format!("no disk named `{m}`"))),
                        Some(d) if d.mirror.is_some() => {
                            problem(mirror.span(), at(&format!("disk `{m}` is a mirror itself; mirrors do not nest")))
                        }
                        Some(d) if d.fallback.is_some() => problem(
                            mirror.span(),
                            at(&format!(
                                "disk `{m}` has a fallback; a mirror's disks write where they are, or not at all"
                            )),
                        ),
                        Some(_) if self.in_other_mirror(n, m) => problem(
                            mirror.span(),
                            at(&format!(
                                "disk `{m}` is in another mirror too; each disk holds the copies of one mirror"
                            )),
                        ),
                        Some(_)
                            if self
                                .config
                                .disks
                                .values()
                                .any(|d| d.fallback.as_ref().is_some_and(|f| f.get_ref() == m)) =>
                        {
                            problem(
                                mirror.span(),
                                at(&format!(
                                    "disk `{m}` is another disk's fallback; a mirror's disks hold only its copies"
                                )),
                            )
                        }
                        Some(_) => {}
                    }
                }
                if *self.config.role.get_ref() == Role::Web
                    && let Some(plugin) = self.disk(m).and_then(|d| d.plugin.as_ref()).map(|p| p.get_ref())
                    && !is_remote(plugin)
                {
                    problem(
                        mirror.span(),
                        at(&format!(
                            "role = \"web\" must never keep PHI on its own disks, but disk `{m}` is served by plugin {plugin}: a web host mirrors only disks with plugin = \"remote\""
                        )),
                    );
                }
            }
            if let Some(q) = &disk.write_quorum
                && (*q.get_ref() == 0 || *q.get_ref() > members.len() as u64)
            {
                problem(
                    q.span(),
                    format!(
                        "disks.{n}.write_quorum = {} must be between 1 and the number of mirrors ({})",
                        q.get_ref(),
                        members.len()
                    ),
                );
            }
        }
    }

    /// Whether a mirror other than `mirror` names disk `member`.
    fn in_other_mirror(&self, mirror: &str, member: &str) -> bool {
        self.config.disks.iter().any(|(other, d)| {
            other.get_ref() != mirror && d.mirror.as_ref().is_some_and(|ms| ms.get_ref().iter().any(|m| m == member))
        })
    }
}
