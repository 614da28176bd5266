//! The source tree stays easy to read: no non-test source file is longer than 500 lines (a
//! longer one has more than one job and should be split), and no crate's modules import each
//! other in a circle (data flows one way). Test code does not count: files under
//! `tests/`, `tests.rs` / `properties.rs` test modules, and a file's inline `#[cfg(test)]`
//! module at its end.

use std::collections::{BTreeMap, BTreeSet};
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

/// A crate's modules, by path (`[]` is the crate root), and their source files.
fn crate_modules(src: &Path) -> BTreeMap<Vec<String>, PathBuf> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut modules = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(src).unwrap().with_extension("");
        let mut path: Vec<String> = rel.iter().map(|s| s.to_string_lossy().into_owned()).collect();
        match path.last().map(String::as_str) {
            Some("lib" | "main") if path.len() == 1 => path.clear(),
            Some("mod") => {
                path.pop();
            }
            _ => {}
        }
        if path.first().is_some_and(|p| p == "bin") {
            continue; // each is a crate of its own
        }
        modules.insert(path, file);
    }
    modules
}

fn is_test_only(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| a.path().is_ident("cfg") && a.parse_args::<syn::Path>().is_ok_and(|p| p.is_ident("test")))
}

/// What one module file names: its imports (`use`), its re-exports (`pub use`, by the name
/// they give) and every other path, each with the (inline) module it appears in.
#[derive(Default)]
struct Names {
    scope: Vec<String>,
    uses: Vec<(Vec<String>, Vec<String>)>,
    reexports: BTreeMap<String, (Vec<String>, Vec<String>)>,
    paths: Vec<(Vec<String>, Vec<String>)>,
}

fn use_paths(tree: &syn::UseTree, prefix: &mut Vec<String>, out: &mut Vec<(Vec<String>, String)>) {
    match tree {
        syn::UseTree::Path(p) => {
            prefix.push(p.ident.to_string());
            use_paths(&p.tree, prefix, out);
            prefix.pop();
        }
        syn::UseTree::Name(n) if n.ident == "self" => {
            out.push((prefix.clone(), prefix.last().cloned().unwrap_or_default()))
        }
        syn::UseTree::Name(n) => {
            let mut p = prefix.clone();
            p.push(n.ident.to_string());
            out.push((p, n.ident.to_string()));
        }
        syn::UseTree::Rename(r) => {
            let mut p = prefix.clone();
            p.push(r.ident.to_string());
            out.push((p, r.rename.to_string()));
        }
        syn::UseTree::Glob(_) => out.push((prefix.clone(), "*".into())),
        syn::UseTree::Group(g) => {
            for t in &g.items {
                use_paths(t, prefix, out);
            }
        }
    }
}

impl<'a> syn::visit::Visit<'a> for Names {
    fn visit_item(&mut self, item: &'a syn::Item) {
        let attrs = match item {
            syn::Item::Mod(m) => &m.attrs,
            syn::Item::Fn(f) => &f.attrs,
            syn::Item::Impl(i) => &i.attrs,
            syn::Item::Use(u) => &u.attrs,
            syn::Item::Const(c) => &c.attrs,
            syn::Item::Struct(s) => &s.attrs,
            _ => return syn::visit::visit_item(self, item),
        };
        if !is_test_only(attrs) {
            syn::visit::visit_item(self, item);
        }
    }

    fn visit_item_mod(&mut self, m: &'a syn::ItemMod) {
        self.scope.push(m.ident.to_string());
        syn::visit::visit_item_mod(self, m);
        self.scope.pop();
    }

    fn visit_item_use(&mut self, u: &'a syn::ItemUse) {
        let mut found = Vec::new();
        use_paths(&u.tree, &mut Vec::new(), &mut found);
        let public = !matches!(u.vis, syn::Visibility::Inherited);
        for (path, name) in found {
            if public {
                self.reexports.insert(name, (self.scope.clone(), path));
            } else {
                self.uses.push((self.scope.clone(), path));
            }
        }
    }

    fn visit_visibility(&mut self, _: &'a syn::Visibility) {
        // `pub(crate)`, `pub(super)`: who may see an item, not what it uses.
    }

    fn visit_path(&mut self, p: &'a syn::Path) {
        self.paths.push((self.scope.clone(), p.segments.iter().map(|s| s.ident.to_string()).collect()));
        syn::visit::visit_path(self, p);
    }

