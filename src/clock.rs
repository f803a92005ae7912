//! Wall-clock time in the units the log and Clerk use: unix milliseconds, and protobuf
//! `Timestamp`s made from them.

use std::time::{SystemTime, UNIX_EPOCH};

use prost_types::Timestamp;

/// Smallest `Timestamp.seconds` protobuf allows: 0001-01-01T00:00:00Z.
const MIN_TIMESTAMP_SECONDS: i64 = -62_135_596_800;

/// Largest `Timestamp.seconds` protobuf allows: 9999-12-31T23:59:59Z.
const MAX_TIMESTAMP_SECONDS: i64 = 253_402_300_799;

/// Now, in unix milliseconds (0 if the clock is before 1970).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Converts milliseconds since the Unix epoch (negative = before it) into a `Timestamp`.
///
/// Returns `None` when the instant lies outside protobuf's `Timestamp` range (years 1 to 9999).
/// Euclidean division keeps `nanos` in `0..1_000_000_000` for negative inputs.
pub fn timestamp_from_millis(millis: i64) -> Option<Timestamp> {
    let seconds = millis.checked_div_euclid(1000)?;
    if !(MIN_TIMESTAMP_SECONDS..=MAX_TIMESTAMP_SECONDS).contains(&seconds) {
        return None;
    }
    let sub_millis = millis.checked_rem_euclid(1000)?;
    let nanos = i32::try_from(sub_millis).ok()?.checked_mul(1_000_000)?;
    Some(Timestamp { seconds, nanos })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_become_timestamps() {
        let ts = |seconds, nanos| Some(Timestamp { seconds, nanos });
        assert_eq!(timestamp_from_millis(0), ts(0, 0));
        assert_eq!(
            timestamp_from_millis(1_716_883_200_123),
            ts(1_716_883_200, 123_000_000)
        );
        assert_eq!(timestamp_from_millis(-1), ts(-1, 999_000_000));
        assert_eq!(timestamp_from_millis(-1000), ts(-1, 0));
        assert_eq!(timestamp_from_millis(-1001), ts(-2, 999_000_000));
    }

    #[test]
    fn out_of_range_millis_are_absent() {
        assert_eq!(timestamp_from_millis(i64::MAX), None);
        assert_eq!(timestamp_from_millis(i64::MIN), None);
        assert_eq!(
            timestamp_from_millis((MAX_TIMESTAMP_SECONDS + 1) * 1000),
            None
        );
        assert_eq!(
            timestamp_from_millis((MIN_TIMESTAMP_SECONDS - 1) * 1000),
            None
        );
        let last = timestamp_from_millis(MAX_TIMESTAMP_SECONDS * 1000 + 999);
        assert_eq!(last.map(|t| t.seconds), Some(MAX_TIMESTAMP_SECONDS));
        let first = timestamp_from_millis(MIN_TIMESTAMP_SECONDS * 1000);
        assert_eq!(first.map(|t| t.seconds), Some(MIN_TIMESTAMP_SECONDS));
    }
}
