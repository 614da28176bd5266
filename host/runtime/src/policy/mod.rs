//! The policy pipeline: before an operation reaches a driver, every configured policy is asked
//! in order (the first deny wins); after it, every policy is told the outcome. Policies never
//! see object bytes and never call drivers. A policy that traps or times out denies (fail
//! closed), and its instance is replaced.
//!
//! Each policy declares once which operations it checks and which it observes
//! (`interests`); the host calls it for nothing else, so a policy that only records writes
//! costs nothing on a `stat`.
//!
//! Observing has two phases: `before` an operation takes effect (a write's bytes have
//! arrived, a delete has not reached the driver, a read has not sent a byte) and `after` it.
//! What a policy appends to the ledger during `before` is a write-ahead record, stamped with
//! the effect about to happen. For a policy marked `required` (phi-tracking, by default), a
//! call that traps or an append that fails makes the operation fail closed
//! (`StorageError::AuditUnavailable`), unless the host runs with `[ledger] on_failure = "log"`
//! (testing only).

use std::sync::Arc;

use wasmtime::component::Component;

use crate::bindings::policy::{Policy as PolicyBindings, PolicyPre};
use crate::bindings::wit_policy;
use crate::convert;
use crate::engine::{Limits, PluginEngine};
use crate::error::StorageError;
use crate::ledger::{Intent, Record};
use crate::plugin::LoadError;
use crate::pool::{Pool, Prelinked};
use crate::state::{Grants, PluginState, PolicyGrants};

pub(crate) mod types;
pub(crate) use types::CallAudit;
pub use types::{Audit, Decision, Interests, OperationOutcome, OperationRequest, Phase};

impl Prelinked for PolicyPre<PluginState> {
    type Bindings = PolicyBindings;
    type Exports = wit_policy::Guest;

    fn exports(bindings: &Self::Bindings) -> &Self::Exports {
        bindings.stowage_storage_policy_hooks()
    }

    fn engine(&self) -> &wasmtime::Engine {
        PolicyPre::engine(self)
    }

    fn instantiate(
        &self,
        store: &mut wasmtime::Store<PluginState>,
    ) -> impl Future<Output = wasmtime::Result<Self::Bindings>> + Send {
        self.instantiate_async(store)
    }
}

/// One loaded policy component.
#[derive(Clone)]
pub struct Policy {
    name: Arc<str>,
    pool: Arc<Pool<PolicyPre<PluginState>>>,
    interests: Arc<tokio::sync::OnceCell<Interests>>,
    required: bool,
}

impl Policy {
    /// Links a compiled policy component as policy `name`. `grants` carries its config values
    /// and the ledger; policies get no directory.
    pub fn from_component(
        engine: &PluginEngine,
        name: &str,
        component: &Component,
        grants: PolicyGrants,
        limits: Limits,
    ) -> Result<Policy, LoadError> {
        let link = |e: wasmtime::Error| LoadError::Link(format!("{e:#}"));
        let linker = crate::imports::policy_linker(engine.engine()).map_err(link)?;
        let pre = PolicyPre::new(linker.instantiate_pre(component).map_err(link)?).map_err(link)?;
        Ok(Policy {
            name: name.into(),
            pool: Arc::new(Pool::new(engine, name, pre, Grants::Policy(grants), limits)),
            interests: Arc::default(),
            required: false,
        })
    }

    /// The same policy, `required` or not: a required policy that cannot record an operation
    /// makes it fail.
    pub fn with_required(mut self, required: bool) -> Policy {
        self.required = required;
        self
    }

    /// Whether the host fails operations this policy cannot record.
    pub fn required(&self) -> bool {
        self.required
    }

