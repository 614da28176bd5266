//! A pool of instances of one plugin component (a driver or a policy).
//!
//! One `Store` runs one call at a time, so each operation leases an instance for its whole
//! duration (a streaming write holds its instance until `finish`). Idle instances are reused;
//! a new one is made from the pre-linked component when none is idle, up to
//! `Limits::max_instances` (further callers wait). An instance whose plugin trapped, timed out
//! or ran out of memory is dropped, never reused: the next lease gets a fresh one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::{Store, Trap, UpdateDeadline};

use crate::bindings::wit;
use crate::convert::error_from_wit;
use crate::engine::{Limits, PluginEngine};
use crate::error::{FaultKind, StorageError};
use crate::state::{Grants, MemoryLimitExceeded, PluginState};

/// A component linked against the host, ready to instantiate (`DriverPre`, `PolicyPre`).
pub(crate) trait Prelinked: Send + Sync + 'static {
    /// The generated bindings of one instance.
    type Bindings: Send + Sync + 'static;
    /// The engine it was linked for.
    fn engine(&self) -> &wasmtime::Engine;
    /// Instantiates it in `store`.
    fn instantiate(
        &self,
        store: &mut Store<PluginState>,
    ) -> impl Future<Output = wasmtime::Result<Self::Bindings>> + Send;
}

/// One live instance.
pub(crate) struct Instance<B> {
    pub(crate) store: Store<PluginState>,
    bindings: B,
}

/// The instances of one plugin (named after the disk or policy it serves).
pub(crate) struct Pool<P: Prelinked> {
    disk: Arc<str>,
    // Keeps the epoch ticker running as long as the pool exists: deadlines depend on it.
    _engine: PluginEngine,
    pre: P,
    grants: Arc<Grants>,
    limits: Limits,
    idle: Mutex<Vec<Instance<P::Bindings>>>,
    permits: Arc<Semaphore>,
    restarts: AtomicU64,
    /// Clean-ups running in the background (an abort after a dropped writer, say), and a
    /// wake-up when the last ends.
    cleanups: Arc<(std::sync::atomic::AtomicUsize, tokio::sync::Notify)>,
    /// Calls into an instance running now.
    calls: std::sync::atomic::AtomicUsize,
}

impl<P: Prelinked> Pool<P> {
    pub(crate) fn new(engine: &PluginEngine, disk: &str, pre: P, grants: Grants, limits: Limits) -> Self {
        Pool {
            disk: disk.into(),
            _engine: engine.clone(),
            pre,
            grants: Arc::new(grants),
            limits,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(limits.max_instances.max(1))),
            restarts: AtomicU64::new(0),
            cleanups: Arc::default(),
            calls: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// The disk this pool serves.
    pub(crate) fn disk(&self) -> &str {
        &self.disk
    }

    /// How many instances were thrown away after a fault.
    pub(crate) fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// Calls into its instances running now.
    pub(crate) fn calls_in_progress(&self) -> usize {
        self.calls.load(Ordering::Acquire)
    }

    /// The grants its instances get.
    pub(crate) fn grants(&self) -> &Grants {
        &self.grants
    }

    /// Waits until no background clean-up runs (bounded by `limit`); whether none does.
    pub(crate) async fn settled(&self, limit: Duration) -> bool {
        let (count, done) = &*self.cleanups;
        let wait = async {
            loop {
                let notified = done.notified();
                if count.load(Ordering::Acquire) == 0 {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(limit, wait).await.is_ok()
    }

    /// Takes an instance for one operation, waiting if `max_instances` are busy.
    pub(crate) async fn lease(self: &Arc<Self>) -> Result<Lease<P>, StorageError> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StorageError::Io(format!("disk `{}` is shutting down", self.disk)))?;
        let reused = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let instance = match reused {
            Some(instance) => instance,
            None => self.instantiate().await?,
        };
        Ok(Lease {
            pool: self.clone(),
            instance: Some(instance),
            in_call: false,
            _permit: permit,
        })
    }

    async fn instantiate(&self) -> Result<Instance<P::Bindings>, StorageError> {
        let state = PluginState::new(self.disk.clone(), self.grants.clone(), self.limits)
            .map_err(|e| StorageError::Io(format!("cannot start the plugin of disk `{}`: {e}", self.disk)))?;
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|s| s.limiter());
        // Every epoch tick, a running plugin yields to the async runtime (so a busy plugin never
        // pins a worker thread and an abandoned call can be dropped), and traps once the
        // current call is past its deadline.
        store.epoch_deadline_callback(|ctx| {
            Ok(if Instant::now() >= ctx.data().deadline {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::Yield(1)
            })
        });
        store.data_mut().deadline = Instant::now() + self.limits.call_timeout;
        store.set_epoch_deadline(1);
        match self.pre.instantiate(&mut store).await {
            Ok(bindings) => Ok(Instance { store, bindings }),
            Err(e) => Err(self.fault(e)),
        }
    }

    /// Turns an engine error from a call into the host's error, naming the disk.
    fn fault(&self, e: wasmtime::Error) -> StorageError {
        let (kind, detail) = if let Some(m) = e.downcast_ref::<MemoryLimitExceeded>() {
            (FaultKind::MemoryLimit, m.to_string())
        } else if let Some(Trap::Interrupt) = e.downcast_ref::<Trap>() {
            (
                FaultKind::Timeout,
                format!("a call ran longer than {:?}", self.limits.call_timeout),
            )
        } else if let Some(trap) = e.downcast_ref::<Trap>() {
            (FaultKind::Trap, trap.to_string())
        } else {
            (FaultKind::Trap, e.root_cause().to_string())
        };
        // No paths or arguments here: they may be PHI.
        tracing::warn!(disk = %self.disk, %kind, "plugin fault; replacing the instance");
        StorageError::PluginFault {
            disk: self.disk.to_string(),
            kind,
            detail,
        }
    }
}

/// An instance leased for one operation; returned to the pool on drop unless it faulted or a
/// call into it was abandoned midway (its future dropped), which leaves it unusable.
pub(crate) struct Lease<P: Prelinked> {
    pool: Arc<Pool<P>>,
    instance: Option<Instance<P::Bindings>>,
    in_call: bool,
    _permit: OwnedSemaphorePermit,
}

impl<P: Prelinked> Lease<P> {
    /// Arms the per-call deadline (the call timeout plus `extra`, for calls whose host-side
    /// I/O grows with the object, like the fsync in `finish`) and gives the store and the
    /// instance's bindings. Every call must be followed by `end`/`end_infallible`.
    pub(crate) fn enter(&mut self, extra: Duration) -> Result<(&mut Store<PluginState>, &P::Bindings), StorageError> {
        let pool = &self.pool;
        match self.instance.as_mut() {
            Some(i) => {
                i.store.data_mut().deadline = Instant::now() + pool.limits.call_timeout + extra;
                i.store.set_epoch_deadline(1);
                if !self.in_call {
                    pool.calls.fetch_add(1, Ordering::AcqRel);
                }
                self.in_call = true;
                Ok((&mut i.store, &i.bindings))
            }
            None => Err(poisoned(pool)),
        }
    }

