//! `stowage:storage/config`: a plugin reads its own config values, and nothing else of the
//! host's config.

use crate::bindings::driver::stowage::storage::config;
use crate::state::PluginState;

impl config::Host for PluginState {
    fn get(&mut self, key: String) -> Option<String> {
        self.grants.config().iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone())
    }

    fn all(&mut self) -> Vec<(String, String)> {
        self.grants.config().to_vec()
    }
}