    fn visit_macro(&mut self, m: &'a syn::Macro) {
        // Paths inside a macro's tokens (`format!("{}", crate::x::y())`) count too.
        fn flatten(stream: proc_macro2::TokenStream, out: &mut Vec<String>) {
            for t in stream {
                match t {
                    proc_macro2::TokenTree::Group(g) => flatten(g.stream(), out),
                    t => out.push(t.to_string()),
                }
            }
        }
        let mut tokens = Vec::new();
        flatten(m.tokens.clone(), &mut tokens);
        let mut i = 0;
        while i < tokens.len() {
            if tokens[i] == "crate" || tokens[i] == "super" {
                let mut path = vec![tokens[i].clone()];
                while i + 2 < tokens.len() && tokens[i + 1] == ":" && tokens[i + 2] == ":" {
                    // `::` arrives as two puncts, then the next ident.
                    if let Some(next) = tokens.get(i + 3) {
                        path.push(next.clone());
                    }
                    i += 3;
                }
                self.paths.push((self.scope.clone(), path));
            }
            i += 1;
        }
        syn::visit::visit_macro(self, m);
    }
}

/// The module a path names (in a module at `scope`): the longest known module prefix of it,
/// following re-exports. `None` for paths outside the crate or within the module itself.
fn resolve(
    modules: &BTreeMap<Vec<String>, PathBuf>,
    names: &BTreeMap<Vec<String>, Names>,
    scope: &[String],
    path: &[String],
    depth: usize,
) -> Option<Vec<String>> {
    let first = path.first()?;
    let mut full: Vec<String> = match first.as_str() {
        "crate" => path[1..].to_vec(),
        "self" | "super" => {
            let mut base = scope.to_vec();
            let mut rest = path;
            while let Some(s) = rest.first() {
                match s.as_str() {
                    "self" => {}
                    "super" => {
                        base.pop();
                    }
                    _ => break,
                }
                rest = &rest[1..];
            }
            base.extend_from_slice(rest);
            base
        }
        child => {
            let mut candidate = scope.to_vec();
            candidate.push(child.to_string());
            if !modules.contains_key(&candidate) {
                return None; // another crate, or an item of this module
            }
            let mut full = scope.to_vec();
            full.extend_from_slice(path);
            full
        }
    };
    let mut n = full.len();
    while !modules.contains_key(&full[..n]) {
        n -= 1;
    }
    let module = full[..n].to_vec();
    // `crate::Thing` where the root only re-exports `thing::Thing`: the edge goes to `thing`.
    if let (Some(item), Some(found)) = (full.get(n), names.get(&module))
        && let Some((at, target)) = found.reexports.get(item)
    {
        if depth >= 8 {
            return None;
        }
        let mut scope = module.clone();
        scope.extend_from_slice(at);
        // A re-export of another crate (`pub use stowage_ledger as ledger`) is no edge.
        return resolve(modules, names, &scope, target, depth + 1);
    }
    full.truncate(n);
    Some(full)
}

/// The circles among a crate's modules (strongly connected parts of its import graph).
fn circles(graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Vec<Vec<String>> {
    struct Tarjan<'g> {
        graph: &'g BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        index: BTreeMap<&'g Vec<String>, (usize, usize)>,
        stack: Vec<&'g Vec<String>>,
        next: usize,
        found: Vec<Vec<String>>,
    }
    impl<'g> Tarjan<'g> {
        fn visit(&mut self, v: &'g Vec<String>) {
            self.index.insert(v, (self.next, self.next));
            self.next += 1;
            self.stack.push(v);
            for w in &self.graph[v] {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.index[w].1.min(self.index[v].1);
                    self.index.get_mut(v).unwrap().1 = low;
                } else if self.stack.contains(&w) {
                    let low = self.index[w].0.min(self.index[v].1);
                    self.index.get_mut(v).unwrap().1 = low;
                }
            }
            if self.index[v].0 == self.index[v].1 {
                let mut part = Vec::new();
                while let Some(w) = self.stack.pop() {
                    part.push(if w.is_empty() { "crate".to_string() } else { w.join("::") });
                    if w == v {
                        break;
                    }
                }
                if part.len() > 1 {
                    part.sort();
                    self.found.push(part);
                }
            }
        }
    }
    let mut t = Tarjan { graph, index: BTreeMap::new(), stack: Vec::new(), next: 0, found: Vec::new() };
    for v in graph.keys() {
        if !t.index.contains_key(v) {
            t.visit(v);
        }
    }
    t.found.sort();
    t.found
}

