//! Properties of config parsing over generated and damaged configs (bounded).

use proptest::prelude::*;

use super::*;

fn parse(text: &str) -> Result<LoadedConfig, ConfigError> {
    LoadedConfig::parse(text, ConfigSource::File("t.toml".into()), PathBuf::from("."))
}

/// Every problem of a refused config names the file and, when it has a place, a line
/// and column inside the text.
fn placed_in(e: &ConfigError, text: &str) -> Result<(), TestCaseError> {
    prop_assert!(!e.problems.is_empty());
    let lines = text.split('\n').count();
    for p in &e.problems {
        prop_assert!(!p.message.trim().is_empty());
        if let Some((line, col)) = p.at {
            prop_assert!(line >= 1 && line <= lines && col >= 1, "{line}:{col} outside {lines} lines: {}", p.message);
        }
    }
    prop_assert!(e.to_string().starts_with("t.toml"), "{e}");
    Ok(())
}

fn disk_name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_-]{0,8}".prop_filter("a class name", |n| StorageClass::parse(n).is_none())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_damaged_default_config_is_accepted_or_refused_with_a_place(at in any::<prop::sample::Index>(), cut in 0usize..40, insert in "[ -~\n]{0,12}") {
        let text = EMBEDDED_DEFAULT;
        let mut at = at.index(text.len());
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        let mut end = (at + cut).min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let damaged = format!("{}{insert}{}", &text[..at], &text[end..]);
        if let Err(e) = parse(&damaged) {
            placed_in(&e, &damaged)?;
        }
    }

    #[test]
    fn classes_must_name_a_declared_disk(
        disks in proptest::collection::btree_set(disk_name(), 1..4),
        picks in proptest::collection::vec((any::<prop::sample::Index>(), any::<bool>()), 3),
    ) {
        let disks: Vec<String> = disks.into_iter().collect();
        let mut text = String::from("role = \"testing\"\n");
        for d in &disks {
            text.push_str(&format!("[disks.{d}]\nplugin = \"local-fs\"\ngrant = {{ dir = \"data-{d}\" }}\n"));
        }
        text.push_str("[storage]\n");
        let mut all_declared = true;
        for ((pick, declared), class) in picks.iter().zip(["default", "scratch", "submission"]) {
            let name = if *declared { disks[pick.index(disks.len())].clone() } else { format!("undeclared-{}", pick.index(100)) };
            all_declared &= *declared;
            text.push_str(&format!("{class} = \"{name}\"\n"));
        }
        match parse(&text) {
            Ok(c) => {
                prop_assert!(all_declared, "accepted an undeclared disk:\n{text}");
                for class in StorageClass::ALL {
                    prop_assert!(disks.iter().any(|d| d == c.disk_for(class)));
                }
            }
            Err(e) => {
                prop_assert!(!all_declared, "refused a good config:\n{text}\n{e}");
                prop_assert!(e.to_string().contains("undeclared-"), "{e}");
                placed_in(&e, &text)?;
            }
        }
    }
}