    /// What the policy checks and observes, asked once. A policy that cannot answer is asked
    /// about everything (so a broken one still fails closed on `check`).
    pub async fn interests(&self) -> Interests {
        *self
            .interests
            .get_or_init(|| async {
                match self.declared_interests().await {
                    Ok(interests) => interests,
                    Err(e) => {
                        tracing::warn!(policy = %self.name, error = %e, "policy did not declare its interests; asking it about everything");
                        Interests::ALL
                    }
                }
            })
            .await
    }

    /// Asks the policy for its interests as the host starts, and keeps them. A policy that
    /// cannot answer does not start: `Err` says why, in the policy's own words when it logged
    /// an error before it failed (as a policy that refuses its config does).
    pub async fn ready(&self) -> Result<Interests, String> {
        match self.ask_interests().await {
            Ok(interests) => {
                // Asked twice at once, the first answer is kept: the same one.
                let _ = self.interests.set(interests);
                Ok(interests)
            }
            Err((_, Some(said))) => Err(said),
            Err((e, None)) => Err(format!("it failed while declaring its interests: {e}")),
        }
    }

    /// Asks the policy for its interests (uncached); a fault is an error.
    pub async fn declared_interests(&self) -> Result<Interests, StorageError> {
        self.ask_interests().await.map_err(|(e, _)| e)
    }

    /// Asks the policy for its interests; a fault is an error, with the last error the policy
    /// logged during the call.
    async fn ask_interests(&self) -> Result<Interests, (StorageError, Option<String>)> {
        let mut lease = self.pool.lease().await.map_err(|e| (e, None))?;
        let (store, policy) = lease.begin().map_err(|e| (e, None))?;
        store.data_mut().take_last_error();
        let r = crate::pool::bounded(store.data().deadline, policy.call_interests(store)).await;
        let said = match &r {
            Ok(_) => None,
            Err(_) => lease.store().ok().and_then(|store| store.data_mut().take_last_error()),
        };
        let wit = lease.end_infallible(r).map_err(|e| (e, said))?;
        Ok(Interests {
            check: convert::operation_set_from_wit(wit.check),
            observe: convert::operation_set_from_wit(wit.observe),
            needs: convert::capabilities_from_wit(wit.needs),
        })
    }

    /// The policy's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Asks the policy; `Err(reason)` is a denial. A fault is a denial too.
    pub async fn check(&self, request: &OperationRequest) -> Result<(), String> {
        if !self.interests().await.check.contains(request.operation) {
            return Ok(());
        }
        match self.decide(request).await {
            Ok(Decision::Allow) => Ok(()),
            Ok(Decision::Deny(reason)) => Err(format!("policy `{}`: {reason}", self.name)),
            Err(e) => Err(format!("policy `{}` failed, so the operation is refused: {e}", self.name)),
        }
    }

    /// Calls the policy's `check` whatever its interests; a fault (trap, timeout) is an error.
    pub async fn decide(&self, request: &OperationRequest) -> Result<Decision, StorageError> {
        let mut lease = self.pool.lease().await?;
        let (store, policy) = lease.begin()?;
        let r =
            crate::pool::bounded(store.data().deadline, policy.call_check(store, &convert::request_to_wit(request)))
                .await;
        Ok(match lease.end_infallible(r)? {
            wit_policy::Decision::Allow => Decision::Allow,
            wit_policy::Decision::Deny(reason) => Decision::Deny(reason),
        })
    }

    /// Tells the policy of an outcome at `phase` (if it observes the operation); what it
    /// appended, or why it could not record.
    pub async fn observe(
        &self,
        outcome: &OperationOutcome,
        phase: Phase,
        intent: Option<&Intent>,
    ) -> Result<Vec<u64>, (Vec<u64>, String)> {
        if !self.interests().await.observe.contains(outcome.request.operation) {
            return Ok(Vec::new());
        }
        let audit =
            Arc::new(std::sync::Mutex::new(CallAudit { stamp: self.stamp(outcome, intent), ..CallAudit::default() }));
        let called = self.tell_with(outcome, phase, Some(audit.clone())).await;
        let audit = audit.lock().map(|mut a| (std::mem::take(&mut a.appended), a.failed.take())).unwrap_or_default();
        match (called, audit) {
            (Ok(()), (appended, None)) => Ok(appended),
            (Err(e), (appended, _)) => Err((appended, format!("policy `{}` failed while recording: {e}", self.name))),
            (Ok(()), (appended, Some(why))) => {
                Err((appended, format!("policy `{}` could not record: {why}", self.name)))
            }
        }
    }