/// Each crate's import graph: module → the modules it names.
fn import_graph(src: &Path) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let modules = crate_modules(src);
    let mut names = BTreeMap::new();
    for (module, file) in &modules {
        let text = std::fs::read_to_string(file).unwrap();
        let parsed = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let mut found = Names::default();
        syn::visit::Visit::visit_file(&mut found, &parsed);
        names.insert(module.clone(), found);
    }
    let mut graph = BTreeMap::new();
    for (module, found) in &names {
        let mut to = BTreeSet::new();
        for (at, path) in found.uses.iter().chain(&found.paths) {
            let mut scope = module.clone();
            scope.extend_from_slice(at);
            // Parent and child count as any two modules: a child naming its parent's items
            // while the parent names the child's is a circle too.
            if let Some(target) = resolve(&modules, &names, &scope, path, 0).filter(|t| t != module) {
                to.insert(target);
            }
        }
        graph.insert(module.clone(), to);
    }
    graph
}

/// Circles that are known and being taken apart (issue 15): this list may only shrink. A
/// circle that grows, a new one, or one that is gone while still listed fails the test. Each
/// entry is a crate's directory and its circle's modules, sorted (`crate` for the root), e.g.
/// `("host/server", &["auth", "crate", "state"])`. None is left.
const KNOWN_CIRCLES: &[(&str, &[&str])] = &[];

#[test]
fn no_crate_has_modules_that_import_each_other_in_a_circle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut crates = Vec::new();
    for top in ["host", "plugins", "tests"] {
        for entry in std::fs::read_dir(root.join(top)).unwrap().flatten() {
            let dir = entry.path();
            if dir.join("Cargo.toml").is_file() && dir.join("src").is_dir() {
                crates.push(dir);
            }
        }
    }
    crates.push(root.join("tests"));
    assert!(crates.len() > 10, "found only {} crates", crates.len());
    let mut found = Vec::new();
    let mut edges = Vec::new();
    for dir in &crates {
        let name = dir.strip_prefix(&root).unwrap().display().to_string();
        let graph = import_graph(&dir.join("src"));
        for circle in circles(&graph) {
            let shown = |m: &Vec<String>| if m.is_empty() { "crate".to_string() } else { m.join("::") };
            for (from, to) in &graph {
                for t in to.iter().filter(|t| circle.contains(&shown(t)) && circle.contains(&shown(from))) {
                    edges.push(format!("  {name}: {} -> {}", shown(from), shown(t)));
                }
            }
            found.push(format!("{name}: {}", circle.join(", ")));
        }
    }
    let known: Vec<String> =
        KNOWN_CIRCLES.iter().map(|(name, modules)| format!("{name}: {}", modules.join(", "))).collect();
    assert_eq!(
        found,
        known,
        "module circles (each line: modules that import each other in a circle); their imports:\n{}",
        edges.join("\n")
    );
}

#[test]
fn the_circle_check_sees_a_circle() {
    // A crate of three modules: a → b → c → a, and d → a (not in the circle).
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("c")).unwrap();
    std::fs::write(src.join("lib.rs"), "mod a; mod b; mod c; mod d;\npub use a::A;\n").unwrap();
    std::fs::write(src.join("a.rs"), "use crate::b::B;\npub struct A;\n").unwrap();
    std::fs::write(src.join("b.rs"), "pub struct B(crate::c::C);\n").unwrap();
    // c names the root's A inside a group inside a macro; its test module names d, which would
    // pull d into the circle if test code counted.
    std::fs::write(
        src.join("c/mod.rs"),
        "pub struct C;\nfn f() { let _ = format!(\"{:?}\", Some(crate::A)); }\n#[cfg(test)]\nmod tests { use crate::d::D; }\n",
    )
    .unwrap();
    std::fs::write(src.join("d.rs"), "use super::A;\npub struct D;\n").unwrap();
    let graph = import_graph(&src);
    assert_eq!(
        graph[&vec!["d".to_string()]],
        BTreeSet::from([vec!["a".to_string()]]),
        "d → a, through the root's re-export"
    );
    assert_eq!(circles(&graph), vec![vec!["a".to_string(), "b".to_string(), "c".to_string()]]);
}