    /// The store, for host-side work on resources the plugin handed over.
    pub(crate) fn store(&mut self) -> Result<&mut Store<PluginState>, StorageError> {
        let pool = &self.pool;
        match self.instance.as_mut() {
            Some(i) => Ok(&mut i.store),
            None => Err(poisoned(pool)),
        }
    }

    /// Classifies the result of a call that answers `result<T, error>`.
    pub(crate) fn end<T>(&mut self, r: wasmtime::Result<Result<T, wit::Error>>) -> Result<T, StorageError> {
        self.end_infallible(r)?.map_err(error_from_wit)
    }

    /// Classifies the result of a call; a fault poisons the instance.
    pub(crate) fn end_infallible<T>(&mut self, r: wasmtime::Result<T>) -> Result<T, StorageError> {
        self.leave_call();
        r.map_err(|e| {
            self.discard();
            self.pool.fault(e)
        })
    }

    /// The call that was running has ended (returned, or was abandoned).
    fn leave_call(&mut self) {
        if std::mem::take(&mut self.in_call) {
            self.pool.calls.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Throws the instance away (after a fault, or when its state can no longer be trusted).
    pub(crate) fn discard(&mut self) {
        if self.instance.take().is_some() {
            self.pool.restarts.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Fails with a protocol fault and throws the instance away.
    pub(crate) fn protocol_fault(&mut self, detail: String) -> StorageError {
        self.discard();
        let e = StorageError::PluginFault {
            disk: self.pool.disk.to_string(),
            kind: FaultKind::Protocol,
            detail,
        };
        tracing::warn!(disk = %self.pool.disk, error = %e, "plugin broke the contract");
        e
    }
}

fn poisoned<P: Prelinked>(pool: &Pool<P>) -> StorageError {
    StorageError::PluginFault {
        disk: pool.disk.to_string(),
        kind: FaultKind::Protocol,
        detail: "instance already failed during this operation".into(),
    }
}

impl<P: Prelinked> Drop for Lease<P> {
    fn drop(&mut self) {
        if self.in_call {
            // A call was abandoned midway: the instance cannot be entered again.
            self.leave_call();
            self.discard();
        }
        if let Some(instance) = self.instance.take()
            && let Ok(mut idle) = self.pool.idle.lock()
        {
            idle.push(instance);
        }
    }
}

/// Runs `cleanup` (abort a write, release a read) on the current tokio runtime after its
/// owner was dropped unfinished; without a runtime, throws the instance away instead.
pub(crate) fn cleanup_later<P: Prelinked, F>(mut lease: Lease<P>, cleanup: impl FnOnce(Lease<P>) -> F)
where
    F: Future<Output = ()> + Send + 'static,
{
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => {
            let cleanups = lease.pool.cleanups.clone();
            cleanups.0.fetch_add(1, Ordering::AcqRel);
            let work = cleanup(lease);
            handle.spawn(async move {
                work.await;
                if cleanups.0.fetch_sub(1, Ordering::AcqRel) == 1 {
                    cleanups.1.notify_waiters();
                }
            });
        }
        Err(_) => lease.discard(),
    }
}
