//! The policy contract: what every policy component must do, whatever it decides. A policy
//! may allow or deny anything; it must answer (never trap or hang) for every operation it
//! declares it checks, on any input, take every outcome it declares it observes, and write
//! only ledger records the host accepts and can attribute to a request. Like the host, the
//! checks never call a policy for operations outside its declared interests.

use std::time::Duration;

use stowage_runtime::ledger::Ledger;
use stowage_runtime::policy::{Decision, Interests, OperationOutcome, OperationRequest, Phase, Policy};
use stowage_runtime::{Operation, OperationSet, RequestContext, Role, StorageClass, StorageError};

use crate::{Outcome, Report, ensure};

/// Runs the policy contract checks against `policy`, whose ledger appends go to `ledger`.
pub async fn run(policy: &Policy, ledger: &Ledger) -> Report {
    let mut report = Report::default();
    let interests = match interests(policy).await {
        Ok(interests) => interests,
        Err(why) => {
            report.results.push(("policy/interests", Outcome::Fail(why)));
            return report;
        }
    };
    report.results.push(("policy/interests", Outcome::Pass));
    // Every record a call appends must name that call's request.
    let mut ids = Calls { ledger, next: ledger.len().unwrap_or(0), wrong: None };
    let checks = interests.check;
    let outcome = |skip: bool, r: Result<(), String>| match (skip, r) {
        (true, _) => Outcome::Skip("the policy declares no operation to check".into()),
        (false, Ok(())) => Outcome::Pass,
        (false, Err(why)) => Outcome::Fail(why),
    };
    let r = answers_every_operation(policy, checks, &mut ids).await;
    report.results.push(("policy/answers-every-operation", outcome(checks.is_empty(), r)));
    let r = odd_input(policy, checks, &mut ids).await;
    report.results.push(("policy/odd-input", outcome(checks.is_empty(), r)));
    let r = observes_every_outcome(policy, interests.observe, &mut ids).await;
    report.results.push((
        "policy/observes-every-outcome",
        match (interests.observe.is_empty(), r) {
            (true, _) => Outcome::Skip("the policy declares no operation to observe".into()),
            (false, Ok(())) => Outcome::Pass,
            (false, Err(why)) => Outcome::Fail(why),
        },
    ));
    let r = records_accepted(ledger, ids.wrong.take());
    report.results.push(("policy/ledger-records-accepted", r.map_or_else(Outcome::Fail, |()| Outcome::Pass)));
    report
}

/// Follows the ledger across calls: each call's new records must carry its request id.
struct Calls<'l> {
    ledger: &'l Ledger,
    next: u64,
    wrong: Option<String>,
}

impl Calls<'_> {
    /// After a call for request `id`: checks the records it appended.
    fn called(&mut self, id: &str) {
        let mut found = Vec::new();
        let _ = self.ledger.scan(self.next, |e| {
            found.push(e);
            Ok(true)
        });
        for entry in found {
            self.next = entry.index + 1;
            let r = &entry.record;
            if self.wrong.is_some() {
                continue;
            }
            if r.action.trim().is_empty() {
                self.wrong = Some(format!("ledger record {} has no action", entry.index));
            } else if r.request_id != id {
                self.wrong = Some(format!(
                    "ledger record {} (`{}`) carries request id `{}`, but it was written while the policy was told of request `{id}`: records must say which request they are about",
                    entry.index, r.action, r.request_id
                ));
            }
        }
    }
}

async fn interests(policy: &Policy) -> Result<Interests, String> {
    let interests = policy.declared_interests().await.map_err(|e| format!("`interests` failed: {e}"))?;
    // Observing what you do not check is fine; both empty is a policy that does nothing.
    ensure!(
        !interests.check.is_empty() || !interests.observe.is_empty(),
        "`interests` declares no operation to check or observe: the policy would never be called"
    );
    Ok(interests)
}

/// A plain request context for `role`.
fn context(role: Role, request_id: String) -> RequestContext {
    RequestContext {
        role,
        class: Some(StorageClass::Default),
        disk: "conformance".into(),
        driver: "local-fs".into(),
        actor: Some("conformance".into()),
        authenticated_as: Some("conformance-key".into()),
        request_id,
        metadata: vec![("cohort".into(), "CONFORMANCE".into())],
    }
}

fn request(operation: Operation, ctx: RequestContext, path: &str) -> OperationRequest {
    OperationRequest {
        operation,
        ctx,
        path: path.into(),
        content_type: None,
        object_metadata: Vec::new(),
        expires_in_secs: None,
    }
}

async fn decide(policy: &Policy, r: &OperationRequest, what: &str) -> Result<Decision, String> {
    policy.decide(r).await.map_err(|e| format!("`check` on {} ({what}) failed instead of answering: {e}", r.operation))
}

