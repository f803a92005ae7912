//! The stream's subjects: events are published to `<stream>.events`; the stream takes
//! `<stream>.>`, so that other kinds of messages could be added beside them.

/// The subjects the stream takes.
pub(super) fn all_events(stream: &str) -> String {
    format!("{stream}.>")
}

/// The subject events are published to.
pub(super) fn events(stream: &str) -> String {
    format!("{stream}.events")
}
