//! Config parsing and checking: what each mistake is told.

use super::*;

fn parse(text: &str) -> Result<LoadedConfig, ConfigError> {
    LoadedConfig::parse(text, ConfigSource::File("t.toml".into()), PathBuf::from("."))
}

#[test]
fn embedded_default_is_valid_and_maps_every_class_to_local() {
    let c = parse(EMBEDDED_DEFAULT).unwrap();
    for class in StorageClass::ALL {
        assert_eq!(c.disk_for(class), "local");
    }
}

#[test]
fn unknown_field_names_the_field_and_line() {
    let text = "role = \"testing\"\n[disks.a]\nplugin = \"local-fs\"\nplgin = 3\n[storage]\ndefault = \"a\"\n";
    let e = parse(text).unwrap_err().to_string();
    assert!(e.starts_with("t.toml:4:"), "{e}");
    assert!(e.contains("unknown field `plgin`"), "{e}");
}

#[test]
fn bad_role_names_the_line() {
    let e = parse("role = \"webby\"\n[storage]\ndefault = \"a\"\n").unwrap_err().to_string();
    assert!(e.starts_with("t.toml:1:"), "{e}");
    assert!(e.contains("webby"), "{e}");
}

#[test]
fn every_semantic_problem_is_reported_with_its_line() {
    let text = "role = \"testing\"\n[disks.scratch]\nplugin = \"nope\"\n[disks.ok]\nplugin = \"local-fs\"\nlimits = { memory_mib = 0 }\n[storage]\ndefault = \"ok\"\nscratch = \"missing\"\n";
    let e = parse(text).unwrap_err();
    let lines: Vec<_> = e.problems.iter().map(|p| p.at.unwrap().0).collect();
    assert_eq!(lines, vec![2, 3, 6, 9], "{e}");
    let s = e.to_string();
    assert!(s.contains("storage.scratch = \"missing\": no disk of that name; defined disks: ok, scratch"), "{s}");
    assert!(s.contains("memory_mib = 0 is out of range"), "{s}");
    assert!(s.contains("also a storage class name"), "{s}");
}

#[test]
fn type_errors_name_the_key() {
    let text = "role = \"testing\"\n[disks.a]\nplugin = \"local-fs\"\nlimits = { memory_mib = \"lots\" }\n[storage]\ndefault = \"a\"\n";
    let e = parse(text).unwrap_err().to_string();
    assert!(e.starts_with("t.toml:4:25: `memory_mib`: invalid type"), "{e}");
}

#[test]
fn nested_grant_dirs_are_refused() {
    let text = "role = \"testing\"\n[disks.a]\nplugin = \"local-fs\"\ngrant = { dir = \"data\" }\n[disks.b]\nplugin = \"local-fs\"\ngrant = { dir = \"./data/sub/..\" }\n[storage]\ndefault = \"a\"\n";
    let e = parse(text).unwrap_err().to_string();
    assert!(e.starts_with("t.toml:7:"), "{e}");
    assert!(e.contains("overlap"), "{e}");
}

#[test]
fn api_keys_need_an_endpoint_and_https_outside_dev_mode() {
    let disk = |grant: &str, server: &str| {
        format!(
            "role = \"web\"\n[disks.r]\nplugin = \"remote\"\ngrant = {{ {grant} }}\n[storage]\ndefault = \"r\"\n[server]\n{server}"
        )
    };
    // An environment variable no one sets.
    let key = "api_key = { env = \"STOWAGE_CONFIG_TEST_KEY_UNSET\" }";
    let e = parse(&disk(key, "")).unwrap_err().to_string();
    assert!(e.contains("grant.api_key needs grant.endpoint"), "{e}");
    let e = parse(&disk(&format!("endpoint = \"http://10.0.0.2:8443\", {key}"), "")).unwrap_err().to_string();
    assert!(e.contains("would travel over plain HTTP") && e.contains("not set"), "{e}");
    let e = parse(&disk(&format!("endpoint = \"http://10.0.0.2:8443\", {key}"), "dev_mode = true"))
        .unwrap_err()
        .to_string();
    assert!(!e.contains("plain HTTP") && e.contains("STOWAGE_CONFIG_TEST_KEY_UNSET` is not set"), "{e}");
    let e =
        parse(&disk("endpoint = \"https://s.example.org\", ca_file = \"missing-ca.pem\"", "")).unwrap_err().to_string();
    assert!(e.contains("grant.ca_file") && e.contains("missing-ca.pem"), "{e}");
    assert!(parse(&disk("endpoint = \"https://s.example.org\", api_key = \"k\"", "")).is_ok());
}

