//! The plugin authors' kit: wiring validation, the Python policy swapped in by config, the
//! `plugin new` templates, and the plugin author guide (README) run command by command.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{run_in, stderr, stdout};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn wiring_a_policy_to_a_disk_that_lacks_what_it_needs_is_refused_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::copy(stowage_tests::fixture("test_policy"), d.join("p.wasm")).unwrap();
    std::fs::write(d.join("f.txt"), "x").unwrap();
    let config = |needs: &str| {
        format!(
            "role = \"testing\"\n[trust]\nallow_unsigned = true\n[disks.local]\nplugin = \"local-fs\"\ngrant = {{ dir = \"data\" }}\n\
             [storage]\ndefault = \"local\"\n[[policies]]\nplugin = \"./p.wasm\"\nconfig = {{ needs = \"{needs}\" }}\n"
        )
    };
    // local-fs declares create-only and ranges, but has no signed URLs.
    std::fs::write(d.join("stowage.toml"), config("create-only,presign")).unwrap();
    let o = run_in(d, &["put", "default:f.txt", "f.txt"]);
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("policy `p` needs presign, create-only from every disk it guards, but disk `local` (plugin local-fs) does not declare presign"),
        "{err}"
    );
    assert!(err.contains("it declares: range-reads, create-only, user-metadata, list-pagination"), "{err}");
    assert!(!d.join("data/f.txt").exists(), "a refused start wrote data");

    // What local-fs declares is enough.
    std::fs::write(d.join("stowage.toml"), config("create-only,range-reads")).unwrap();
    let o = run_in(d, &["put", "default:f.txt", "f.txt"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn the_python_policy_passes_plugin_test_and_is_swapped_in_by_config() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::copy(stowage_tests::require_cohort_policy(), d.join("require_cohort.wasm")).unwrap();
    // Signed like any plugin.
    assert!(run_in(d, &["plugin", "keygen", "--out", "team"]).status.success());
    let o = run_in(d, &["plugin", "sign", "--key", "team.key", "require_cohort.wasm"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run_in(d, &["plugin", "test", "require_cohort.wasm"]);
    let out = stdout(&o);
    assert!(o.status.success() && out.contains("4 passed, 0 failed, 1 skipped"), "{out}{}", stderr(&o));
    assert!(out.contains("SKIP policy/observes-every-outcome: the policy declares no operation to observe"), "{out}");

    std::fs::write(d.join("f.csv"), "id\n1\n").unwrap();
    let base = "role = \"testing\"\n[trust]\nkeys = [\"team.pub\"]\n[disks.local]\nplugin = \"local-fs\"\ngrant = { dir = \"data\" }\n\
                [storage]\ndefault = \"local\"\nsubmission = \"local\"\n";
    let python =
        format!("{base}[[policies]]\nplugin = \"require_cohort.wasm\"\nconfig = {{ cohorts = \"VACS,ADNI\" }}\n");
    std::fs::write(d.join("stowage.toml"), &python).unwrap();
    let o = run_in(d, &["put", "submission:a.csv", "f.csv"]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(stderr(&o).contains("policy `require_cohort`: writes to `submission` need a cohort"), "{}", stderr(&o));
    let o = run_in(d, &["--cohort", "OTHER", "put", "submission:a.csv", "f.csv"]);
    assert!(stderr(&o).contains("cohort `OTHER` is not one of VACS, ADNI"), "{}", stderr(&o));
    assert!(!d.join("data/a.csv").exists(), "a denied write reached the disk");
    let o = run_in(d, &["--cohort", "VACS", "put", "submission:a.csv", "f.csv"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Other classes are not guarded; addressing the disk by name does not go around the rule.
    let o = run_in(d, &["put", "default:b.csv", "f.csv"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run_in(d, &["put", "local:c.csv", "f.csv"]);
    assert!(stderr(&o).contains("writes to `disk local` need a cohort"), "{}", stderr(&o));

    // The same host without the policy: a config change, nothing rebuilt.
    std::fs::write(d.join("stowage.toml"), base).unwrap();
    let o = run_in(d, &["put", "submission:c.csv", "f.csv"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn plugin_wit_writes_the_package_plugins_build_against() {
    let dir = tempfile::tempdir().unwrap();
    let o = run_in(dir.path(), &["plugin", "wit", "--out", "wit"]);
    assert!(o.status.success(), "{}", stderr(&o));
    for file in ["types.wit", "store.wit", "policy.wit", "host.wit", "worlds.wit", "deps/io.wit"] {
        let written = std::fs::read_to_string(dir.path().join("wit").join(file)).unwrap();
        let source = std::fs::read_to_string(workspace().join("wit").join(file)).unwrap();
        assert_eq!(written, source, "{file} differs from the repository's");
    }
}

#[test]
fn plugin_new_refuses_bad_names_existing_directories_and_python_drivers() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = run_in(d, &["plugin", "new", "driver", "Bad_Name"]);
    assert!(!o.status.success() && stderr(&o).contains("must start with a lowercase letter"), "{}", stderr(&o));
    let o = run_in(d, &["plugin", "new", "driver", "py", "--lang", "python"]);
    assert!(!o.status.success() && stderr(&o).contains("Python drivers are not offered"), "{}", stderr(&o));
    assert!(run_in(d, &["plugin", "new", "policy", "p"]).status.success());
    std::fs::write(d.join("p/src/lib.rs"), "// my work").unwrap();
    let o = run_in(d, &["plugin", "new", "policy", "p"]);
    assert!(!o.status.success() && stderr(&o).contains("already exists"), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(d.join("p/src/lib.rs")).unwrap(), "// my work", "existing work was overwritten");
}

/// The ```sh blocks of a Markdown file, in order.
fn sh_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(_), "```") => blocks.extend(current.take()),
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

#[test]
fn the_plugin_guide_works_command_by_command() {
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    let start = readme.find("## Plugin author guide\n").expect("the README has the guide");
    let guide = &readme[start..];
    let guide = &guide[..guide[3..].find("\n## ").map_or(guide.len(), |end| end + 3)];
    let blocks = sh_blocks(guide);
    assert!(blocks.len() >= 5, "the guide lost its commands: {blocks:?}");
    let script = format!("set -ex\n{}", blocks.join("\n"));
    let dir = tempfile::tempdir().unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_stowage")).parent().unwrap().to_path_buf();
    let path =
        std::env::join_paths(std::iter::once(bin).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())))
            .unwrap();
    let mut cmd = Command::new("bash");
    cmd.arg("-c").arg(&script).current_dir(dir.path()).env("PATH", path);
    // The guide's cargo builds are a new user's, not part of this build.
    for var in ["CARGO_TARGET_DIR", "CARGO_BUILD_TARGET", "RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "STOWAGE_CONFIG"] {
        cmd.env_remove(var);
    }
    cmd.env("STOWAGE_CACHE_DIR", Path::new(env!("CARGO_TARGET_TMPDIR")).join("stowage-cache"));
    let o = cmd.output().unwrap();
    let (out, err) = (stdout(&o), stderr(&o));
    assert!(o.status.success(), "the guide's commands failed:\n{out}\n{err}");
    // What the guide promises happened.
    let d = dir.path();
    assert_eq!(out.matches(" passed, 0 failed, ").count(), 3, "three plugin tests ran clean:\n{out}");
    assert!(
        out.contains("OK: my-driver/target/wasm32-wasip2/release/my_driver.wasm is signed by trusted key"),
        "{out}"
    );
    assert_eq!(std::fs::read_to_string(d.join("data/cohort.csv")).unwrap(), "id,age\n");
    assert!(out.contains("id,age"), "get printed the object:\n{out}");
    assert!(
        err.contains("`.exe` files may not be stored here") && out.contains("refused, as configured"),
        "{out}\n{err}"
    );
    assert!(!d.join("data/tool.exe").exists(), "the policy let a refused write through");
}
