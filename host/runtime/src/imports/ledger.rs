//! `stowage:storage/ledger`: a policy appends tracking records to the PHI ledger. During an
//! `observe` call the host stamps each record with the operation it observes and notes what
//! was appended, so an operation whose required record failed is not answered.

use crate::state::PluginState;

impl crate::bindings::wit_ledger::Host for PluginState {
    async fn append(&mut self, record: crate::bindings::wit_ledger::TrackingRecord) -> Result<u64, String> {
        let record = crate::convert::tracking_from_wit(record);
        let audit = self.audit.clone();
        // Outside an observe call (a policy recording from `check`): only its name is stamped.
        let record = match &audit {
            Some(a) => lock_audit(a).stamped(record),
            None => crate::ledger::Record { policy: Some(self.name.to_string()), ..record },
        };
        let result = match self.grants.ledger() {
            Some(ledger) => ledger.append(&record).await.map_err(|e| e.to_string()),
            None => Err("this host has no ledger configured".into()),
        };
        if let Some(a) = &audit {
            let mut a = lock_audit(a);
            match &result {
                Ok(index) => a.appended.push(*index),
                Err(e) => {
                    a.failed.get_or_insert_with(|| e.clone());
                }
            }
        }
        result
    }
}

/// A call's audit, even after a panic elsewhere poisoned it (it holds plain data).
fn lock_audit(
    a: &std::sync::Mutex<crate::policy::types::CallAudit>,
) -> std::sync::MutexGuard<'_, crate::policy::types::CallAudit> {
    a.lock().unwrap_or_else(|p| p.into_inner())
}
