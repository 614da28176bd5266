//! Exports: every record matching a filter, streamed as CSV or as a JSON array, one record at
//! a time (a ledger of millions of records never sits in memory).

use std::io::Write;

use crate::{Entry, Ledger, LedgerError};

/// Which records to export.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// At or after this time (ms since the Unix epoch).
    pub since_ms: Option<u64>,
    /// Before this time (ms since the Unix epoch).
    pub until_ms: Option<u64>,
    /// Only this actor.
    pub actor: Option<String>,
    /// Only this cohort.
    pub cohort: Option<String>,
    /// Only paths starting with this.
    pub path_prefix: Option<String>,
}

impl Filter {
    /// Whether `e` passes.
    pub fn matches(&self, e: &Entry) -> bool {
        let r = &e.record;
        self.since_ms.is_none_or(|t| e.at_ms >= t)
            && self.until_ms.is_none_or(|t| e.at_ms < t)
            && self.actor.as_ref().is_none_or(|a| r.actor.as_ref() == Some(a))
            && self.cohort.as_ref().is_none_or(|c| r.cohort.as_ref() == Some(c))
            && self.path_prefix.as_ref().is_none_or(|p| r.path.starts_with(p.as_str()))
    }
}

/// An export format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A header row, then one row per record.
    Csv,
    /// One JSON array, one record object per line.
    Json,
}

/// The CSV columns, in order.
const COLUMNS: [&str; 22] = [
    "index",
    "time",
    "action",
    "disk",
    "class",
    "path",
    "actor",
    "key",
    "purpose",
    "cohort",
    "file_type",
    "size",
    "sha256",
    "items",
    "expires_in_secs",
    "url_id",
    "error",
    "cleanup_required",
    "cleanup_within_secs",
    "request_id",
    "policy",
    "settles",
];

/// Milliseconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC).
pub fn rfc3339_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil-from-days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z", rem / 3600, rem % 3600 / 60, rem % 60, ms % 1000)
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map(ToString::to_string).unwrap_or_default()
}

/// One record as a JSON object for exports.
pub fn entry_json(e: &Entry) -> serde_json::Value {
    let mut value = serde_json::to_value(&e.record).unwrap_or(serde_json::Value::Null);
    if let Some(map) = value.as_object_mut() {
        map.insert("index".into(), e.index.into());
        map.insert("time".into(), rfc3339_ms(e.at_ms).into());
        map.insert("at_ms".into(), e.at_ms.into());
    }
    value
}

/// Writes every record `filter` passes to `out` as `format`; returns how many.
pub fn export(ledger: &Ledger, filter: &Filter, format: Format, out: impl Write) -> Result<u64, LedgerError> {
    let out_err = |e: &dyn std::fmt::Display| LedgerError::Output(e.to_string());
    let mut n = 0u64;
    match format {
        Format::Csv => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record(COLUMNS).map_err(|e| out_err(&e))?;
            ledger.scan(0, |e| {
                if filter.matches(&e) {
                    let r = &e.record;
                    let settles = r.settles.iter().map(u64::to_string).collect::<Vec<_>>().join(" ");
                    w.write_record([
                        e.index.to_string(),
                        rfc3339_ms(e.at_ms),
                        r.action.clone(),
                        r.disk.clone(),
                        opt(&r.class),
                        r.path.clone(),
                        opt(&r.actor),
                        opt(&r.key),
                        opt(&r.purpose),
                        opt(&r.cohort),
                        opt(&r.file_type),
                        opt(&r.size),
                        opt(&r.sha256),
                        opt(&r.items),
                        opt(&r.expires_in_secs),
                        opt(&r.url_id),
                        opt(&r.error),
                        r.cleanup_required.to_string(),
                        opt(&r.cleanup_within_secs),
                        r.request_id.clone(),
                        opt(&r.policy),
                        settles,
                    ])
                    .map_err(|e| out_err(&e))?;
                    n += 1;
                }
                Ok(true)
            })?;
            w.flush().map_err(|e| out_err(&e))?;
        }
        Format::Json => {
            let mut w = std::io::BufWriter::with_capacity(1 << 16, out);
            w.write_all(b"[").map_err(|e| out_err(&e))?;
            ledger.scan(0, |e| {
                if filter.matches(&e) {
                    w.write_all(if n == 0 { b"\n" } else { b",\n" }).map_err(|e| out_err(&e))?;
                    serde_json::to_writer(&mut w, &entry_json(&e)).map_err(|e| out_err(&e))?;
                    n += 1;
                }
                Ok(true)
            })?;
            w.write_all(b"\n]\n").map_err(|e| out_err(&e))?;
            w.flush().map_err(|e| out_err(&e))?;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::tests::record;
    use crate::{LedgerOptions, Record};

    #[test]
    fn times_are_utc_rfc3339() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339_ms(1_796_256_000_000), "2026-12-03T00:00:00.000Z");
    }

    #[test]
    fn exports_filter_and_quote_and_are_valid_json() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::open(&dir.path().join("l.sqlite"), LedgerOptions::default()).unwrap();
        l.append_blocking(&Record {
            actor: Some("alice".into()),
            cohort: Some("VACS".into()),
            ..record("file_created", "subs/a,\"b\".csv")
        })
        .unwrap();
        l.append_blocking(&Record { actor: Some("bob".into()), ..record("file_accessed", "other/x") }).unwrap();
        let mut csv_out = Vec::new();
        let f = Filter { actor: Some("alice".into()), ..Filter::default() };
        assert_eq!(export(&l, &f, Format::Csv, &mut csv_out).unwrap(), 1);
        let text = String::from_utf8(csv_out).unwrap();
        assert!(text.starts_with("index,time,action,"), "{text}");
        assert!(text.contains(",\"subs/a,\"\"b\"\".csv\",alice,"), "{text}");
        let mut json_out = Vec::new();
        assert_eq!(
            export(
                &l,
                &Filter { path_prefix: Some("other/".into()), ..Filter::default() },
                Format::Json,
                &mut json_out
            )
            .unwrap(),
            1
        );
        let v: serde_json::Value = serde_json::from_slice(&json_out).unwrap();
        assert_eq!(v[0]["actor"], "bob");
        assert_eq!(v[0]["index"], 1);
        let mut empty = Vec::new();
        assert_eq!(
            export(&l, &Filter { cohort: Some("none".into()), ..Filter::default() }, Format::Json, &mut empty).unwrap(),
            0
        );
        assert_eq!(serde_json::from_slice::<serde_json::Value>(&empty).unwrap(), serde_json::json!([]));
    }
}
