//! The log when its files are damaged or removed under it: a database that lost its newest
//! transactions, a damaged or missing watermark, a removed or replaced data directory.

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use super::{record, runtime};
use crate::log::{
    Appended, Log, LogOptions, OpenError, WriteError,
    watermark::{self, WATERMARK_FILE, Watermark},
};

/// Appends `count` new events `{prefix}-N` and returns their sequences.
fn append(log: &Log, prefix: &str, count: usize) -> Vec<u64> {
    let rt = runtime();
    (0..count)
        .map(
            |i| match rt.block_on(log.append(record(&format!("{prefix}-{i}")))) {
                Ok(Appended::Stored(sequence)) => sequence,
                other => panic!("{prefix}-{i}: {other:?}"),
            },
        )
        .collect()
}

/// The database files of the log in `dir` (the database, its WAL and shared memory).
fn database_files(dir: &Path) -> [std::path::PathBuf; 3] {
    ["events.sqlite3", "events.sqlite3-wal", "events.sqlite3-shm"].map(|f| dir.join(f))
}

#[test]
fn a_database_that_lost_acknowledged_events_never_reuses_their_sequences_and_says_how_many() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogOptions::default()).unwrap();
    assert_eq!(append(&log, "kept", 3), [1, 2, 3]);
    log.close();
    drop(log);
    // An old copy of the database stands in for one whose WAL lost the newest transactions.
    let saved = tempfile::tempdir().unwrap();
    let [db, wal, shm] = database_files(dir.path());
    std::fs::copy(&db, saved.path().join("db")).unwrap();
    assert!(!wal.exists(), "a clean close leaves no WAL to copy");

    let log = Log::open(dir.path(), LogOptions::default()).unwrap();
    assert_eq!(log.events_missing_at_open(), 0);
    assert_eq!(append(&log, "lost", 4), [4, 5, 6, 7]);
    log.close();
    drop(log);
    std::fs::copy(saved.path().join("db"), &db).unwrap();
    let _ = (std::fs::remove_file(&wal), std::fs::remove_file(&shm));

    let log = Log::open(dir.path(), LogOptions::default()).unwrap();
    assert_eq!(log.events_missing_at_open(), 4);
    assert_eq!(log.head(), 7, "the head stays at the acknowledged one");
    let next = append(&log, "next", 1)[0];
    assert!(next > 7, "sequence {next} was already acknowledged");
    let stored: Vec<u64> = log
        .reader()
        .unwrap()
        .read_after(0, 100)
        .unwrap()
        .iter()
        .map(|e| e.sequence)
        .collect();
    assert_eq!(stored, [1, 2, 3, next]);
    log.close();
    drop(log);

    // Said once: the next open finds nothing missing.
    let log = Log::open(dir.path(), LogOptions::default()).unwrap();
    assert_eq!(log.events_missing_at_open(), 0);
    log.close();
}

#[test]
fn sequences_continue_after_the_reservation_a_crashed_run_left() {
    let dir = tempfile::tempdir().unwrap();
    // What a run that reserved up to 500 and crashed before committing anything leaves.
    std::fs::create_dir_all(dir.path()).unwrap();
    let crashed = Watermark {
        reserved: 500,
        head: 0,
    };
    watermark::write(dir.path(), crashed).unwrap();
    let log = Log::open(dir.path(), LogOptions::default()).unwrap();
    assert_eq!(log.events_missing_at_open(), 0);
    assert_eq!(log.head(), 0, "nothing was stored");
    log.close();
    drop(log);
    // A clean close without appends keeps the reservation it found.
    let log = Log::open(dir.path(), LogOptions::default()).unwrap();
    assert_eq!(append(&log, "a", 2), [501, 502]);
    log.close();
    drop(log);
    // A clean close lowered the reservation to the head: the next run skips nothing.
    let log = Log::open(dir.path(), LogOptions::default()).unwrap();
    assert_eq!(append(&log, "b", 1), [503]);
    log.close();
}

