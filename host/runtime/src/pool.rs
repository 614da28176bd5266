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

/// A call ran past its deadline while waiting in the host (not running wasm, which the epoch
/// deadline stops): the call is abandoned and its instance thrown away.
#[derive(Debug, thiserror::Error)]
#[error("a call waited in the host past its deadline")]
pub(crate) struct WallClockExceeded;

/// How long after its deadline a call waiting in the host is cut: the epoch deadline stops a
/// running plugin at the deadline itself, and its answer should win.
const WALL_CLOCK_GRACE: Duration = Duration::from_millis(500);

/// Runs a call into a plugin with a wall-clock bound, `deadline` (the store's): time spent
/// waiting in the host (a stream the backend stopped reading, say) counts too. Past it, the
/// call is dropped; its instance, left mid-call, is thrown away by its lease.
pub(crate) async fn bounded<T>(
    deadline: Instant,
    call: impl Future<Output = wasmtime::Result<T>>,
) -> wasmtime::Result<T> {
    match tokio::time::timeout_at((deadline + WALL_CLOCK_GRACE).into(), call).await {
        Ok(r) => r,
        Err(_) => Err(wasmtime::Error::new(WallClockExceeded)),
    }
}

/// A component linked against the host, ready to instantiate (`DriverPre`, `PolicyPre`).
pub(crate) trait Prelinked: Send + Sync + 'static {
    /// The generated bindings of one instance.
    type Bindings: Send + Sync + 'static;
    /// The interface the plugin exports (a driver's `store`, a policy's `policy-hooks`).
    type Exports;
    /// That interface of one instance's bindings.
    fn exports(bindings: &Self::Bindings) -> &Self::Exports;
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
    /// Each credential's share of the instances.
    shares: Mutex<std::collections::HashMap<String, Arc<Semaphore>>>,
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
            shares: Mutex::default(),
        }
    }

    /// The disk this pool serves.
    pub(crate) fn disk(&self) -> &str {
        &self.disk
    }

    /// The linked component its instances come from.
    pub(crate) fn prelinked(&self) -> &P {
        &self.pre
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

    /// Takes an instance for one operation, waiting (at most `Limits::wait`) if
    /// `max_instances` are busy.
    pub(crate) async fn lease(self: &Arc<Self>) -> Result<Lease<P>, StorageError> {
        self.lease_for(None).await
    }

    /// Takes an instance for an operation of credential `who` (an API key's name,
    /// `signed-url:ID`, `local:USER`), which may hold at most `max_instances_per_key` at once.
    pub(crate) async fn lease_for(self: &Arc<Self>, who: Option<&str>) -> Result<Lease<P>, StorageError> {
        let busy = |what: &str| StorageError::Unavailable {
            reason: format!("disk `{}` is busy: {what} for {} ms; try again", self.disk, self.limits.wait.as_millis()),
            retryable: true,
        };
        let until = tokio::time::Instant::now() + self.limits.wait;
        let share = match who {
            // All signed URLs share one share: a swarm of links is one client.
            Some(who) => {
                let key = who.split_once(':').filter(|(kind, _)| *kind == "signed-url").map_or(who, |(kind, _)| kind);
                let semaphore = match self.shares.lock() {
                    Ok(mut shares) => shares
                        .entry(key.to_string())
                        .or_insert_with(|| {
                            Arc::new(Semaphore::new(
                                self.limits.max_instances_per_key.clamp(1, self.limits.max_instances.max(1)),
                            ))
                        })
                        .clone(),
                    Err(_) => {
                        return Err(StorageError::Io(format!(
                            "disk `{}`: the instance shares are unusable",
                            self.disk
                        )));
                    }
                };
                match tokio::time::timeout_at(until, semaphore.acquire_owned()).await {
                    Ok(Ok(permit)) => Some(permit),
                    Ok(Err(_)) => return Err(StorageError::Io(format!("disk `{}` is shutting down", self.disk))),
                    Err(_) => return Err(busy("this credential holds its share of the instances")),
                }
            }
            None => None,
        };
        let permit = match tokio::time::timeout_at(until, self.permits.clone().acquire_owned()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => return Err(StorageError::Io(format!("disk `{}` is shutting down", self.disk))),
            Err(_) => return Err(busy("every instance was in use")),
        };
        let reused = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let instance = match reused {
            Some(instance) => instance,
            None => self.instantiate().await?,
        };
        Ok(Lease { pool: self.clone(), instance: Some(instance), in_call: false, _permit: permit, _share: share })
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
            Ok(if Instant::now() >= ctx.data().deadline { UpdateDeadline::Interrupt } else { UpdateDeadline::Yield(1) })
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
            (FaultKind::Timeout, format!("a call ran longer than {:?}", self.limits.call_timeout))
        } else if let Some(trap) = e.downcast_ref::<Trap>() {
            (FaultKind::Trap, trap.to_string())
        } else {
            (FaultKind::Trap, e.root_cause().to_string())
        };
        // No paths or arguments here: they may be PHI.
        tracing::warn!(disk = %self.disk, %kind, "plugin fault; replacing the instance");
        StorageError::PluginFault { disk: self.disk.to_string(), kind, detail }
    }
}