#[test]
fn logging_ledger_failures_is_for_testing_only_and_the_checkpoint_disk_must_exist() {
    let text = |role: &str, ledger: &str| {
        format!("role = \"{role}\"\n[disks.a]\nplugin = \"local-fs\"\n[storage]\ndefault = \"a\"\n[ledger]\n{ledger}")
    };
    assert!(parse(&text("testing", "on_failure = \"log\"\n")).is_ok());
    for role in ["services", "web"] {
        let e = parse(&text(role, "on_failure = \"log\"\n")).unwrap_err().to_string();
        assert!(
            e.contains("t.toml:7:14: ledger.on_failure")
                && e.contains("allowed only on role `testing`")
                && e.contains(role),
            "{e}"
        );
    }
    assert!(parse(&text("services", "on_failure = \"fail\"\n")).is_ok());
    let e = parse(&text("testing", "checkpoint_disk = \"b\"\n")).unwrap_err().to_string();
    assert!(e.contains("ledger.checkpoint_disk = \"b\": no disk of that name"), "{e}");
    let e = parse(&text("testing", "checkpoint_every = 0\n")).unwrap_err().to_string();
    assert!(e.contains("ledger.checkpoint_every = 0 is out of range"), "{e}");
}

#[test]
fn a_postgresql_ledger_needs_a_postgres_url_never_quoted_and_a_ca_file_only_with_it() {
    let text = |ledger: &str| {
        format!("role = \"services\"\n[disks.a]\nplugin = \"local-fs\"\n[storage]\ndefault = \"a\"\n[ledger]\n{ledger}")
    };
    let ok = parse(&text("url = \"postgres://u:pw@db.example:5432/ledger\"\nhost = \"svc-1\"\n")).unwrap();
    let options = ok.ledger_options();
    assert_eq!(options.database.as_ref().map(|d| d.url.as_str()), Some("postgres://u:pw@db.example:5432/ledger"));
    assert_eq!(options.host.as_deref(), Some("svc-1"));
    assert!(!format!("{options:?}").contains("pw@"), "the URL's password stays out of Debug: {options:?}");
    // Without a name, a shared ledger names the machine; an SQLite one names no host.
    let unnamed = parse(&text("url = \"postgresql://u:pw@db/ledger\"\n")).unwrap();
    assert!(unnamed.ledger_options().host.is_some_and(|h| !h.is_empty()));
    assert_eq!(parse(&text("")).unwrap().ledger_options().host, None);
    let e = parse(&text("url = \"mysql://u:secretpw@db/ledger\"\n")).unwrap_err().to_string();
    assert!(e.contains("t.toml:7:7: ledger.url must be a PostgreSQL URL"), "{e}");
    assert!(!e.contains("secretpw"), "{e}");
    let e = parse(&text("url = { env = \"STOWAGE_CONFIG_TEST_LEDGER_URL_UNSET\" }\n")).unwrap_err().to_string();
    assert!(e.contains("ledger.url: environment variable `STOWAGE_CONFIG_TEST_LEDGER_URL_UNSET` is not set"), "{e}");
    let e = parse(&text("ca_file = \"Cargo.toml\"\n")).unwrap_err().to_string();
    assert!(e.contains("ledger.ca_file needs ledger.url"), "{e}");
    let e = parse(&text("host = \"\"\n")).unwrap_err().to_string();
    assert!(e.contains("ledger.host must be a non-empty name"), "{e}");
    let e = parse(&text("url = \"postgres://u:pw@db/l\"\nlock_timeout_ms = 50\n")).unwrap_err().to_string();
    assert!(e.contains("ledger.lock_timeout_ms = 50 is too short for PostgreSQL (at least 100)"), "{e}");
    assert!(parse(&text("lock_timeout_ms = 50\n")).is_ok(), "SQLite may wait less");
}