/// Waits until the watermark in `dir` records `head` (the keeper has written it and now rests).
fn wait_for_recorded_head(dir: &Path, head: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while watermark::read(dir).unwrap().map(|w| w.head) != Some(head) {
        assert!(
            Instant::now() < deadline,
            "the keeper never recorded {head}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn no_sequence_is_acknowledged_before_the_watermark_reserves_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Log::open(dir.path(), LogOptions::default()).unwrap());
    append(&log, "first", 1);
    // The keeper has just written and now rests for a second: a burst past its reservation must
    // be covered by the writer itself, before each commit.
    wait_for_recorded_head(dir.path(), 1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let count = 6000;
    let mut positions = log.watch_positions();
    let watermark_dir = dir.path().to_path_buf();
    let checker = rt.spawn(async move {
        let mut unreserved = Vec::new();
        while positions.changed().await.is_ok() {
            let head = positions.borrow_and_update().head;
            let reserved = watermark::read(&watermark_dir).unwrap().unwrap().reserved;
            if reserved < head {
                unreserved.push((head, reserved));
            }
            if head > count {
                break;
            }
        }
        unreserved
    });
    // In rounds that fit the write queue.
    for round in (0..count).step_by(1000) {
        rt.block_on(async {
            let tasks: Vec<_> = (round..round + 1000)
                .map(|i| {
                    let log = log.clone();
                    tokio::spawn(async move { log.append(record(&format!("id-{i}"))).await })
                })
                .collect();
            for task in tasks {
                task.await.unwrap().unwrap();
            }
        });
    }
    let head = count + 1;
    assert_eq!(log.head(), head);
    let unreserved = rt.block_on(checker).unwrap();
    assert!(
        unreserved.is_empty(),
        "(head, reserved) seen: {unreserved:?}"
    );
    log.close();
    assert_eq!(
        watermark::read(dir.path()).unwrap(),
        Some(Watermark {
            reserved: head,
            head
        }),
        "a clean close lowers the reservation to the head"
    );
}

#[test]
fn a_damaged_watermark_refuses_the_open_and_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogOptions::default()).unwrap();
    append(&log, "a", 1);
    log.close();
    drop(log);
    let path = dir.path().join(WATERMARK_FILE);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("reserved 1", "reserved 0")).unwrap();
    match Log::open(dir.path(), LogOptions::default()) {
        Err(error @ OpenError::Watermark(_)) => {
            let message = error.to_string();
            assert!(message.contains(&path.display().to_string()), "{message}");
            assert!(!message.contains('\n'), "{message}");
        }
        other => panic!("expected a damaged watermark, got {other:?}"),
    }
}

#[test]
fn a_missing_watermark_is_written_again_from_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogOptions::default()).unwrap();
    append(&log, "a", 2);
    log.close();
    drop(log);
    std::fs::remove_file(dir.path().join(WATERMARK_FILE)).unwrap();
    let log = Log::open(dir.path(), LogOptions::default()).unwrap();
    assert_eq!(log.events_missing_at_open(), 0);
    assert!(watermark::read(dir.path()).unwrap().is_some());
    assert_eq!(append(&log, "b", 1), [3]);
    log.close();
}

#[test]
fn a_removed_data_directory_fails_the_log_for_good() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("data");
    let log = Log::open(&dir, LogOptions::default()).unwrap();
    append(&log, "a", 1);
    assert!(log.is_usable());
    // Not while the keeper writes into it (that would make the removal fail).
    wait_for_recorded_head(&dir, 1);
    std::fs::remove_dir_all(&dir).unwrap();
    let rt = runtime();
    // Refused by the writer after its commit (it cannot know sooner), then before queueing.
    for id in ["b", "c"] {
        assert!(matches!(
            rt.block_on(log.append(record(id))),
            Err(WriteError::DataDirChanged)
        ));
    }
    assert!(!log.is_usable());
    assert!(log.reader().is_err(), "a reader could open another log");
    // A new log at the path works, and the old one's close leaves it alone (SQLite checkpoints
    // and deletes the WAL at close only while the database file is still at its path).
    let other = Log::open(&dir, LogOptions::default()).unwrap();
    assert!(!log.is_usable());
    log.close();
    assert_eq!(append(&other, "d", 1), [1]);
    assert!(
        database_files(&dir)[1].exists(),
        "the new log's WAL was deleted"
    );
    other.close();
}

#[test]
fn a_replaced_data_directory_fails_the_log_as_soon_as_it_is_checked() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("data");
    let log = Log::open(&dir, LogOptions::default()).unwrap();
    append(&log, "a", 1);
    wait_for_recorded_head(&dir, 1);
    std::fs::rename(&dir, parent.path().join("moved")).unwrap();
    std::fs::create_dir(&dir).unwrap();
    assert!(!log.is_usable());
    assert!(matches!(
        runtime().block_on(log.append(record("b"))),
        Err(WriteError::DataDirChanged)
    ));
    log.close();
    assert!(
        !dir.join(WATERMARK_FILE).exists(),
        "the close wrote into the new directory"
    );
}
