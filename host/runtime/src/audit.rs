//! The host's own ledger records around a policy's: the outcome that settles a write-ahead
//! record, and test-only pause points that let a test kill the host between the steps of a
//! write.

use crate::error::StorageError;
use crate::ledger::{Effect, Intent, Ledger, Record};
use crate::policy::OperationRequest;

/// The effect `request` is about to have on its disk, announced by write-ahead records.
pub(crate) fn intent(
    op: Effect,
    request: &OperationRequest,
    size: Option<u64>,
    sha256: Option<String>,
    owner: &str,
) -> Intent {
    Intent { op, disk: request.ctx.disk.clone(), path: request.path.clone(), size, sha256, owner: owner.to_string() }
}

/// The host's record that settles the write-ahead records `intents` (none: nothing to settle),
/// whether the effect happened or not. Queued without waiting: the intents are durable
/// already, and if this one is lost in a crash, reconciling settles them again.
pub(crate) fn settle(
    ledger: &Ledger,
    request: &OperationRequest,
    intent: &Intent,
    intents: &[u64],
    result: Result<(), &StorageError>,
) {
    if intents.is_empty() {
        return;
    }
    ledger.append_nowait(&outcome(request, intent, intents, result.err().map(ToString::to_string), false));
}

/// An outcome record for `intent`.
pub(crate) fn outcome(
    request: &OperationRequest,
    intent: &Intent,
    intents: &[u64],
    error: Option<String>,
    reconciled: bool,
) -> Record {
    Record {
        action: intent.op.outcome_action(error.is_none()).to_string(),
        path: intent.path.clone(),
        disk: intent.disk.clone(),
        class: request.ctx.class.map(|c| c.as_str().to_string()),
        actor: request.ctx.actor.clone(),
        size: intent.size,
        sha256: intent.sha256.clone(),
        error,
        request_id: request.ctx.request_id.clone(),
        key: request.ctx.authenticated_as.clone(),
        settles: intents.to_vec(),
        reconciled,
        ..Record::default()
    }
}

/// A point in a write a test can stop the host at: with `STOWAGE_TEST_PAUSE=<point>` (debug
/// builds only), the host says `stowage-test: paused at <point>` on stderr and waits to be
/// killed.
pub(crate) async fn pause_point(point: &str) {
    #[cfg(debug_assertions)]
    if std::env::var("STOWAGE_TEST_PAUSE").is_ok_and(|p| p == point) {
        eprintln!("stowage-test: paused at {point}");
        tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
    }
    #[cfg(not(debug_assertions))]
    let _ = point;
}