#[test]
fn position_counts_lines_and_columns_from_one() {
    assert_eq!(position("ab\ncd", 0), (1, 1));
    assert_eq!(position("ab\ncd", 4), (2, 2));
}

#[test]
fn a_secret_in_the_wrong_place_is_not_quoted_in_the_error() {
    let text = "role = \"testing\"\n[storage]\ndefault = \"x\"\n[server]\napi_keys = \"supersecret-0123456789abcdef0123456789\"\n";
    let e = LoadedConfig::parse(text, ConfigSource::Embedded, ".".into()).unwrap_err().to_string();
    assert!(e.contains("`api_keys`: invalid type: string (value not shown), expected a sequence"), "{e}");
    assert!(!e.contains("supersecret"), "{e}");
}

#[test]
fn a_fallback_names_another_disk_without_its_own_and_on_the_web_role_a_remote_one() {
    let text = |role: &str, a: &str, b: &str| {
        format!(
            "role = \"{role}\"\n[disks.a]\nplugin = \"remote\"\n{a}\n[disks.b]\nplugin = \"local-fs\"\n{b}\n[storage]\ndefault = \"a\"\nscratch = \"a\"\nsubmission = \"a\"\n"
        )
    };
    let plan = parse(&text("testing", "fallback = \"b\"", "")).unwrap();
    assert_eq!(plan.plan().disks.iter().find(|d| d.plugin.name == "a").unwrap().fallback.as_deref(), Some("b"));
    let cases = [
        ("testing", "fallback = \"c\"", "", "t.toml:4:12: disks.a.fallback = \"c\": no disk of that name"),
        ("testing", "fallback = \"a\"", "", "disks.a.fallback = \"a\": a disk cannot be its own fallback"),
        ("testing", "fallback = \"b\"", "fallback = \"a\"", "disk `b` has a fallback itself; fallbacks do not chain"),
        (
            "web",
            "fallback = \"b\"",
            "",
            "t.toml:4:12: disks.a.fallback = \"b\": role = \"web\" must never keep PHI on its own disks, but disk `b` is served by plugin local-fs",
        ),
    ];
    for (role, a, b, want) in cases {
        let e = parse(&text(role, a, b)).unwrap_err().to_string();
        assert!(e.contains(want), "{role} / {a} / {b}: {e}");
    }
}

