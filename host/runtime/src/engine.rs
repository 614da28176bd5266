//! The wasmtime engine every plugin runs on, and the limits each plugin runs under.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Plugin instances alive at once across all disks and policies of a host.
pub const POOL_INSTANCES: u32 = 1024;

/// The largest memory any plugin instance may be configured to use (config caps
/// `memory_mib` at this).
pub const MAX_MEMORY_BYTES: usize = 4096 << 20;

/// How often the engine's epoch advances. Per-call deadlines are counted in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Resource limits for one plugin instance (their config and defaults live with the config).
pub use stowage_config::Limits;

/// A wasmtime engine with component-model, async and epoch interruption, plus the thread that
/// advances its epoch. Dropping the last clone stops the thread.
#[derive(Clone)]
pub struct PluginEngine {
    engine: Engine,
    _ticker: Arc<Ticker>,
}

struct Ticker {
    stop: Arc<AtomicBool>,
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl PluginEngine {
    /// Builds the engine and starts its epoch ticker.
    pub fn new() -> wasmtime::Result<Self> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        // The pooling allocator keeps memories, tables and the fibers async calls run on ready
        // for reuse; on demand, every call would map and unmap a fresh fiber stack.
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(POOL_INSTANCES)
            .total_core_instances(POOL_INSTANCES * 8)
            .total_memories(POOL_INSTANCES * 2)
            .total_tables(POOL_INSTANCES * 8)
            .total_stacks(POOL_INSTANCES)
            .max_memory_size(MAX_MEMORY_BYTES);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config)?;
        let stop = Arc::new(AtomicBool::new(false));
        let weak = engine.weak();
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("stowage-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .map_err(|e| wasmtime::format_err!("cannot start the epoch thread: {e}"))?;
        Ok(PluginEngine { engine, _ticker: Arc::new(Ticker { stop }) })
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}
