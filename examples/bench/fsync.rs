//! The durability floor: how fast this disk makes a small write durable, measured on a file in the
//! bridge's own data directory.

use std::{
    fs::File,
    os::unix::fs::FileExt,
    path::Path,
    time::{Duration, Instant},
};

use crate::{
    BenchError,
    stats::{Latencies, Summary},
};

/// Size of each write: one page, like a small group commit.
const BLOCK: usize = 4096;

/// Bare write + fsync round trips.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Floor {
    /// Round trips per second.
    pub(crate) per_sec: f64,
    /// Latency of one round trip.
    pub(crate) latency: Summary,
}

/// Rewrites one 4 KiB block and fsyncs it in a loop for `duration`, in `dir`.
pub(crate) fn measure(dir: &Path, duration: Duration) -> Result<Floor, BenchError> {
    let path = dir.join("fsync-probe");
    let file = File::create(&path)?;
    let block = [0x5a_u8; BLOCK];
    let mut latencies = Latencies::with_capacity(4096);
    let start = Instant::now();
    let mut count = 0;
    while start.elapsed() < duration {
        let t = Instant::now();
        file.write_all_at(&block, 0)?;
        file.sync_all()?;
        latencies.record(t.elapsed());
        count += 1;
    }
    let per_sec = crate::stats::rate(count, start.elapsed());
    drop(file);
    std::fs::remove_file(path)?;
    Ok(Floor {
        per_sec,
        latency: latencies.summary(),
    })
}
