//! `stowage ledger export` and `stowage ledger report access`: what a compliance officer
//! hands over. Both stream from the ledger; filters by time, actor, cohort and path.

use anyhow::Context as _;
use stowage_runtime::ledger::{AccessEvent, Filter, Format, Ledger, access_report};

/// Filters shared by export and reports.
#[derive(clap::Args)]
pub struct FilterArgs {
    /// Records at or after this time (RFC 3339, or a date: 2026-01-31).
    #[arg(long)]
    since: Option<String>,
    /// Records before this time.
    #[arg(long)]
    until: Option<String>,
    /// Only this actor.
    #[arg(long)]
    actor: Option<String>,
    /// Only this cohort.
    #[arg(long)]
    cohort: Option<String>,
    /// Only objects whose path starts with this.
    #[arg(long)]
    path_prefix: Option<String>,
}

/// `export` arguments.
#[derive(clap::Args)]
pub struct ExportArgs {
    /// csv or json.
    #[arg(long, default_value = "csv", value_parser = ["csv", "json"])]
    format: String,
    #[command(flatten)]
    filter: FilterArgs,
}

/// Reports.
#[derive(clap::Subcommand)]
pub enum Report {
    /// Who created, read, looked up, listed, shared (URL) and deleted what, and when: per
    /// object, then per person (a HIPAA accounting of disclosures: date, actor, key, action,
    /// object, purpose).
    Access {
        /// text (two tables), csv or json (one row per access).
        #[arg(long, default_value = "text", value_parser = ["text", "csv", "json"])]
        format: String,
        #[command(flatten)]
        filter: FilterArgs,
    },
}

/// A time flag: RFC 3339, a date (`2026-01-31`), or milliseconds since the Unix epoch.
pub fn parse_time(flag: &str, value: &str) -> anyhow::Result<u64> {
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return value.parse().with_context(|| format!("--{flag} {value}"));
    }
    let text = if value.len() == 10 { format!("{value}T00:00:00Z") } else { value.to_string() };
    let t = humantime::parse_rfc3339_weak(&text)
        .with_context(|| format!("--{flag} {value}: not a date or RFC 3339 time"))?;
    Ok(u64::try_from(t.duration_since(std::time::UNIX_EPOCH)?.as_millis())?)
}

impl FilterArgs {
    fn filter(self) -> anyhow::Result<Filter> {
        Ok(Filter {
            since_ms: self.since.as_deref().map(|v| parse_time("since", v)).transpose()?,
            until_ms: self.until.as_deref().map(|v| parse_time("until", v)).transpose()?,
            actor: self.actor,
            cohort: self.cohort,
            path_prefix: self.path_prefix,
        })
    }
}

/// Runs `export`.
pub fn export(ledger: &Ledger, args: ExportArgs) -> anyhow::Result<()> {
    let format = if args.format == "json" { Format::Json } else { Format::Csv };
    let out = std::io::stdout().lock();
    stowage_runtime::ledger::export(ledger, &args.filter.filter()?, format, out)?;
    Ok(())
}

fn time(ms: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms)).to_string()
}

/// One access as report columns: date, actor, key, action, object, purpose.
fn row(e: &AccessEvent) -> [String; 6] {
    let r = &e.entry.record;
    let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let mut action = e.kind.as_str().to_string();
    if e.pending {
        action += " (pending)";
    }
    if let Some(id) = &r.url_id {
        action += &format!(" url {id}");
    }
    let object = if r.path.is_empty() { format!("{}:", r.disk) } else { format!("{}:{}", r.disk, r.path) };
    [time(e.entry.at_ms), dash(&r.actor), dash(&r.key), action, object, dash(&r.purpose)]
}

/// Runs a report.
pub fn report(ledger: &Ledger, report: Report) -> anyhow::Result<()> {
    let Report::Access { format, filter } = report;
    let events = access_report(ledger, &filter.filter()?)?;
    let header = ["date", "actor", "key", "action", "object", "purpose"];
    match format.as_str() {
        "csv" => {
            let mut w = csv::Writer::from_writer(std::io::stdout().lock());
            w.write_record(header)?;
            for e in &events {
                w.write_record(row(e))?;
            }
            w.flush()?;
        }
        "json" => {
            let rows: Vec<serde_json::Value> = events
                .iter()
                .map(|e| {
                    let r = row(e);
                    serde_json::json!({ "date": r[0], "actor": r[1], "key": r[2], "action": e.kind.as_str(), "pending": e.pending,
                        "object": r[4], "purpose": r[5], "record": e.entry.index, "url_id": e.entry.record.url_id })
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&rows)?);
        }
        _ => {
            println!("Accesses by object ({} in all)", events.len());
            // Grouped under the object: when, what, by whom.
            print_grouped(&events, 4, |r| {
                format!("  {}  {:<10} by {} (key {}), purpose {}", r[0], r[3], r[1], r[2], r[5])
            });
            println!("\nAccesses by person");
            // Grouped under the person: when, what, which object.
            print_grouped(&events, 1, |r| {
                format!("  {}  {:<10} {} (key {}), purpose {}", r[0], r[3], r[4], r[2], r[5])
            });
        }
    }
    Ok(())
}

/// The events grouped under report column `by` (stable: in ledger order within a group), one
/// `line` each.
fn print_grouped(events: &[AccessEvent], by: usize, line: impl Fn(&[String; 6]) -> String) {
    let mut rows: Vec<(u64, [String; 6])> = events.iter().map(|e| (e.entry.index, row(e))).collect();
    rows.sort_by(|a, b| (&a.1[by], a.0).cmp(&(&b.1[by], b.0)));
    let mut last: Option<&str> = None;
    for (_, r) in &rows {
        if last != Some(r[by].as_str()) {
            println!("\n{}", r[by]);
            last = Some(&r[by]);
        }
        println!("{}", line(r));
    }
}
