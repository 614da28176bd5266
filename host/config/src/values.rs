//! A plugin's own config values: its `config` table flattened to `key` / `parent.child` →
//! text, with values kept outside the file (`{ env = "NAME" }`, `{ file = "/PATH" }`) read in.

use std::path::Path;

/// A plugin's config values (`key`, `parent.child` → text). They may be secrets (env and file
/// references), so `Debug` shows the keys only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Values(pub Vec<(String, String)>);

impl std::fmt::Debug for Values {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.iter().map(|(k, _)| k)).finish()
    }
}

/// A plugin's config table as `key` / `parent.child` → string pairs. A value written
/// `{ env = "NAME" }` is read from the host's environment variable `NAME` (so secrets stay out
/// of config files); `at` names the table in errors.
pub fn flatten(table: &toml::Table, at: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    flatten_into("", table, at, &mut out)?;
    Ok(out)
}

fn flatten_into(prefix: &str, table: &toml::Table, at: &str, out: &mut Vec<(String, String)>) -> Result<(), String> {
    for (k, v) in table {
        let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        match v {
            toml::Value::Table(t) if !is_env_ref(t) => flatten_into(&key, t, at, out)?,
            value => out.push((key.clone(), resolve_value(value, &format!("{at}.{key}"))?)),
        }
    }
    Ok(())
}

/// `{ env = "NAME" }` or `{ file = "/PATH" }`: a value kept outside the config file.
fn is_env_ref(t: &toml::Table) -> bool {
    t.len() == 1 && (t.contains_key("env") || t.contains_key("file"))
}

/// One scalar config value as a string. `{ env = "NAME" }` reads the environment variable
/// `NAME` (fixed for a process: a reload sees the value the host started with);
/// `{ file = "/PATH" }` reads the file (its content, without a trailing newline), again on
/// every reload, so a key rotated in its file takes effect without a restart (systemd's
/// `LoadCredential=` files are such files). `at` names the value in errors, which never carry
/// the value (it may be a secret).
pub fn resolve_value(value: &toml::Value, at: &str) -> Result<String, String> {
    match value {
        toml::Value::Table(t) if is_env_ref(t) => match (t.get("env"), t.get("file")) {
            (Some(toml::Value::String(var)), _) => {
                std::env::var(var).map_err(|_| format!("{at}: environment variable `{var}` is not set"))
            }
            (_, Some(toml::Value::String(path))) if Path::new(path).is_absolute() => {
                match std::fs::read_to_string(path) {
                    Ok(text) => Ok(text.trim_end_matches(['\r', '\n']).to_string()),
                    Err(e) => Err(format!("{at}: cannot read {path}: {}", e.kind())),
                }
            }
            (_, Some(toml::Value::String(_))) => Err(format!("{at}: `file` must be an absolute path")),
            (Some(_), _) => Err(format!("{at}: `env` must name an environment variable")),
            _ => Err(format!("{at}: `file` must be a path")),
        },
        toml::Value::Table(_) => Err(format!("{at}: expected a value, {{ env = \"NAME\" }} or {{ file = \"/PATH\" }}")),
        toml::Value::String(s) => Ok(s.clone()),
        other => Ok(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flatten_renders_scalars_and_nests_keys() {
        let t: toml::Table = toml::from_str("a = \"x\"\nn = 3\nb = true\n[t]\nc = 1.5\n").unwrap();
        assert_eq!(
            flatten(&t, "x").unwrap(),
            vec![
                ("a".into(), "x".into()),
                ("b".into(), "true".into()),
                ("n".into(), "3".into()),
                ("t.c".into(), "1.5".into()),
            ]
        );
    }

    #[test]
    fn env_references_are_resolved_and_a_missing_one_is_named_without_a_value() {
        let t: toml::Table =
            toml::from_str("key = { env = \"PATH\" }\nsecret = { env = \"STOWAGE_TEST_UNSET_VAR\" }\n").unwrap();
        let e = flatten(&t, "disks.s3.config").unwrap_err();
        assert_eq!(e, "disks.s3.config.secret: environment variable `STOWAGE_TEST_UNSET_VAR` is not set");
        let t: toml::Table = toml::from_str("key = { env = \"PATH\" }\n").unwrap();
        assert_eq!(flatten(&t, "x").unwrap(), vec![("key".to_string(), std::env::var("PATH").unwrap())]);
    }

    #[test]
    fn file_references_are_read_each_time_and_name_no_content() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("web-1.key");
        std::fs::write(&key, "first-secret\n").unwrap();
        let value: toml::Value =
            toml::from_str::<toml::Table>(&format!("v = {{ file = \"{}\" }}", key.display())).unwrap()["v"].clone();
        assert_eq!(resolve_value(&value, "api_keys[0]").unwrap(), "first-secret");
        std::fs::write(&key, "second-secret").unwrap();
        assert_eq!(resolve_value(&value, "api_keys[0]").unwrap(), "second-secret", "read again, not cached");
        std::fs::remove_file(&key).unwrap();
        let e = resolve_value(&value, "api_keys[0]").unwrap_err();
        assert!(e.starts_with("api_keys[0]: cannot read") && !e.contains("secret"), "{e}");
        let relative: toml::Value = toml::from_str::<toml::Table>("v = { file = \"k.key\" }").unwrap()["v"].clone();
        assert_eq!(resolve_value(&relative, "url_secret").unwrap_err(), "url_secret: `file` must be an absolute path");
    }
}
