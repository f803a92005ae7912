//! Bookkeeping of backfill and reconciliation passes, kept in the log's database so that a pass
//! survives a crash or restart of the bridge.
//!
//! Table `sync_pass` holds at most one row: where the running pass stands, as the JSON its owner
//! (`crate::sync`) writes after every page; no row means no pass is running. Table `sync_seen`
//! holds every object the current pass has seen in Clerk, so that reconciliation can ask which
//! objects the state holds as live that Clerk did not list; it is emptied when a pass starts.
//! Both change only through the writer, in the same fsynced transactions as everything else.

use rusqlite::{OptionalExtension, Transaction, params};

/// A change to a pass's bookkeeping, applied in one transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassUpdate {
    /// Forget what an earlier pass saw: this is the first update of a new pass.
    pub fresh: bool,
    /// Objects seen in Clerk since the last update, as (kind, id).
    pub seen: Vec<(String, String)>,
    /// Where the pass stands now; `None` once it has ended.
    pub state: Option<String>,
}

/// Applies `update` inside the writer's transaction.
pub(super) fn apply(tx: &Transaction<'_>, update: &PassUpdate) -> rusqlite::Result<()> {
    if update.fresh {
        tx.execute("DELETE FROM sync_seen", [])?;
    }
    let mut insert =
        tx.prepare_cached("INSERT OR IGNORE INTO sync_seen (kind, object_id) VALUES (?1, ?2)")?;
    for (kind, id) in &update.seen {
        insert.execute(params![kind, id])?;
    }
    match &update.state {
        Some(state) => tx.execute(
            "INSERT INTO sync_pass (id, state) VALUES (1, ?1)
             ON CONFLICT (id) DO UPDATE SET state = excluded.state",
            [state],
        )?,
        None => tx.execute("DELETE FROM sync_pass", [])?,
    };
    Ok(())
}

/// The saved state of the running pass, if one is running.
pub(super) fn saved(conn: &rusqlite::Connection) -> rusqlite::Result<Option<String>> {
    conn.query_row("SELECT state FROM sync_pass WHERE id = 1", [], |row| {
        row.get(0)
    })
    .optional()
}