/// An instance leased for one operation; returned to the pool on drop unless it faulted or a
/// call into it was abandoned midway (its future dropped), which leaves it unusable.
pub(crate) struct Lease<P: Prelinked> {
    pool: Arc<Pool<P>>,
    instance: Option<Instance<P::Bindings>>,
    in_call: bool,
    _permit: OwnedSemaphorePermit,
    _share: Option<OwnedSemaphorePermit>,
}

impl<P: Prelinked> Lease<P> {
    /// Begins a call: arms the per-call deadline and gives the store and the interface the
    /// plugin exports. Every call must be followed by `end`/`end_infallible`.
    pub(crate) fn begin(&mut self) -> Result<(&mut Store<PluginState>, &P::Exports), StorageError> {
        self.begin_with(Duration::ZERO)
    }

    /// Like [`Lease::begin`], with `extra` time on the deadline for calls whose host-side I/O
    /// grows with the object (the fsync in `finish`).
    pub(crate) fn begin_with(
        &mut self,
        extra: Duration,
    ) -> Result<(&mut Store<PluginState>, &P::Exports), StorageError> {
        let (store, bindings) = self.begin_bindings(extra)?;
        Ok((store, P::exports(bindings)))
    }

    /// Like [`Lease::begin_with`], giving all the instance's bindings (for an interface other
    /// than the main one).
    pub(crate) fn begin_bindings(
        &mut self,
        extra: Duration,
    ) -> Result<(&mut Store<PluginState>, &P::Bindings), StorageError> {
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

    /// The linked component this lease's instance comes from.
    pub(crate) fn prelinked(&self) -> &P {
        self.pool.prelinked()
    }

    /// How long one call (or one host-side wait on a stream the plugin handed over) may take.
    pub(crate) fn call_timeout(&self) -> Duration {
        self.pool.limits.call_timeout
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
            if e.downcast_ref::<WallClockExceeded>().is_some() {
                // Not the plugin's doing: its backend did not answer or take bytes in time.
                tracing::warn!(disk = %self.pool.disk, "a call waited in the host past its deadline; instance replaced");
                return StorageError::Unavailable {
                    reason: format!("disk `{}`: its backend did not answer or take bytes within {} s", self.pool.disk, self.pool.limits.call_timeout.as_secs_f64()),
                    retryable: true,
                };
            }
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

    /// The disk this lease's instance serves.
    pub(crate) fn disk(&self) -> &str {
        self.pool.disk()
    }

    /// Fails with a protocol fault and throws the instance away.
    pub(crate) fn protocol_fault(&mut self, detail: String) -> StorageError {
        self.discard();
        let e = StorageError::PluginFault { disk: self.pool.disk.to_string(), kind: FaultKind::Protocol, detail };
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