#[test]
fn a_mirror_names_two_or_more_disks_with_plugins_and_a_quorum_it_can_reach() {
    let text = |role: &str, archive: &str| {
        format!(
            "role = \"{role}\"\n[disks.a]\nplugin = \"local-fs\"\n[disks.b]\nplugin = \"remote\"\n[disks.archive]\n{archive}\n[storage]\ndefault = \"archive\"\nscratch = \"b\"\nsubmission = \"b\"\n"
        )
    };
    let plan = parse(&text("testing", "mirror = [\"a\", \"b\"]\nwrite_quorum = 1")).unwrap();
    let mirrors = &plan.plan().mirrors;
    assert_eq!(mirrors.len(), 1);
    let m = &mirrors[0];
    assert_eq!((m.name.as_str(), m.members.join(","), m.write_quorum), ("archive", "a,b".to_string(), 1));
    assert!(plan.plan().disks.iter().all(|d| d.plugin.name != "archive"), "a mirror has no plugin to load");
    // The quorum defaults to every mirror.
    let plan = parse(&text("testing", "mirror = [\"a\", \"b\"]")).unwrap();
    assert_eq!(plan.plan().mirrors[0].write_quorum, 2);
    let cases = [
        ("testing", "", "disks.archive needs `plugin` (the driver that serves it) or `mirror`"),
        (
            "testing",
            "mirror = [\"a\"]",
            "t.toml:7:10: disks.archive.mirror = [\"a\"]: a mirror needs at least two disks",
        ),
        ("testing", "mirror = [\"a\", \"c\"]", "no disk named `c`"),
        ("testing", "mirror = [\"a\", \"a\"]", "disk `a` is named twice"),
        ("testing", "mirror = [\"a\", \"archive\"]", "a disk cannot mirror itself"),
        (
            "testing",
            "mirror = [\"a\", \"b\"]\nwrite_quorum = 3",
            "disks.archive.write_quorum = 3 must be between 1 and the number of mirrors (2)",
        ),
        (
            "testing",
            "mirror = [\"a\", \"b\"]\nplugin = \"local-fs\"",
            "a disk with a plugin cannot also mirror other disks",
        ),
        (
            "testing",
            "mirror = [\"a\", \"b\"]\nquota_gib = 1",
            "disks.archive.quota_gib: a mirrored disk has no storage of its own",
        ),
        (
            "testing",
            "mirror = [\"a\", \"b\"]\nfallback = \"a\"",
            "a mirrored disk keeps writes on its quorum, not on a fallback",
        ),
        (
            "web",
            "mirror = [\"a\", \"b\"]",
            "role = \"web\" must never keep PHI on its own disks, but disk `a` is served by plugin local-fs",
        ),
    ];
    for (role, archive, want) in cases {
        let e = parse(&text(role, archive)).unwrap_err().to_string();
        assert!(e.contains(want), "{role} / {archive}: {e}");
    }
    // A disk holds the copies of one mirror, and is nobody's fallback.
    let two = text("testing", "mirror = [\"a\", \"b\"]\n[disks.other]\nmirror = [\"b\", \"a\"]");
    let e = parse(&two).unwrap_err().to_string();
    assert!(e.contains("disk `b` is in another mirror too"), "{e}");
    let fallback = text("testing", "mirror = [\"a\", \"b\"]\n[disks.c]\nplugin = \"local-fs\"\nfallback = \"a\"");
    let e = parse(&fallback).unwrap_err().to_string();
    assert!(e.contains("disk `a` is another disk's fallback"), "{e}");
}

#[test]
fn fixity_schedule_is_planned_and_its_bad_values_are_located() {
    let base = "role = \"testing\"\n[disks.a]\nplugin = \"local-fs\"\n[disks.b]\nplugin = \"local-fs\"\n[storage]\ndefault = \"a\"\n";
    let c = parse(&format!("{base}[fixity]\nevery = \"12h\"\nmax_mib_per_sec = 50\n")).unwrap();
    let plan = c.plan().fixity.clone().unwrap();
    assert_eq!(plan.every, std::time::Duration::from_secs(12 * 3600));
    assert_eq!(plan.max_bytes_per_sec, Some(50 << 20));
    assert_eq!(plan.disks, ["a", "b"], "every disk by default");
    assert!(parse(base).unwrap().plan().fixity.is_none(), "no table, no schedule");
    let c = parse(&format!("{base}[fixity]\nevery = \"1d\"\ndisks = [\"b\"]\n")).unwrap();
    assert_eq!(c.plan().fixity.as_ref().unwrap().disks, ["b"]);

    let e = parse(&format!("{base}[fixity]\nevery = \"daily\"\nmax_mib_per_sec = 0\ndisks = [\"a\", \"nope\"]\n"))
        .unwrap_err();
    let lines: Vec<_> = e.problems.iter().map(|p| p.at.unwrap().0).collect();
    assert_eq!(lines, vec![9, 10, 11], "{e}");
    let s = e.to_string();
    assert!(s.contains("fixity.every = \"daily\" must be a number and s, m, h or d"), "{s}");
    assert!(s.contains("fixity.max_mib_per_sec = 0 is out of range"), "{s}");
    assert!(s.contains("fixity.disks: no disk named `nope`"), "{s}");
    let e = parse(&format!("{base}[fixity]\nevery = \"1h\"\nevry = 3\n")).unwrap_err().to_string();
    assert!(e.starts_with("t.toml:10:") && e.contains("unknown field `evry`"), "{e}");
}
