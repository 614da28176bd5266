//! The policy pipeline: before an operation reaches a driver, every configured policy is asked
//! in order (the first deny wins); after it, every policy is told the outcome. Policies never
//! see object bytes and never call drivers. A policy that traps or times out denies (fail
//! closed), and its instance is replaced.
//!
//! Each policy declares once which operations it checks and which it observes
//! (`interests`); the host calls it for nothing else, so a policy that only records writes
//! costs nothing on a `stat`.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{Component, HasSelf};

use crate::bindings::policy::{Policy as PolicyBindings, PolicyPre};
use crate::bindings::{wit_ledger, wit_policy};
use crate::convert;
use crate::driver::LoadError;
use crate::engine::{Limits, PluginEngine};
use crate::error::StorageError;
use crate::pool::{Pool, Prelinked};
use crate::state::{Grants, PluginState};
use crate::types::{Capabilities, Metadata, Operation, OperationSet, RequestContext};

impl Prelinked for PolicyPre<PluginState> {
    type Bindings = PolicyBindings;

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

/// An operation about to run, as policies see it.
#[derive(Debug, Clone)]
pub struct OperationRequest {
    /// What.
    pub operation: Operation,
    /// Who, through which class and disk.
    pub ctx: RequestContext,
    /// The object path (or listing prefix).
    pub path: String,
    /// For writes: the content type to store.
    pub content_type: Option<String>,
    /// For writes: the user metadata to store.
    pub object_metadata: Metadata,
}

/// What happened.
#[derive(Debug, Clone)]
pub struct OperationOutcome {
    /// The request.
    pub request: OperationRequest,
    /// Bytes written or read.
    pub size: Option<u64>,
    /// sha256 measured by the host (writes) or known for the object (reads).
    pub sha256: Option<String>,
    /// How long it took.
    pub duration: Duration,
    /// The error, if it failed.
    pub error: Option<StorageError>,
}

/// Which operations a policy checks and observes, and what it needs from the disks it guards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interests {
    /// Operations the policy decides on; the others it allows without being asked.
    pub check: OperationSet,
    /// Operations whose outcome it is told.
    pub observe: OperationSet,
    /// Driver capabilities every disk must declare for this policy to work.
    pub needs: Capabilities,
}

impl Interests {
    /// Asked about everything, needing nothing: what the host assumes when a policy cannot say.
    pub const ALL: Interests = Interests {
        check: OperationSet::ALL,
        observe: OperationSet::ALL,
        needs: Capabilities::NONE,
    };
}

/// A policy's answer to `check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The operation may run.
    Allow,
    /// Refused, with the policy's reason.
    Deny(String),
}

/// One loaded policy component.
#[derive(Clone)]
pub struct Policy {
    name: Arc<str>,
    pool: Arc<Pool<PolicyPre<PluginState>>>,
    interests: Arc<tokio::sync::OnceCell<Interests>>,
}

impl Policy {
    /// Links a compiled policy component as policy `name`. `grants` carries its config values
    /// and the ledger; policies get no directory.
    pub fn from_component(
        engine: &PluginEngine,
        name: &str,
        component: &Component,
        grants: Grants,
        limits: Limits,
    ) -> Result<Policy, LoadError> {
        let world = |e: wasmtime::Error| LoadError::World(format!("{e:#}"));
        let mut linker = crate::state::plugin_linker(engine.engine()).map_err(world)?;
        wit_ledger::add_to_linker::<_, HasSelf<PluginState>>(&mut linker, |s| s).map_err(world)?;
        let pre = PolicyPre::new(linker.instantiate_pre(component).map_err(world)?).map_err(world)?;
        let grants = Grants { dir: None, outbound: None, ..grants };
        Ok(Policy {
            name: name.into(),
            pool: Arc::new(Pool::new(engine, name, pre, grants, limits)),
            interests: Arc::default(),
        })
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

    /// Asks the policy for its interests (uncached); a fault is an error.
    pub async fn declared_interests(&self) -> Result<Interests, StorageError> {
        let mut lease = self.pool.lease().await?;
        let (store, policy) = lease.enter(Duration::ZERO)?;
        let r = policy.stowage_storage_policy_hooks().call_interests(store).await;
        let wit = lease.end_infallible(r)?;
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
        let (store, policy) = lease.enter(Duration::ZERO)?;
        let r = policy
            .stowage_storage_policy_hooks()
            .call_check(store, &convert::request_to_wit(request))
            .await;
        Ok(match lease.end_infallible(r)? {
            wit_policy::Decision::Allow => Decision::Allow,
            wit_policy::Decision::Deny(reason) => Decision::Deny(reason),
        })
    }

    /// Tells the policy an outcome. Failures are logged (the operation already happened).
    pub async fn observe(&self, outcome: &OperationOutcome) {
        if !self.interests().await.observe.contains(outcome.request.operation) {
            return;
        }
        if let Err(e) = self.tell(outcome).await {
            tracing::error!(policy = %self.name, kind = e.kind(), "policy failed to record an outcome");
        }
    }

    /// Calls the policy's `observe` whatever its interests; a fault is an error.
    pub async fn tell(&self, outcome: &OperationOutcome) -> Result<(), StorageError> {
        let mut lease = self.pool.lease().await?;
        let (store, policy) = lease.enter(Duration::ZERO)?;
        let r = policy
            .stowage_storage_policy_hooks()
            .call_observe(store, &convert::outcome_to_wit(outcome))
            .await;
        lease.end_infallible(r)
    }
}

/// The policies of a host, in config order.
#[derive(Clone, Default)]
pub struct Pipeline {
    policies: Vec<Policy>,
}

impl Pipeline {
    /// A pipeline of `policies`, asked in this order.
    pub fn new(policies: Vec<Policy>) -> Pipeline {
        Pipeline { policies }
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

    /// Tells every policy the outcome.
    pub async fn observe(&self, outcome: &OperationOutcome) {
        for p in &self.policies {
            p.observe(outcome).await;
        }
    }
}
