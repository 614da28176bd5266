//! Listings: prefixes, order, pagination.

use crate::ensure;
use crate::harness::{Harness, listing};

pub(crate) async fn prefix(h: &Harness) -> Result<(), String> {
    for name in ["a/1", "a/2", "a/b/3", "ab/4", "b/5"] {
        h.put(name, name.as_bytes()).await?;
    }
    let list = |p: String| async move {
        h.disk
            .list(&h.ctx, &listing(&p)?, None, 1000)
            .await
            .map(|page| page.items.into_iter().map(|i| i.path).collect::<Vec<_>>())
            .map_err(|e| format!("list {p}: {e}"))
    };
    let want = |names: &[&str]| names.iter().map(|n| h.path(n)).collect::<Vec<_>>();
    let got = list(h.path("a/")).await?;
    ensure!(got == want(&["a/1", "a/2", "a/b/3"]), "list a/ gave {got:?}");
    let got = list(h.path("a")).await?;
    ensure!(got == want(&["a/1", "a/2", "a/b/3", "ab/4"]), "list a gave {got:?}");
    let got = list(h.prefix()).await?;
    ensure!(got == want(&["a/1", "a/2", "a/b/3", "ab/4", "b/5"]), "list of everything gave {got:?}");
    let got = list(h.path("zzz")).await?;
    ensure!(got.is_empty(), "list of a prefix with no objects gave {got:?}");
    let sizes = h.disk.list(&h.ctx, &h.listing("b/")?, None, 10).await.map_err(|e| format!("list: {e}"))?;
    ensure!(
        sizes.items.first().map(|i| i.size) == Some(3),
        "list item size is {:?}",
        sizes.items.first().map(|i| i.size)
    );
    Ok(())
}

/// Byte order across directories: `a-b/x` < `a.txt` < `a/b.txt` (`-` < `.` < `/`), which a
/// walker that lists a directory's entries before its files' neighbours gets wrong.
pub(crate) async fn order(h: &Harness) -> Result<(), String> {
    let names = ["a-b/x", "a.txt", "a/b.txt", "a/b/c", "a0", "ab"];
    for name in names {
        h.put(name, name.as_bytes()).await?;
    }
    let want = |names: &[&str]| names.iter().map(|n| h.path(n)).collect::<Vec<_>>();
    let all = |p: String, limit: u32| async move {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..100 {
            let prefix = listing(&p)?;
            let page =
                h.disk.list(&h.ctx, &prefix, cursor.as_deref(), limit).await.map_err(|e| format!("list {p}: {e}"))?;
            out.extend(page.items.into_iter().map(|i| i.path));
            match page.next_cursor {
                Some(c) if h.caps.list_pagination => cursor = Some(c),
                _ => break,
            }
        }
        Ok::<_, String>(out)
    };
    let got = all(h.prefix(), 1000).await?;
    ensure!(got == want(&names), "list gave {got:?}, not byte order");
    if h.caps.list_pagination {
        let got = all(h.prefix(), 1).await?;
        ensure!(got == want(&names), "pages of one item gave {got:?}, not byte order");
    }
    let got = all(h.path("a/"), 1000).await?;
    ensure!(got == want(&["a/b.txt", "a/b/c"]), "list a/ gave {got:?}");
    let got = all(h.path("a."), 1000).await?;
    ensure!(got == want(&["a.txt"]), "list a. gave {got:?}");
    let got = all(h.path("a/b"), 1000).await?;
    ensure!(got == want(&["a/b.txt", "a/b/c"]), "list a/b gave {got:?}");
    Ok(())
}

pub(crate) async fn pagination(h: &Harness) -> Result<(), String> {
    let mut names: Vec<String> = (0..25).map(|i| format!("p/{i:03}")).collect();
    names.push("p/sub/1".into());
    for n in &names {
        h.put(n, b"x").await?;
    }
    // Neighbours of the directory: none may leak into its pages.
    for n in ["p.txt", "p-q/1", "pp"] {
        h.put(n, b"y").await?;
    }
    names.sort();
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for page_no in 0..10 {
        let page = h
            .disk
            .list(&h.ctx, &h.listing("p/")?, cursor.as_deref(), 10)
            .await
            .map_err(|e| format!("list page {page_no}: {e}"))?;
        ensure!(page.items.len() <= 10, "page {page_no} has {} items for limit 10", page.items.len());
        seen.extend(page.items.into_iter().map(|i| i.path));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let want: Vec<String> = names.iter().map(|n| h.path(n)).collect();
    ensure!(seen == want, "pages gave {} items {:?}, want the {} under p/ in order", seen.len(), seen, want.len());
    Ok(())
}
