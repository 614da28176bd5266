//! `stowage:storage/log`: a plugin's messages go to the host's `tracing`, under the
//! `stowage::plugin` target with the plugin's name. The last error it logged is kept (its
//! first KiB), so a refusal to start can quote the plugin's own reason.

use crate::bindings::driver::stowage::storage::log;
use crate::state::PluginState;

impl log::Host for PluginState {
    fn log(&mut self, level: log::Level, message: String) {
        let plugin = &*self.name;
        match level {
            log::Level::Trace => tracing::trace!(target: "stowage::plugin", plugin, "{message}"),
            log::Level::Debug => tracing::debug!(target: "stowage::plugin", plugin, "{message}"),
            log::Level::Info => tracing::info!(target: "stowage::plugin", plugin, "{message}"),
            log::Level::Warn => tracing::warn!(target: "stowage::plugin", plugin, "{message}"),
            log::Level::Error => tracing::error!(target: "stowage::plugin", plugin, "{message}"),
        }
        if let log::Level::Error = level {
            let mut message = message;
            let mut end = message.len().min(1024);
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            self.last_error = Some(message);
        }
    }
}
