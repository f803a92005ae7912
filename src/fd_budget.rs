//! The file descriptor budget: what the caps on connections and streams may need at once, checked
//! against the process limit at start.
//!
//! Every HTTP and gRPC connection is a descriptor, a snapshot stream holds its own read connection
//! (the database and its write-ahead log), and the log keeps a few of its own. Running out makes
//! `accept` fail with EMFILE on both ports at once, so the bridge raises its soft limit to the hard
//! one at start (Linux allows that without privileges) and warns, naming the flags to lower, when
//! even that is below what the flags allow. It never refuses to start for it: the caps are
//! worst cases.

use crate::{config::Config, log::READER_POOL_SIZE};

/// HTTP connections beyond `--max-connections`: the one accepted while the longest-waiting
/// connection makes room for it, and those of the metrics port (`--metrics-addr`, at most 64).
pub const HTTP_BEYOND_CAP: u64 = 1 + 64;
/// Descriptors of one read connection: the database and its write-ahead log.
const FDS_PER_READER: u64 = 2;
/// Descriptors besides connections and readers: standard streams, the runtime's epoll and wakers,
/// the log's writer and checkpointer connections (database, WAL, shared memory), its lock file,
/// the two listeners, watched files, and room to spare.
const BASE: u64 = 64;

/// The soft limit before and after the start, and what the flags need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// The soft limit the process started with.
    pub before: u64,
    /// The soft limit now (the hard limit, if raising worked).
    pub limit: u64,
    /// What the flags may need at once.
    pub needed: u64,
}

/// What the flags of `config` may need at once: every HTTP connection (metrics port included), every gRPC
/// connection, a read connection per stream (the worst case: every stream reading a snapshot), the
/// log's shared readers, and the base.
pub fn needed(config: &Config) -> u64 {
    let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    let readers = count(config.max_streams).saturating_add(count(READER_POOL_SIZE));
    count(config.max_connections)
        .saturating_add(HTTP_BEYOND_CAP)
        .saturating_add(count(config.grpc_max_connections))
        .saturating_add(readers.saturating_mul(FDS_PER_READER))
        .saturating_add(BASE)
}

/// Raises the soft limit on open files to the hard limit and logs the outcome: a warning naming the
/// flags to lower when the limit stays below what `config` needs. Returns the budget, or `None`
/// where the limit cannot be read.
pub fn raise_and_check(config: &Config) -> Option<Budget> {
    let (before, _hard) = rlimit::Resource::NOFILE.get().ok()?;
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(error) => {
            tracing::warn!(%error, limit = before, "Cannot raise the open file limit");
            before
        }
    };
    let budget = Budget {
        before,
        limit,
        needed: needed(config),
    };
    if budget.limit < budget.needed {
        tracing::warn!(
            limit = budget.limit,
            needed = budget.needed,
            "Open file limit is below what the connection and stream caps allow; raise it (ulimit -n) \
             or lower --max-connections, --grpc-max-connections or --max-streams"
        );
    } else if budget.limit != budget.before {
        tracing::info!(
            before = budget.before,
            limit = budget.limit,
            "Raised the open file limit"
        );
    }
    Some(budget)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_counts_every_cap() {
        let mut config = Config::for_test(
            "/tmp/unused".into(),
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        );
        config.max_connections = 1024;
        config.grpc_max_connections = 512;
        config.max_streams = 256;
        // 1024 + 65 beyond the cap + 512 + 2 × (256 + 8 pooled readers) + 64.
        assert_eq!(needed(&config), 1024 + 65 + 512 + 2 * (256 + 8) + 64);
        config.max_streams = 1;
        assert_eq!(needed(&config), 1024 + 65 + 512 + 2 * 9 + 64);
        config.max_connections = usize::MAX;
        assert_eq!(needed(&config), u64::MAX);
    }
}
