//! The policy pipeline and the PHI ledger, in one run. Prints costs against the same set-up
//! without policies; asserts nothing.
//!
//! `tests/run bench --bench policies` (`STOWAGE_BENCH_ONLY=pipeline|ledger|audit|languages`
//! runs one section; `STOWAGE_BENCH_RECORDS=N` sets the size of the audit section's ledger,
//! default 1,000,000; `STOWAGE_BENCH_OPS=N` sets the count of stats, for profiling; `STOWAGE_BENCH_DIR=/path`
//! chooses the disk, default: the workspace's target dir).
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a benchmark: a failed set-up ends it")]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use stowage_runtime::WriteOptions;
use stowage_tests::bench::{DEFAULT_SMALL_OPS, per_sec, section, small_op_count};

const ROUNDS: usize = 3;
/// Rounds of the pipeline section (puts are bound by a noisy disk: more rounds, paired).
const PIPELINE_ROUNDS: usize = 7;

fn main() {
    // The audit section measures an export's memory in a process of its own: this one, again.
    if let Some(path) = std::env::var_os(EXPORT_CHILD) {
        export_child(Path::new(&path));
        return;
    }
    let dir = stowage_tests::bench::work_dir();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    println!("stowage policy pipeline and ledger benchmark in {}", dir.path().display());
    rt.block_on(async {
        if section("pipeline") {
            pipeline(dir.path()).await;
        }
        if section("ledger") {
            ledger(dir.path()).await;
        }
        if section("audit") {
            audit(dir.path()).await;
        }
        if section("languages") {
            languages().await;
        }
    });
}

