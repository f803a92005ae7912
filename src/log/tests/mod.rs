//! Tests of the log through its public handle; `model` checks it against an in-memory model.

use super::*;

mod damage;
mod model;

pub(super) fn record(id: &str) -> NewRecord {
    NewRecord {
        event_id: id.to_owned(),
        event_type: "user.created".to_owned(),
        received_at_ms: 1_700_000_000_000,
        codec_version: 1,
        event: id.as_bytes().to_vec(),
        object: None,
        only_if_newer: false,
    }
}

pub(super) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

#[test]
fn appends_get_increasing_sequences_and_duplicates_are_not_stored_twice() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogOptions::default()).unwrap();
    let rt = runtime();
    assert_eq!(
        rt.block_on(log.append(record("a"))).unwrap(),
        Appended::Stored(1)
    );
    assert_eq!(
        rt.block_on(log.append(record("b"))).unwrap(),
        Appended::Stored(2)
    );
    assert_eq!(
        rt.block_on(log.append(record("a"))).unwrap(),
        Appended::Duplicate(1)
    );
    assert_eq!(log.head(), 2);
    let events = log.reader().unwrap().read_after(0, 10).unwrap();
    let ids: Vec<_> = events
        .iter()
        .map(|e| (e.sequence, e.event.to_vec()))
        .collect();
    assert_eq!(ids, vec![(1, b"a".to_vec()), (2, b"b".to_vec())]);
    log.close();
}

#[test]
fn reopening_keeps_events_and_continues_sequences() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    {
        let log = Log::open(dir.path(), LogOptions::default()).unwrap();
        rt.block_on(log.append(record("a"))).unwrap();
        rt.block_on(log.append(record("b"))).unwrap();
        log.close();
    }
    let log = Log::open(dir.path(), LogOptions::default()).unwrap();
    assert_eq!(log.head(), 2);
    assert_eq!(
        rt.block_on(log.append(record("b"))).unwrap(),
        Appended::Duplicate(2)
    );
    assert_eq!(
        rt.block_on(log.append(record("c"))).unwrap(),
        Appended::Stored(3)
    );
    let reader = log.reader().unwrap();
    assert_eq!(
        log.positions(),
        Positions {
            head: 3,
            first_retained: 1
        }
    );
    let after_one: Vec<_> = reader
        .read_after(1, 10)
        .unwrap()
        .iter()
        .map(|e| e.sequence)
        .collect();
    assert_eq!(after_one, vec![2, 3]);
    log.close();
}

#[test]
fn concurrent_appends_are_all_stored_once_with_distinct_sequences() {
    let dir = tempfile::tempdir().unwrap();
    let log = std::sync::Arc::new(Log::open(dir.path(), LogOptions::default()).unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let outcomes = rt.block_on(async {
        let tasks: Vec<_> = (0..500)
            .map(|i| {
                let log = log.clone();
                // Every id twice: the second append of each must be a duplicate of the first.
                tokio::spawn(async move { log.append(record(&format!("id-{}", i % 250))).await })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap().unwrap());
        }
        out
    });
    let stored: std::collections::BTreeSet<u64> = outcomes
        .iter()
        .filter_map(|o| match o {
            Appended::Stored(s) => Some(*s),
            Appended::Duplicate(_) | Appended::Superseded(_) => None,
        })
        .collect();
    assert_eq!(stored.len(), 250);
    assert_eq!(stored, (1..=250).collect());
    assert_eq!(log.head(), 250);
    log.close();
}

#[test]
fn a_second_log_on_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogOptions::default()).unwrap();
    assert!(matches!(
        Log::open(dir.path(), LogOptions::default()),
        Err(OpenError::Locked(_))
    ));
    log.close();
}

#[test]
fn appends_after_close_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogOptions::default()).unwrap();
    log.close();
    let rt = runtime();
    assert!(matches!(
        rt.block_on(log.append(record("a"))),
        Err(WriteError::Closed)
    ));
}

#[test]
fn committed_events_reach_the_database_file_without_a_close_or_the_writers_fallback() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogOptions::default()).unwrap();
    let rt = runtime();
    let db = dir.path().join(DB_FILE);
    let empty = std::fs::metadata(&db).unwrap().len();
    // 200 events of 16 KiB: about 800 WAL pages, far below the writer's automatic checkpoint.
    for i in 0..200 {
        let mut event = record(&format!("msg_{i}"));
        event.event = vec![b'x'; 16 * 1024];
        rt.block_on(log.append(event)).unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let size = std::fs::metadata(&db).unwrap().len();
        if size > empty + 3 * 1024 * 1024 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the database file stayed at {size} bytes: no background checkpoint"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    log.close();
}

#[test]
fn the_data_directory_and_its_files_are_the_owners_alone() {
    use std::os::unix::fs::PermissionsExt;
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("nested").join("data");
    let log = Log::open(&dir, LogOptions::default()).unwrap();
    runtime().block_on(log.append(record("a"))).unwrap();
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&parent.path().join("nested")), 0o700);
    for file in [
        "events.sqlite3",
        "events.sqlite3-wal",
        "events.sqlite3-shm",
        "LOCK",
        "WATERMARK",
    ] {
        assert_eq!(mode(&dir.join(file)), 0o600, "{file}");
    }
    log.close();
}

#[test]
fn pooled_reads_share_a_few_readers_and_batches_stop_at_their_byte_bound() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Log::open(dir.path(), LogOptions::default()).unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    for id in ["a", "b", "c"] {
        rt.block_on(log.append(record(id))).unwrap();
    }
    let reads: Vec<_> = (0..4 * READER_POOL_SIZE)
        .map(|_| {
            let log = log.clone();
            rt.spawn(async move {
                log.read_pooled(|reader| reader.read_after_within(0, 10, 2))
                    .await
            })
        })
        .collect();
    for read in reads {
        // Each event is one byte: the batch stops at the second.
        let batch = rt.block_on(read).unwrap().unwrap();
        assert_eq!(batch.iter().map(|e| e.sequence).collect::<Vec<_>>(), [1, 2]);
    }
    let idle = log.readers.idle.lock().unwrap().len();
    assert!((1..=READER_POOL_SIZE).contains(&idle), "{idle} readers");
    log.close();
}
