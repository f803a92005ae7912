//! The open webhook connections, and which one gives way when a new client arrives at the cap.
//!
//! A cap alone lets anyone who opens `--max-connections` slow connections lock everybody else out,
//! probes and Clerk included. So at the cap the connection that has waited longest on its client
//! (for headers, a body, or the next request) is closed to make room: a stalled attacker's
//! connections are always the oldest waiters, while Clerk's requests arrive whole in milliseconds.
//! Connections whose request the bridge is working on (verifying, storing) are never chosen.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
};

use tokio_util::sync::CancellationToken;

/// Every open connection, shared by the accept loop and the connections themselves.
#[derive(Debug, Default)]
pub struct Connections {
    /// Open connections by id.
    open: Mutex<Table>,
}

/// The table behind the lock.
#[derive(Debug, Default)]
struct Table {
    /// Id of the next connection.
    next_id: u64,
    /// Counts every change of who waits, so waits are ordered exactly (no two share a tick).
    tick: u64,
    /// Open connections.
    entries: HashMap<u64, Entry>,
}

/// What the table knows of one connection.
#[derive(Debug)]
struct Entry {
    /// The tick since which it has waited on its client; `None` while the bridge works on its
    /// request.
    waiting_since: Option<u64>,
    /// Cancelled to close it.
    close: CancellationToken,
}

/// One connection's place in the table; removes it when dropped. Cloned into each request (as an
/// extension), so the handler can say when the bridge, not the client, is the one working.
#[derive(Debug, Clone)]
pub struct Connection {
    /// The table.
    connections: Arc<Connections>,
    /// This connection's id.
    id: u64,
    /// Cancelled when this connection is chosen to give way.
    close: CancellationToken,
}

/// Marks a connection as worked on by the bridge until dropped.
#[derive(Debug)]
#[must_use = "the connection counts as busy only while this is held"]
pub struct Busy(Connection);

// === impl Connections ===

impl Connections {
    /// Adds a connection, waiting on its client from now.
    pub fn open(self: &Arc<Self>) -> Connection {
        let close = CancellationToken::new();
        let mut table = self.lock();
        let id = table.next_id;
        table.next_id += 1;
        let now = table.next_tick();
        table.entries.insert(
            id,
            Entry {
                waiting_since: Some(now),
                close: close.clone(),
            },
        );
        Connection {
            connections: self.clone(),
            id,
            close,
        }
    }

    /// Closes the connection that has waited longest on its client; false when every connection
    /// is busy (then the caller waits for one to end).
    pub fn close_longest_waiting(&self) -> bool {
        let table = self.lock();
        let longest = table
            .entries
            .values()
            .filter(|entry| !entry.close.is_cancelled())
            .filter_map(|entry| entry.waiting_since.map(|since| (since, &entry.close)))
            .min_by_key(|(since, _)| *since);
        match longest {
            Some((_, close)) => {
                close.cancel();
                true
            }
            None => false,
        }
    }

    /// Connections open now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().entries.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        // The table stays consistent even if a holder panicked: every update is one statement.
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set_waiting(&self, id: u64, waiting: bool) {
        let mut table = self.lock();
        let now = table.next_tick();
        if let Some(entry) = table.entries.get_mut(&id) {
            entry.waiting_since = waiting.then_some(now);
        }
    }
}

// === impl Table ===

impl Table {
    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }
}

// === impl Connection ===

impl Connection {
    /// Resolves when this connection has been chosen to give way.
    pub async fn closed(&self) {
        self.close.cancelled().await;
    }

    /// The bridge works on this connection's request until the guard is dropped; meanwhile it is
    /// never chosen to give way.
    pub fn busy(&self) -> Busy {
        self.connections.set_waiting(self.id, false);
        Busy(self.clone())
    }

    /// Removes this connection from the table (when its task ends).
    pub fn remove(&self) {
        self.connections.lock().entries.remove(&self.id);
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.connections.set_waiting(self.0.id, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_waiting_connection_gives_way_and_busy_ones_never_do() {
        let connections = Arc::new(Connections::default());
        let oldest = connections.open();
        let middle = connections.open();
        let newest = connections.open();
        let busy = oldest.busy();

        assert!(connections.close_longest_waiting());
        assert!(!oldest.close.is_cancelled(), "busy: not chosen");
        assert!(middle.close.is_cancelled(), "the longest waiter is chosen");
        assert!(!newest.close.is_cancelled());

        // Once its request is answered, the oldest waits again, from now: newer than `newest`.
        drop(busy);
        assert!(connections.close_longest_waiting());
        assert!(newest.close.is_cancelled());
        assert!(connections.close_longest_waiting());
        assert!(oldest.close.is_cancelled());
        assert!(
            !connections.close_longest_waiting(),
            "nothing left to close"
        );
    }

    #[test]
    fn a_connection_that_ended_leaves_the_table() {
        let connections = Arc::new(Connections::default());
        let first = connections.open();
        let _busy = connections.open().busy();
        assert_eq!(connections.len(), 2);
        first.remove();
        assert_eq!(connections.len(), 1);
        assert!(
            !connections.close_longest_waiting(),
            "only a busy one is left"
        );
    }
}