/// Per-operation cost of the policy pipeline (role-policy + phi-tracking with its ledger)
/// against the same disk with no policies, through the same `Storage` front door. Both
/// set-ups run in alternating rounds and the best round counts, so disk noise hits both alike.
async fn pipeline(base: &Path) {
    use stowage_runtime::{Address, ConfigSource, LoadedConfig, Request, Storage};
    const CONCURRENT: usize = 16;
    let n_ops = small_op_count();
    // Puts are bound by fsync; more of them only adds noise (and inodes).
    let puts = n_ops.min(DEFAULT_SMALL_OPS);
    let per_task = puts.div_ceil(CONCURRENT);
    let disk = "role = \"testing\"\n[disks.local]\nplugin = \"local-fs\"\ngrant = { dir = \"data\" }\n[storage]\ndefault = \"local\"\n";
    let policies = "[[policies]]\nplugin = \"role-policy\"\n[[policies]]\nplugin = \"phi-tracking\"\n";
    let setups: Vec<(&str, Arc<Storage>)> =
        [("no policies", disk.to_string()), ("2 policies + ledger", format!("{disk}{policies}"))]
            .into_iter()
            .map(|(name, text)| {
                let root = base.join(name.replace(' ', "-").replace('+', ""));
                std::fs::create_dir_all(&root).expect("dir");
                let config = LoadedConfig::parse(&text, ConfigSource::File(root.join("stowage.toml")), root.clone())
                    .expect("config");
                (name, Arc::new(Storage::start(&config).expect("start")))
            })
            .collect();
    let data = Bytes::from(vec![7u8; 4096]);
    let req = Request::new();
    async fn put(storage: &Storage, name: String, data: &Bytes, req: &Request) {
        let addr = Address::parse(&format!("default:{name}")).expect("addr");
        let mut w = storage.writer(&addr, req, &WriteOptions::default()).await.expect("writer");
        w.write(data.clone()).await.expect("write");
        w.finish().await.expect("finish");
    }
    // Best (sequential put, stat, concurrent put) per set-up.
    let mut best = vec![[Duration::MAX; 3]; setups.len()];
    let mut commits_per_put = Vec::new();
    // The disk's speed swings between rounds far more than between the two set-ups run back
    // to back: the ratio is taken per round (paired), and its median reported.
    let mut paired = Vec::new();
    for round in 0..PIPELINE_ROUNDS {
        let mut this_round = [Duration::ZERO; 2];
        for (((_, storage), best), took) in setups.iter().zip(&mut best).zip(&mut this_round) {
            let commits = storage.ledger().commits();
            let start = Instant::now();
            for i in 0..puts {
                put(storage, format!("p{round}/{i}"), &data, &req).await;
            }
            best[0] = best[0].min(start.elapsed());
            commits_per_put.push(storage.ledger().commits() - commits);
            let start = Instant::now();
            let writers: Vec<_> = (0..CONCURRENT)
                .map(|t| {
                    let (storage, data, req) = (storage.clone(), data.clone(), req.clone());
                    tokio::spawn(async move {
                        for i in 0..per_task {
                            put(&storage, format!("c{round}/{t}/{i}"), &data, &req).await;
                        }
                    })
                })
                .collect();
            for w in writers {
                w.await.expect("writer task");
            }
            *took = start.elapsed();
            best[2] = best[2].min(*took);
        }
        paired.push(this_round[0].as_secs_f64() / this_round[1].as_secs_f64());
    }
    paired.sort_by(f64::total_cmp);
    // Stats are a few microseconds: measure them in many short slices, alternating the
    // set-ups, and keep each one's best slice.
    const SLICES: usize = 20;
    let slice = n_ops.div_ceil(SLICES);
    for s in 0..SLICES {
        for ((_, storage), best) in setups.iter().zip(&mut best) {
            let start = Instant::now();
            for i in 0..slice {
                let addr = Address::parse(&format!("default:p{}/{}", s % PIPELINE_ROUNDS, (s * slice + i) % puts))
                    .expect("addr");
                std::hint::black_box(storage.stat(&addr, &req).await.expect("stat"));
            }
            best[1] = best[1].min(start.elapsed() * SLICES as u32);
        }
    }
    let n_ops = slice * SLICES;
    let us = |d: Duration, n: usize| d.as_secs_f64() * 1e6 / n as f64;
    println!(
        "\n== policy pipeline: 4 KiB puts ({puts} one at a time, {} from {CONCURRENT} writers) and stats ({n_ops}), best of {PIPELINE_ROUNDS}",
        per_task * CONCURRENT
    );
    for ((name, _), b) in setups.iter().zip(&best) {
        println!(
            "{name:<22} put {:>8.1} us/op   stat {:>6.1} us/op   concurrent put {:>8.0} ops/s",
            us(b[0], puts),
            us(b[1], n_ops),
            per_sec(per_task * CONCURRENT, b[2])
        );
    }
    // The pipeline alone, without the driver or the disk: check + observe of a stat, the
    // cleanest measure of what each policy adds.
    let (_, with_policies) = &setups[1];
    let request = stowage_runtime::policy::OperationRequest {
        operation: stowage_runtime::Operation::Stat,
        ctx: stowage_runtime::RequestContext {
            role: stowage_runtime::Role::Testing,
            class: Some(stowage_runtime::StorageClass::Default),
            disk: "local".into(),
            driver: "local-fs".into(),
            actor: Some("bench".into()),
            authenticated_as: Some("bench".into()),
            request_id: "r".into(),
            metadata: vec![("cohort".into(), "VACS".into())],
        },
        path: "p0/0".into(),
        content_type: None,
        object_metadata: vec![],
        expires_in_secs: None,
    };
    let outcome = stowage_runtime::policy::OperationOutcome {
        size: Some(4096),
        ..stowage_runtime::policy::OperationOutcome::of(request.clone(), Instant::now())
    };
    let mut alone = Duration::MAX;
    for _ in 0..SLICES {
        let start = Instant::now();
        for _ in 0..slice {
            with_policies.pipeline().check(&request).await.expect("allowed");
            with_policies.pipeline().observe(&outcome, stowage_runtime::policy::Phase::After, None).await;
        }
        alone = alone.min(start.elapsed() * SLICES as u32);
    }
    // Divide by the policy calls a stat or a put really makes (interests decide who is asked).
    let calls = |op: stowage_runtime::Operation, phases: usize| {
        let mut n = 0;
        for p in with_policies.pipeline().policies() {
            let i = futures::executor::block_on(p.interests());
            n += usize::from(i.check.contains(op)) + phases * usize::from(i.observe.contains(op));
        }
        n.max(1)
    };
    let (stat_calls, put_calls) =
        (calls(stowage_runtime::Operation::Stat, 1), calls(stowage_runtime::Operation::Put, 2));
    let extra = |i: usize, n: usize| us(best[1][i], n) - us(best[0][i], n);
    println!(
        "overhead per policy call: put {:.1} us ({put_calls} calls, with the durable write-ahead record), stat {:.1} us ({stat_calls} calls)",
        extra(0, puts) / put_calls as f64,
        extra(1, n_ops) / stat_calls as f64,
    );
    println!(
        "concurrent puts with policies at {:.2}x the rate without (median of {PIPELINE_ROUNDS} paired rounds; range {:.2}x-{:.2}x; best against best {:.2}x)",
        paired[paired.len() / 2],
        paired[0],
        paired[paired.len() - 1],
        best[0][2].as_secs_f64() / best[1][2].as_secs_f64()
    );
    let with = &commits_per_put[1..].iter().step_by(2).copied().collect::<Vec<_>>();
    println!(
        "ledger commits per sequential put with policies: {:.2} (the write-ahead record waits for its commit; the outcome rides on the next one)",
        with.iter().sum::<u64>() as f64 / (with.len() * puts) as f64
    );
    println!(
        "the pipeline alone (check + observe of a stat, no driver): {:.2} us per policy call ({stat_calls} calls)",
        us(alone, n_ops) / stat_calls as f64
    );
}

