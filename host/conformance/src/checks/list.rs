//! Listings: prefixes, order, pagination.

use crate::ensure;
use crate::harness::Harness;

pub(crate) async fn prefix(h: &Harness) -> Result<(), String> {
    for name in ["a/1", "a/2", "a/b/3", "ab/4", "b/5"] {
        h.put(name, name.as_bytes()).await?;
    }
    let list = |p: String| async move {
        h.disk
            .list(&h.ctx, &p, None, 1000)
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
    let sizes = h.disk.list(&h.ctx, &h.path("b/"), None, 10).await.map_err(|e| format!("list: {e}"))?;
    ensure!(sizes.items.first().map(|i| i.size) == Some(3), "list item size is {:?}", sizes.items.first().map(|i| i.size));
    Ok(())
}

pub(crate) async fn pagination(h: &Harness) -> Result<(), String> {
    let mut names: Vec<String> = (0..25).map(|i| format!("p/{i:03}")).collect();
    for n in &names {
        h.put(n, b"x").await?;
    }
    names.sort();
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for page_no in 0..10 {
        let page = h
            .disk
            .list(&h.ctx, &h.path("p/"), cursor.as_deref(), 10)
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
    ensure!(seen == want, "pages gave {} items {:?}, want the 25 in order", seen.len(), seen);
    Ok(())
}
