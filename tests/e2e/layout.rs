//! The source tree stays easy to read: no non-test source file is longer than 500 lines (a
//! longer one has more than one job and should be split). Test code does not count: files under
//! `tests/`, `tests.rs` / `properties.rs` test modules, and a file's inline `#[cfg(test)]`
//! module at its end.

use std::path::{Path, PathBuf};

const MAX_LINES: usize = 500;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if path.is_dir() {
            if name != "target" {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") && name != "tests.rs" && name != "properties.rs" {
            out.push(path);
        }
    }
}

#[test]
fn no_source_file_is_longer_than_500_lines() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = Vec::new();
    for top in ["host", "plugins"] {
        rust_files(&root.join(top), &mut files);
    }
    assert!(files.len() > 50, "the walk found only {} files: is the root right?", files.len());
    let mut long = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let lines = text.lines().take_while(|l| l.trim() != "#[cfg(test)]").count();
        if lines > MAX_LINES {
            long.push(format!("{} ({lines} lines)", file.strip_prefix(&root).unwrap_or(file).display()));
        }
    }
    assert!(long.is_empty(), "over {MAX_LINES} lines, split by job: {}", long.join(", "));
}