/// The ledger alone: durable appends one at a time, then from many tasks at once (group
/// commit shares one WAL fsync among the appends that queue up while a commit runs).
async fn ledger(base: &Path) {
    use stowage_runtime::ledger::Ledger;
    const N: usize = 512;
    const TASKS: usize = 64;
    let ledger = Arc::new(Ledger::open(&base.join("bench-ledger.sqlite"), Default::default()).expect("ledger"));
    let start = Instant::now();
    for i in 0..N {
        ledger.append(&record(i)).await.expect("append");
    }
    let sequential = start.elapsed();
    // The same with a signed checkpoint after every record: signing and storing them is the
    // checkpointer thread's work, not the append's.
    let signing =
        Ledger::open(&base.join("bench-signing.sqlite"), checkpointed(base, "bench-signing", 1)).expect("ledger");
    let start = Instant::now();
    for i in 0..N {
        signing.append(&record(i)).await.expect("append");
    }
    let with_checkpoints = start.elapsed();
    drop(signing);
    let start = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let ledger = ledger.clone();
            tokio::spawn(async move {
                for i in 0..N / TASKS {
                    ledger.append(&record(t * N + i)).await.expect("append");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    let concurrent = start.elapsed();
    assert_eq!(
        ledger.verify(stowage_runtime::ledger::VerifyMode::Full).expect("verify").expect("intact").count,
        2 * N as u64
    );
    println!("\n== ledger appends (durable), {N} each");
    println!(
        "one at a time   {:>8.1} us/append {:>8.0} appends/s",
        sequential.as_secs_f64() * 1e6 / N as f64,
        per_sec(N, sequential)
    );
    println!(
        "{TASKS} tasks        {:>8.1} us/append {:>8.0} appends/s  ({:.1}x, group commit)",
        concurrent.as_secs_f64() * 1e6 / N as f64,
        per_sec(N, concurrent),
        sequential.as_secs_f64() / concurrent.as_secs_f64()
    );
    println!(
        "one at a time, a signed checkpoint after each: {:>8.1} us/append ({:.2}x the time without: signing is off the append's path)",
        with_checkpoints.as_secs_f64() * 1e6 / N as f64,
        with_checkpoints.as_secs_f64() / sequential.as_secs_f64()
    );
}

/// A record like phi-tracking's.
fn record(i: usize) -> stowage_runtime::ledger::Record {
    stowage_runtime::ledger::Record {
        action: "file_accessed".into(),
        path: format!("subs/VACS/2026/patient/p{i}.csv"),
        disk: "local".into(),
        class: Some("submission".into()),
        actor: Some(format!("user{}", i % 50)),
        cohort: Some(format!("C{}", i % 7)),
        size: Some(4096),
        sha256: Some("0".repeat(64)),
        request_id: format!("r{i}"),
        key: Some("web-1".into()),
        policy: Some("phi-tracking".into()),
        ..Default::default()
    }
}

/// Ledger options with checkpoints every `every` records, files under `base`.
fn checkpointed(base: &Path, name: &str, every: u64) -> stowage_runtime::ledger::LedgerOptions {
    stowage_runtime::ledger::LedgerOptions {
        checkpoints: Some(stowage_runtime::ledger::CheckpointPolicy {
            origin: "bench".into(),
            every_records: every,
            every_secs: 3600,
            file: base.join(format!("{name}.checkpoints")),
            key_file: base.join(format!("{name}.key")),
        }),
        ..Default::default()
    }
}

const EXPORT_CHILD: &str = "STOWAGE_BENCH_EXPORT_CHILD";

/// In the child: exports the ledger at `path` as CSV to nowhere; prints records and seconds.
fn export_child(path: &Path) {
    use stowage_runtime::ledger::{Filter, Format, Ledger, export};
    let ledger = Ledger::open(path, Default::default()).expect("ledger");
    let start = Instant::now();
    let n = export(&ledger, &Filter::default(), Format::Csv, std::io::sink()).expect("export");
    println!("{n} {}", start.elapsed().as_secs_f64());
}

/// The audit ledger at scale: export of a large ledger (rate, and peak memory in a process of
/// its own), an inclusion proof, incremental against full verification.
async fn audit(base: &Path) {
    use stowage_runtime::ledger::{Ledger, VerifyMode};
    let n: usize = std::env::var("STOWAGE_BENCH_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let path = base.join("audit-ledger.sqlite");
    let ledger = Ledger::open(&path, checkpointed(base, "audit", u64::MAX)).expect("ledger");
    let start = Instant::now();
    for i in 0..n - 1 {
        ledger.append_nowait(&record(i));
    }
    ledger.append(&record(n - 1)).await.expect("append");
    let filled = start.elapsed();
    let checkpoint = ledger.checkpoint_now().expect("checkpoint");
    println!(
        "
== the audit ledger at {n} records (filled in {:.1} s, {:.0} records/s, group-committed)",
        filled.as_secs_f64(),
        per_sec(n, filled)
    );

    // Export, in a process of its own so its peak memory is its own.
    let mut child = std::process::Command::new(std::env::current_exe().expect("this bench"));
    child.env(EXPORT_CHILD, &path);
    let (status, peak) = stowage_tests::run_with_peak_rss(&child);
    assert!(status.success(), "the export child failed");
    let out = std::process::Command::new(std::env::current_exe().expect("this bench"))
        .env(EXPORT_CHILD, &path)
        .output()
        .expect("export child");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text.split_whitespace();
    let (count, secs): (usize, f64) = (
        parts.next().and_then(|v| v.parse().ok()).unwrap_or(0),
        parts.next().and_then(|v| v.parse().ok()).unwrap_or(f64::NAN),
    );
    println!(
        "export (CSV)        {count} records in {secs:.2} s: {:.0} records/s, peak RSS {:.0} MiB (goal: >= 200k/s, < 100 MiB)",
        count as f64 / secs,
        peak as f64 / (1 << 20) as f64
    );

    // An inclusion proof against the checkpoint of everything.
    let mut worst = Duration::ZERO;
    let mut total = Duration::ZERO;
    const PROOFS: usize = 200;
    for k in 0..PROOFS {
        let index = (k * 7919 * 104_729) % n;
        let start = Instant::now();
        let proof = ledger.prove(index as u64).expect("proof");
        let took = start.elapsed();
        std::hint::black_box(proof);
        worst = worst.max(took);
        total += took;
    }
    println!(
        "inclusion proof     {:.2} ms each on average, {:.2} ms at worst, of {PROOFS} (tree of {}; goal: < 10 ms)",
        total.as_secs_f64() * 1e3 / PROOFS as f64,
        worst.as_secs_f64() * 1e3,
        checkpoint.checkpoint.size
    );

    // Verification: full, then incremental from the checkpoint with a few and with more new
    // records.
    let start = Instant::now();
    let full = ledger.verify(VerifyMode::Full).expect("verify").expect("intact");
    let full_time = start.elapsed();
    println!("verify, full        {} records in {:.2} s", full.count, full_time.as_secs_f64());
    for new in [1_000usize, 10_000] {
        let before = ledger.len().expect("len");
        ledger.checkpoint_now().expect("checkpoint");
        for i in 0..new - 1 {
            ledger.append_nowait(&record(i));
        }
        ledger.append(&record(new)).await.expect("append");
        let start = Instant::now();
        let v = ledger.verify(VerifyMode::Incremental).expect("verify").expect("intact");
        let took = start.elapsed();
        assert_eq!(v.from, before, "incremental from the checkpoint");
        println!(
            "verify, incremental {} new records in {:.1} ms ({:.1} us per new record; the full walk: {:.1} us per record)",
            v.count - v.from,
            took.as_secs_f64() * 1e3,
            took.as_secs_f64() * 1e6 / (v.count - v.from) as f64,
            full_time.as_secs_f64() * 1e6 / full.count as f64
        );
    }
}

/// The same decision (a write needs a cohort) made by a Rust policy (the test-policy fixture)
/// and by the Python one (plugins/require-cohort), called directly: what a policy's language
/// costs per `check`, and once at start-up (compiling the component).
async fn languages() {
    use stowage_runtime::config::PluginSource;
    use stowage_runtime::plugin::{PluginLoader, TrustPolicy};
    use stowage_runtime::policy::{Decision, OperationRequest, Policy};
    use stowage_runtime::{Limits, Operation, PluginEngine, PolicyGrants, RequestContext, Role, StorageClass};
    const CALLS: usize = 20_000;
    let engine = PluginEngine::new().expect("engine");
    // No cache: the compile time is part of what is measured.
    let loader = PluginLoader::new(&engine, TrustPolicy::default(), None);
    let rust = (stowage_tests::fixture("test_policy"), vec![("mode".to_string(), "require-cohort".to_string())]);
    let python = (stowage_tests::require_cohort_policy().to_path_buf(), vec![("classes".to_string(), "*".to_string())]);
    let request = OperationRequest {
        operation: Operation::Put,
        ctx: RequestContext {
            role: Role::Services,
            class: Some(StorageClass::Submission),
            disk: "local".into(),
            driver: "local-fs".into(),
            actor: Some("bench".into()),
            authenticated_as: None,
            request_id: "bench".into(),
            metadata: vec![("cohort".into(), "VACS".into())],
        },
        path: "cohort/file.csv".into(),
        content_type: Some("text/csv".into()),
        object_metadata: Vec::new(),
        expires_in_secs: None,
    };
    println!("\n== policy languages: the same check in Rust and in Python, {CALLS} calls, best of {ROUNDS}");
    let mut per_call = Vec::new();
    for (name, (path, config)) in [("rust", rust), ("python", python)] {
        let size = std::fs::metadata(&path).expect("component").len();
        let start = Instant::now();
        let (loaded, _) = loader.load_unverified(&PluginSource::File(path)).expect("loads");
        let compile = start.elapsed();
        let grants = PolicyGrants { config, ..PolicyGrants::default() };
        let policy =
            Policy::from_component(&engine, name, &loaded.component, grants, Limits::default()).expect("links");
        let start = Instant::now();
        assert_eq!(policy.decide(&request).await.expect("first check"), Decision::Allow, "{name} denied");
        let first = start.elapsed();
        let mut best = Duration::MAX;
        for _ in 0..ROUNDS {
            let start = Instant::now();
            for _ in 0..CALLS {
                policy.decide(&request).await.expect("check");
            }
            best = best.min(start.elapsed());
        }
        let us = best.as_secs_f64() * 1e6 / CALLS as f64;
        println!(
            "{name:>6}: {:.1} MB component, compile {:.2} s, first check (instantiate) {:.1} ms, then {us:.2} us per check",
            size as f64 / 1e6,
            compile.as_secs_f64(),
            first.as_secs_f64() * 1e3
        );
        per_call.push(us);
    }
    println!("python / rust per check: {:.1}x", per_call[1] / per_call[0]);
}
