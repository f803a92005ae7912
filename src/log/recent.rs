//! The most recently committed events, kept in memory as stored, so that subscribers at or near the
//! head get them without reading the database. Every live subscriber shares the same entries
//! (`Arc`), so a hundred of them cost no more memory than one.
//!
//! The writer adds each batch's events after its commit and before it publishes the new head, so a
//! subscriber woken by the head finds them here. The cache holds a contiguous run of sequences up
//! to the head; it forgets the oldest entries beyond [`MAX_EVENTS`] or [`MAX_BYTES`], and those
//! that retention deleted. It starts empty when the log is opened.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, PoisonError},
};

use super::StoredEvent;

/// Most events kept.
const MAX_EVENTS: usize = 8192;
/// Most bytes of encoded events kept (about 1,600 `user.created` events of 5 KiB).
const MAX_BYTES: usize = 8 * 1024 * 1024;

/// The cache, shared by the writer (which fills it) and the [`Log`](super::Log) handle (which
/// serves subscribers from it).
#[derive(Debug, Default)]
pub(crate) struct RecentEvents {
    /// Oldest first; only ever locked for a copy of a few `Arc`s, never across I/O.
    events: Mutex<Window>,
}

/// The cached run of events and its size, changed together under the lock.
#[derive(Debug, Default)]
struct Window {
    /// Contiguous sequences, oldest first; the last one is the head (unless the cache is empty).
    events: VecDeque<Arc<StoredEvent>>,
    /// Sum of their encoded sizes.
    bytes: usize,
}

// === impl RecentEvents ===

impl RecentEvents {
    /// Adds events just committed, in sequence order, and forgets the oldest beyond the caps.
    pub(crate) fn extend(&self, committed: impl IntoIterator<Item = StoredEvent>) {
        let mut recent = self.lock();
        for event in committed {
            // A gap (none is expected: sequences are assigned one after the other) would break
            // contiguity; start over from the new event.
            if recent
                .events
                .back()
                .is_some_and(|last| last.sequence + 1 != event.sequence)
            {
                *recent = Window::default();
            }
            recent.bytes += event.event.len();
            recent.events.push_back(Arc::new(event));
        }
        while recent.events.len() > MAX_EVENTS || recent.bytes > MAX_BYTES {
            recent.pop_front();
        }
    }

    /// Forgets the events below `first_retained` (deleted by retention).
    pub(crate) fn forget_before(&self, first_retained: u64) {
        let mut recent = self.lock();
        while recent
            .events
            .front()
            .is_some_and(|e| e.sequence < first_retained)
        {
            recent.pop_front();
        }
    }

    /// Up to `limit` events after `after`, oldest first, if the cache holds every stored event
    /// after `after`; `None` if some of them are only on disk.
    pub(crate) fn read_after(&self, after: u64, limit: usize) -> Option<Vec<Arc<StoredEvent>>> {
        let recent = self.lock();
        let first = recent.events.front()?.sequence;
        if after.saturating_add(1) < first {
            return None;
        }
        let skip = usize::try_from(after.saturating_add(1) - first).unwrap_or(usize::MAX);
        Some(
            recent
                .events
                .iter()
                .skip(skip)
                .take(limit)
                .cloned()
                .collect(),
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Window> {
        // The contents stay valid if a holder panicked: every change leaves them consistent.
        self.events.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

// === impl Window ===

impl Window {
    /// Forgets the oldest event, keeping `bytes` in step.
    fn pop_front(&mut self) {
        if let Some(event) = self.events.pop_front() {
            self.bytes -= event.event.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn event(sequence: u64, size: usize) -> StoredEvent {
        StoredEvent {
            sequence,
            event_type: "user.created".to_owned(),
            codec_version: 2,
            event: Bytes::from(vec![0; size]),
        }
    }

    fn sequences(events: Option<Vec<Arc<StoredEvent>>>) -> Option<Vec<u64>> {
        events.map(|events| events.iter().map(|e| e.sequence).collect())
    }

    #[test]
    fn serves_what_it_holds_and_nothing_it_does_not() {
        let recent = RecentEvents::default();
        assert_eq!(sequences(recent.read_after(0, 10)), None);
        recent.extend((5..=9).map(|s| event(s, 10)));
        assert_eq!(sequences(recent.read_after(3, 10)), None);
        assert_eq!(sequences(recent.read_after(4, 2)), Some(vec![5, 6]));
        assert_eq!(sequences(recent.read_after(7, 10)), Some(vec![8, 9]));
        assert_eq!(sequences(recent.read_after(9, 10)), Some(vec![]));
    }

    #[test]
    fn forgets_the_oldest_beyond_its_caps_and_what_retention_deleted() {
        let recent = RecentEvents::default();
        recent.extend((1..=3).map(|s| event(s, MAX_BYTES / 2)));
        assert_eq!(sequences(recent.read_after(1, 10)), Some(vec![2, 3]));
        assert_eq!(sequences(recent.read_after(0, 10)), None);
        recent.forget_before(3);
        assert_eq!(sequences(recent.read_after(2, 10)), Some(vec![3]));
        recent.extend((4..=MAX_EVENTS as u64 + 10).map(|s| event(s, 1)));
        assert_eq!(recent.lock().events.len(), MAX_EVENTS);
    }

    #[test]
    fn a_gap_starts_the_cache_over() {
        let recent = RecentEvents::default();
        recent.extend([event(1, 1), event(2, 1), event(5, 1)]);
        assert_eq!(sequences(recent.read_after(1, 10)), None);
        assert_eq!(sequences(recent.read_after(4, 10)), Some(vec![5]));
    }
}