async fn answers_every_operation(policy: &Policy, checks: OperationSet, ids: &mut Calls<'_>) -> Result<(), String> {
    for role in [Role::Web, Role::Services, Role::Testing] {
        for op in Operation::ALL.into_iter().filter(|op| checks.contains(*op)) {
            let id = format!("conformance-{role}-{op}");
            let r = request(op, context(role, id.clone()), "conformance/a.csv");
            decide(policy, &r, &format!("role {role}")).await?;
            ids.called(&id);
        }
    }
    Ok(())
}

async fn odd_input(policy: &Policy, checks: OperationSet, ids: &mut Calls<'_>) -> Result<(), String> {
    let base = || context(Role::Services, "conformance-odd".into());
    let long = "d/".repeat(511) + "f";
    let many: Vec<(String, String)> = (0..1000).map(|i| (format!("k{i}"), "v".repeat(i % 7))).collect();
    let cases: Vec<(&str, OperationRequest)> = vec![
        ("an empty path", request(Operation::List, base(), "")),
        ("a 1023-byte path", request(Operation::Put, base(), &long)),
        ("a unicode path", request(Operation::Put, base(), "données/患者/😀.csv")),
        ("a path with `..`", request(Operation::Get, base(), "../../etc/passwd")),
        ("no actor, class or metadata", {
            let ctx = RequestContext { actor: None, class: None, metadata: Vec::new(), ..base() };
            request(Operation::Put, ctx, "a")
        }),
        ("an empty request id and disk", {
            let ctx =
                RequestContext { request_id: String::new(), disk: String::new(), driver: String::new(), ..base() };
            request(Operation::Delete, ctx, "a")
        }),
        ("NUL and control characters in metadata", {
            let ctx = RequestContext { metadata: vec![("cohort".into(), "a\0b\u{1b}[31m".into())], ..base() };
            request(Operation::Put, ctx, "a")
        }),
        ("1000 metadata entries", {
            let mut r = request(Operation::Put, RequestContext { metadata: many.clone(), ..base() }, "a");
            r.object_metadata = many.clone();
            r
        }),
        ("a 64 KiB content type", {
            let mut r = request(Operation::Put, base(), "a");
            r.content_type = Some("x".repeat(64 * 1024));
            r
        }),
    ];
    for (what, mut r) in cases {
        // Each odd input on every operation the policy checks.
        for op in Operation::ALL.into_iter().filter(|op| checks.contains(*op)) {
            r.operation = op;
            decide(policy, &r, what).await?;
            ids.called(&r.ctx.request_id);
        }
    }
    Ok(())
}

/// Tells the policy a success and failures of every operation it observes.
async fn observes_every_outcome(policy: &Policy, observes: OperationSet, ids: &mut Calls<'_>) -> Result<(), String> {
    let failures = [
        StorageError::NotFound("conformance/a.csv".into()),
        StorageError::Denied("policy `other`: no".into()),
        StorageError::Unavailable { reason: "backend down".into(), retryable: true },
        StorageError::Io("disk full".into()),
    ];
    for op in Operation::ALL.into_iter().filter(|op| observes.contains(*op)) {
        let mut outcomes = Vec::new();
        let id = format!("conformance-observe-{op}-ok");
        let mut r = request(op, context(Role::Services, id.clone()), "conformance/a.csv");
        r.content_type = Some("text/csv".into());
        let ok = OperationOutcome {
            request: r.clone(),
            size: Some(42),
            sha256: Some("0".repeat(64)),
            duration: Duration::from_micros(120),
            error: None,
            items: (op == Operation::List).then_some(3),
            url_id: (op == Operation::Url).then(|| "0123456789abcdef".into()),
        };
        // Operations with an effect are told before it, then after.
        if matches!(op, Operation::Put | Operation::Delete | Operation::Get) {
            outcomes.push((Phase::Before, ok.clone()));
        }
        outcomes.push((Phase::After, ok));
        for (i, e) in failures.iter().enumerate() {
            let id = format!("conformance-observe-{op}-err{i}");
            let r = OperationRequest { ctx: context(Role::Services, id.clone()), ..r.clone() };
            outcomes.push((
                Phase::After,
                OperationOutcome {
                    error: Some(e.clone()),
                    size: None,
                    sha256: None,
                    items: None,
                    url_id: None,
                    duration: Duration::ZERO,
                    request: r,
                },
            ));
        }
        for (phase, o) in &outcomes {
            if let Err(e) = policy.tell(o, *phase).await {
                let what = o.error.as_ref().map_or("success".to_string(), |e| format!("failure `{e}`"));
                return Err(format!("`observe` ({phase:?}) of a {op} {what} failed: {e}"));
            }
            ids.called(&o.request.ctx.request_id);
        }
    }
    Ok(())
}

fn records_accepted(ledger: &Ledger, wrong: Option<String>) -> Result<(), String> {
    match ledger.verify(stowage_runtime::ledger::VerifyMode::Full) {
        Ok(Ok(_)) => {}
        Ok(Err(broken)) => return Err(format!("the ledger no longer verifies: {broken}")),
        Err(e) => return Err(format!("cannot read the ledger: {e}")),
    }
    wrong.map_or(Ok(()), Err)
}
