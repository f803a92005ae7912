//! Resolving where a stream starts (or where a reset moves a consumer) against the log's bounds.

use tonic::Status;

use crate::{log::Positions, proto::StartPosition};

/// What the bridge knows of the stream's consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Consumer {
    /// An anonymous stream.
    Anonymous,
    /// A named consumer seen for the first time: it starts from the first retained event.
    New,
    /// A named consumer with this committed sequence; events after it must still be retained.
    Committed(u64),
}

/// Computes the sequence a stream starts after. An `after_sequence` of 0 means "from the first
/// retained event"; a consumer's committed sequence is taken literally, so a consumer whose next
/// event was deleted by retention is told so instead of silently skipping ahead.
///
/// # Errors
/// INVALID_ARGUMENT for COMMITTED without a consumer; OUT_OF_RANGE when the start is ahead of the
/// head, or below the first retained event.
pub(super) fn resolve(
    start: StartPosition,
    after_sequence: u64,
    consumer: Consumer,
    positions: Positions,
) -> Result<u64, Status> {
    match (start, consumer) {
        (StartPosition::Unspecified | StartPosition::Committed, Consumer::Committed(committed)) => {
            check_retained(committed, positions)
        }
        (StartPosition::Unspecified | StartPosition::Committed, Consumer::New) => {
            check_bounds(0, positions)
        }
        (StartPosition::Committed, Consumer::Anonymous) => Err(Status::invalid_argument(
            "start COMMITTED needs a consumer name",
        )),
        (StartPosition::Unspecified | StartPosition::AfterSequence, _) => {
            check_bounds(after_sequence, positions)
        }
        (StartPosition::Earliest, _) => check_bounds(0, positions),
        (StartPosition::Latest, _) => Ok(positions.head),
        // The snapshot's own sequence replaces this once the stream has read it.
        (StartPosition::Snapshot, _) => Ok(positions.head),
    }
}

/// Checks a position against the log: 0 becomes "just before the first retained event".
///
/// # Errors
/// OUT_OF_RANGE when `after` is ahead of the head or below the first retained event.
pub(super) fn check_bounds(after: u64, positions: Positions) -> Result<u64, Status> {
    let earliest = positions.first_retained.saturating_sub(1);
    if after == 0 {
        return Ok(earliest);
    }
    check_retained(after, positions)
}

/// Checks that `after` is at most the head and that the event after it is still retained.
fn check_retained(after: u64, positions: Positions) -> Result<u64, Status> {
    let earliest = positions.first_retained.saturating_sub(1);
    if after > positions.head {
        return Err(Status::out_of_range(format!(
            "sequence {after} is ahead of the log head {}",
            positions.head
        )));
    }
    if after < earliest {
        return Err(Status::out_of_range(format!(
            "events after {after} are no longer retained; the first retained sequence is {}",
            positions.first_retained
        )));
    }
    Ok(after)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: Positions = Positions {
        head: 100,
        first_retained: 41,
    };

    #[test]
    fn anonymous_streams_start_after_the_given_sequence() {
        let anon = Consumer::Anonymous;
        assert_eq!(
            resolve(StartPosition::Unspecified, 50, anon, LOG).unwrap(),
            50
        );
        assert_eq!(
            resolve(StartPosition::AfterSequence, 40, anon, LOG).unwrap(),
            40
        );
        assert_eq!(
            resolve(StartPosition::Unspecified, 0, anon, LOG).unwrap(),
            40
        );
        assert_eq!(resolve(StartPosition::Earliest, 77, anon, LOG).unwrap(), 40);
        assert_eq!(resolve(StartPosition::Latest, 0, anon, LOG).unwrap(), 100);
    }

    #[test]
    fn named_consumers_default_to_their_committed_sequence() {
        let at = Consumer::Committed(60);
        assert_eq!(resolve(StartPosition::Unspecified, 7, at, LOG).unwrap(), 60);
        assert_eq!(resolve(StartPosition::Committed, 7, at, LOG).unwrap(), 60);
        assert_eq!(
            resolve(StartPosition::AfterSequence, 70, at, LOG).unwrap(),
            70
        );
        assert_eq!(
            resolve(StartPosition::Unspecified, 0, Consumer::New, LOG).unwrap(),
            40
        );
        // A consumer that committed nothing while its events were deleted is told so.
        let behind =
            resolve(StartPosition::Unspecified, 0, Consumer::Committed(0), LOG).unwrap_err();
        assert_eq!(behind.code(), tonic::Code::OutOfRange);
    }

    #[test]
    fn out_of_range_positions_name_the_bounds() {
        let ahead =
            resolve(StartPosition::AfterSequence, 101, Consumer::Anonymous, LOG).unwrap_err();
        assert_eq!(ahead.code(), tonic::Code::OutOfRange);
        assert!(ahead.message().contains("100"), "{}", ahead.message());
        let gone = resolve(StartPosition::Committed, 0, Consumer::Committed(39), LOG).unwrap_err();
        assert_eq!(gone.code(), tonic::Code::OutOfRange);
        assert!(gone.message().contains("41"), "{}", gone.message());
        let no_consumer =
            resolve(StartPosition::Committed, 0, Consumer::Anonymous, LOG).unwrap_err();
        assert_eq!(no_consumer.code(), tonic::Code::InvalidArgument);
    }
}
