//! What can go wrong in the ledger, in one type.

/// Why the ledger failed.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// SQLite failed.
    #[error("ledger database: {0}")]
    Db(#[from] rusqlite::Error),
    /// PostgreSQL failed, or could not be reached.
    #[error("ledger database (PostgreSQL): {0}")]
    Postgres(String),
    /// The head file could not be read or written.
    #[error("ledger head file {path}: {error}")]
    Head {
        /// The file.
        path: String,
        /// What went wrong.
        error: std::io::Error,
    },
    /// The ledger was changed behind the host's back; appending is refused.
    #[error("{0}; run `stowage ledger verify`")]
    Tampered(String),
    /// An append was not committed.
    #[error("ledger append failed: {0}")]
    Append(String),
    /// A record could not be encoded or decoded.
    #[error("ledger record at index {index}: {error}")]
    Record {
        /// Where.
        index: u64,
        /// What.
        error: String,
    },
    /// The host key or a checkpoint could not be used.
    #[error("ledger checkpoints: {0}")]
    Checkpoint(String),
    /// Writing an export or report failed.
    #[error("writing the ledger's records: {0}")]
    Output(String),
}