    fn stamp(&self, outcome: &OperationOutcome, intent: Option<&Intent>) -> Record {
        let request = &outcome.request;
        Record {
            key: request.ctx.authenticated_as.clone(),
            purpose: request.ctx.metadata.iter().find(|(k, _)| k == "purpose").map(|(_, v)| v.clone()),
            policy: Some(self.name.to_string()),
            items: outcome.items.map(u64::from),
            expires_in_secs: request.expires_in_secs,
            url_id: outcome.url_id.clone(),
            intent: intent.cloned(),
            ..Record::default()
        }
    }

    /// Calls the policy's `observe` at `phase` whatever its interests; a fault is an error.
    pub async fn tell(&self, outcome: &OperationOutcome, phase: Phase) -> Result<(), StorageError> {
        self.tell_with(outcome, phase, None).await
    }

    async fn tell_with(
        &self,
        outcome: &OperationOutcome,
        phase: Phase,
        audit: Option<Arc<std::sync::Mutex<CallAudit>>>,
    ) -> Result<(), StorageError> {
        let mut lease = self.pool.lease().await?;
        let (store, policy) = lease.begin()?;
        store.data_mut().audit = audit;
        let r = crate::pool::bounded(
            store.data().deadline,
            policy.call_observe(&mut *store, &convert::outcome_to_wit(outcome, phase)),
        )
        .await;
        if let Ok(store) = lease.store() {
            store.data_mut().audit = None;
        }
        lease.end_infallible(r)
    }
}

/// The policies of a host, in config order.
#[derive(Clone, Default)]
pub struct Pipeline {
    policies: Vec<Policy>,
    /// `[ledger] on_failure = "log"` (testing only): a required policy that cannot record is
    /// logged, and the operation goes on.
    log_only: bool,
}

impl Pipeline {
    /// A pipeline of `policies`, asked in this order.
    pub fn new(policies: Vec<Policy>) -> Pipeline {
        Pipeline { policies, log_only: false }
    }

    /// The same pipeline, logging instead of failing when a required policy cannot record.
    pub fn log_only(mut self, log_only: bool) -> Pipeline {
        self.log_only = log_only;
        self
    }

    /// The policies, in order.
    pub fn policies(&self) -> &[Policy] {
        &self.policies
    }

    /// Asks every policy in order; the first deny wins.
    pub async fn check(&self, request: &OperationRequest) -> Result<(), StorageError> {
        for p in &self.policies {
            p.check(request).await.map_err(StorageError::Denied)?;
        }
        Ok(())
    }

    /// Tells every policy of the outcome at `phase` (a `before` call carries the effect about
    /// to happen, `intent`). Every policy is told, whatever another did; the audit fails when
    /// a required policy could not record.
    pub async fn observe(&self, outcome: &OperationOutcome, phase: Phase, intent: Option<&Intent>) -> Audit {
        let mut audit = Audit::default();
        for p in &self.policies {
            match p.observe(outcome, phase, intent).await {
                Ok(appended) => audit.appended.extend(appended),
                Err((appended, why)) => {
                    audit.appended.extend(appended);
                    if p.required && !self.log_only {
                        tracing::error!(policy = %p.name, error = %why, "a required policy could not record; the operation is refused");
                        audit.failure.get_or_insert(why);
                    } else {
                        tracing::error!(policy = %p.name, error = %why, "a policy could not record an operation");
                    }
                }
            }
        }
        audit
    }
}
