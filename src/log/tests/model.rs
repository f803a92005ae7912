//! The log against a model (after vector's disk_v2/tests/model): random runs of appends, consumer
//! saves and deletes, retention steps and reopens go to a real [`Log`] in a temp dir and to
//! [`Model`], a few ordered maps. After every operation both must agree on its outcome, on the
//! positions, on the events (read back with a [`LogReader`], and from the cache of recent events
//! wherever it answers) and on the consumers; and every stored sequence must be greater than all
//! before it, across reopens and after retention deleted the newest events.
//!
//! Each append is about one of a few objects, with a version drawn from a small range, sometimes a
//! deletion and sometimes stored only if newer: the model keeps the current state under the version
//! rule, and the log's `objects` table (read back in key order, tombstones included) must equal it.
//!
//! Event ids come from a pool of a few, so appends often repeat one (and, once retention deleted
//! it, store it again). Retention by age counts back from a clock that the test moves; retention by
//! size uses caps that are always or never exceeded, as the model cannot predict SQLite's page use
//! in between. Runs stay far below a retention step (2,000 events), so one step does all the work.

use std::{collections::BTreeMap, time::Duration};

use futures_util::future::join_all;
use proptest::prelude::*;

use super::runtime;
use crate::log::{
    Appended, Log, LogOptions, LogReader, NewRecord, ObjectRef, Positions, StoredConsumer,
    StoredEvent, retention::Policy,
};

/// The event ids appends draw from.
const IDS: [&str; 5] = ["msg_a", "msg_b", "msg_c", "msg_d", "msg_e"];
/// The object ids appends are about.
const OBJECTS: [&str; 3] = ["user_1", "user_2", "user_3"];
/// The consumer names saves and deletes draw from.
const CONSUMERS: [&str; 3] = ["audit", "billing", "search"];
/// The test clock's start, in unix milliseconds.
const START_MS: i64 = 1_700_000_000_000;
/// A size cap every database exceeds (the schema alone takes pages).
const ALWAYS_OVER: u64 = 0;
/// A size cap no database exceeds.
const NEVER_OVER: u64 = u64::MAX;

/// A write as generated, before the clock gives it a time.
#[derive(Debug, Clone)]
enum Write {
    /// Append the event `IDS[id]`, received `after_ms` after the previous append, about
    /// `OBJECTS[object]` at `version` (a deletion if `deleted`), stored only if newer if `if_newer`.
    Append {
        id: usize,
        after_ms: i64,
        object: usize,
        version: u64,
        deleted: bool,
        if_newer: bool,
    },
    /// Save the consumer `CONSUMERS[name]` at `committed`.
    Save { name: usize, committed: u64 },
    /// Delete the consumer `CONSUMERS[name]`.
    Delete { name: usize },
    /// Run retention with these caps (`max_bytes` is `ALWAYS_OVER` or `NEVER_OVER`).
    Retain {
        max_age_ms: Option<u64>,
        max_bytes: Option<u64>,
    },
}

/// One step of a run.
#[derive(Debug, Clone)]
enum Op {
    /// One write, finished before the next step.
    One(Write),
    /// A few writes queued at once, in order, so that the writer may commit them in one batch.
    Together(Vec<Write>),
    /// Close the log and open it again on the same directory.
    Reopen,
}

/// A write with all its inputs fixed, given alike to the log and to the model.
#[derive(Debug)]
enum Request {
    /// [`Log::append`].
    Append(NewRecord),
    /// [`Log::save_consumer`].
    Save {
        name: &'static str,
        committed: u64,
        now_ms: i64,
    },
    /// [`Log::delete_consumer`].
    Delete { name: &'static str },
    /// [`Log::retain`].
    Retain { policy: Policy, now_ms: i64 },
}

/// What a write returned; a [`crate::log::WriteError`] as its text, which the model never returns.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// An append's result.
    Appended(Appended),
    /// A consumer save or delete went through.
    Done,
    /// How many events retention deleted.
    Deleted(u64),
}

/// An event as compared: sequence, type, codec version, body (text in these tests).
type Summary = (u64, String, u32, String);

/// An object of the state as compared: kind, id, deleted, and its latest event's sequence and body.
type ObjectSummary = (String, String, bool, u64, String);

/// The model's state entry of one object: version, deleted, and its latest event's sequence and body.
type ObjectEntry = (u64, bool, u64, String);

/// What the log should hold: plain maps, and the rules of the log's documentation.
#[derive(Debug, Default)]
struct Model {
    /// The retained events, by sequence.
    events: BTreeMap<u64, NewRecord>,
    /// The highest sequence ever stored; never goes down, even when retention deletes that event.
    head: u64,
    /// The consumers, by name.
    consumers: BTreeMap<String, StoredConsumer>,
    /// The current state, by (kind, id); retention leaves it alone.
    objects: BTreeMap<(String, String), ObjectEntry>,
}

// === impl Model ===

impl Model {
    /// What the log should answer to `request`; applies it to the model.
    fn apply(&mut self, request: &Request) -> Result<Outcome, String> {
        Ok(match request {
            Request::Append(record) => Outcome::Appended(self.append(record)),
            Request::Save {
                name,
                committed,
                now_ms,
            } => {
                self.save(name, *committed, *now_ms);
                Outcome::Done
            }
            Request::Delete { name } => {
                self.consumers.remove(*name);
                Outcome::Done
            }
            Request::Retain { policy, now_ms } => Outcome::Deleted(self.retain(policy, *now_ms)),
        })
    }

    /// A retained event with the same id makes a duplicate; otherwise the event gets `head + 1`.
    fn append(&mut self, record: &NewRecord) -> Appended {
        let retained = self
            .events
            .iter()
            .find(|(_, e)| e.event_id == record.event_id);
        if let Some((&sequence, _)) = retained {
            return Appended::Duplicate(sequence);
        }
        let object = record
            .object
            .as_ref()
            .expect("every model append has an object");
        let key = (object.kind.clone(), object.id.clone());
        let current = self.objects.get(&key).cloned();
        let wins = match &current {
            None => true,
            Some((version, ..)) => {
                object.version > *version || (object.deleted && object.version >= *version)
            }
        };
        if record.only_if_newer && !wins {
            return Appended::Superseded(current.map_or(0, |(_, _, sequence, _)| sequence));
        }
        self.head += 1;
        self.events.insert(self.head, record.clone());
        if wins {
            let entry = (
                object.version,
                object.deleted,
                self.head,
                text(&record.event),
            );
            self.objects.insert(key, entry);
        }
        Appended::Stored(self.head)
    }

    /// The state, in key order.
    fn objects(&self) -> Vec<ObjectSummary> {
        self.objects
            .iter()
            .map(|((kind, id), (_, deleted, sequence, body))| {
                (kind.clone(), id.clone(), *deleted, *sequence, body.clone())
            })
            .collect()
    }

    /// Creates the consumer, or moves it and its update time (keeping its creation time).
    fn save(&mut self, name: &str, committed: u64, now_ms: i64) {
        let consumer = self
            .consumers
            .entry(name.to_owned())
            .or_insert_with(|| StoredConsumer {
                name: name.to_owned(),
                committed,
                created_at_ms: now_ms,
                updated_at_ms: now_ms,
            });
        consumer.committed = committed;
        consumer.updated_at_ms = now_ms;
    }

    /// Deletes every event up to the newest one received before `now - max_age` and, over the size
    /// cap, up to the end of the oldest tenth of the events (at least one); returns how many.
    fn retain(&mut self, policy: &Policy, now_ms: i64) -> u64 {
        let by_age = policy.max_age.and_then(|age| {
            let cutoff = now_ms - i64::try_from(age.as_millis()).unwrap();
            let older = self
                .events
                .iter()
                .filter(|(_, e)| e.received_at_ms < cutoff);
            older.map(|(&sequence, _)| sequence).max()
        });
        let by_size = match policy.max_bytes {
            Some(ALWAYS_OVER) => {
                let chunk = (self.events.len() / 10).max(1);
                self.events.keys().nth(chunk - 1).copied()
            }
            Some(NEVER_OVER) | None => None,
            Some(cap) => unreachable!("the model cannot tell whether {cap} bytes are exceeded"),
        };
        let Some(through) = by_age.max(by_size) else {
            return 0;
        };
        let kept = self.events.split_off(&(through + 1));
        let deleted = std::mem::replace(&mut self.events, kept).len();
        u64::try_from(deleted).unwrap()
    }

    fn positions(&self) -> Positions {
        Positions {
            head: self.head,
            first_retained: self.events.keys().next().map_or(self.head + 1, |&s| s),
        }
    }

    /// The retained events after `after`, oldest first.
    fn after(&self, after: u64) -> Vec<Summary> {
        self.events
            .range(after + 1..)
            .map(|(&s, e)| (s, e.event_type.clone(), e.codec_version, text(&e.event)))
            .collect()
    }
}

/// The state of one run: the clock and the highest sequence the log has answered so far.
#[derive(Debug)]
struct Harness {
    /// Now, in unix milliseconds; appends move it.
    now_ms: i64,
    /// The last `Appended::Stored` sequence.
    last_stored: u64,
}

// === impl Harness ===

impl Harness {
    /// Fixes the inputs of `write`: the record of an append (moving the clock), the time of the rest.
    fn request(&mut self, write: &Write) -> Request {
        match *write {
            Write::Append {
                id,
                after_ms,
                object,
                version,
                deleted,
                if_newer,
            } => {
                self.now_ms += after_ms;
                Request::Append(NewRecord {
                    event_id: IDS[id].to_owned(),
                    event_type: ["user.created", "user.updated"][id % 2].to_owned(),
                    received_at_ms: self.now_ms,
                    codec_version: 1 + u32::try_from(id % 2).unwrap(),
                    // Differs between two stores of the same id, so reading back tells them apart.
                    event: format!("{} at {}", IDS[id], self.now_ms).into_bytes(),
                    object: Some(ObjectRef {
                        kind: "user".to_owned(),
                        id: OBJECTS[object].to_owned(),
                        version,
                        deleted,
                    }),
                    only_if_newer: if_newer,
                })
            }
            Write::Save { name, committed } => Request::Save {
                name: CONSUMERS[name],
                committed,
                now_ms: self.now_ms,
            },
            Write::Delete { name } => Request::Delete {
                name: CONSUMERS[name],
            },
            Write::Retain {
                max_age_ms,
                max_bytes,
            } => Request::Retain {
                policy: Policy {
                    max_age: max_age_ms.map(Duration::from_millis),
                    max_bytes,
                },
                now_ms: self.now_ms,
            },
        }
    }

    /// Checks that every new sequence is above all the log ever stored before.
    fn check_sequences(
        &mut self,
        outcomes: &[Result<Outcome, String>],
    ) -> Result<(), TestCaseError> {
        for outcome in outcomes {
            if let Ok(Outcome::Appended(Appended::Stored(sequence))) = outcome {
                prop_assert!(
                    *sequence > self.last_stored,
                    "sequence {} stored after {}",
                    sequence,
                    self.last_stored
                );
                self.last_stored = *sequence;
            }
        }
        Ok(())
    }
}

/// Sends `request` to the log.
async fn apply(log: &Log, request: &Request) -> Result<Outcome, String> {
    let outcome = match request {
        Request::Append(record) => log.append(record.clone()).await.map(Outcome::Appended),
        Request::Save {
            name,
            committed,
            now_ms,
        } => log
            .save_consumer(name, *committed, *now_ms)
            .await
            .map(|()| Outcome::Done),
        Request::Delete { name } => log.delete_consumer(name).await.map(|()| Outcome::Done),
        Request::Retain { policy, now_ms } => {
            log.retain(*policy, *now_ms).await.map(Outcome::Deleted)
        }
    };
    outcome.map_err(|e| e.to_string())
}

/// An event body as text, for readable failures.
fn text(body: &[u8]) -> String {
    String::from_utf8_lossy(body).into_owned()
}

fn summaries<'a>(events: impl IntoIterator<Item = &'a StoredEvent>) -> Vec<Summary> {
    events
        .into_iter()
        .map(|e| {
            (
                e.sequence,
                e.event_type.clone(),
                e.codec_version,
                text(&e.event),
            )
        })
        .collect()
}

/// Checks that the log holds what the model does.
fn check(log: &Log, reader: &LogReader, model: &Model) -> Result<(), TestCaseError> {
    prop_assert_eq!(log.positions(), model.positions());
    prop_assert_eq!(log.head(), model.head);
    prop_assert_eq!(
        summaries(&reader.read_after(0, usize::MAX).unwrap()),
        model.after(0)
    );
    let consumers: Vec<_> = model.consumers.values().cloned().collect();
    prop_assert_eq!(reader.consumers().unwrap(), consumers);
    let objects: Vec<ObjectSummary> = reader
        .objects_after(None, usize::MAX, true)
        .unwrap()
        .into_iter()
        .map(|o| {
            (
                o.kind,
                o.id,
                o.deleted,
                o.event.sequence,
                text(&o.event.event),
            )
        })
        .collect();
    prop_assert_eq!(objects, model.objects());
    // The cache may decline any read, but what it answers must match the disk.
    for after in 0..=model.head + 1 {
        if let Some(recent) = log.recent_after(after, 3) {
            let expected: Vec<_> = model.after(after).into_iter().take(3).collect();
            prop_assert_eq!(
                summaries(recent.iter().map(|e| &**e)),
                expected,
                "after {}",
                after
            );
        }
    }
    Ok(())
}

/// Runs `ops` against a fresh log and a fresh model, checking after each.
fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let mut log = Log::open(dir.path(), LogOptions::default()).unwrap();
    let mut model = Model::default();
    let mut harness = Harness {
        now_ms: START_MS,
        last_stored: 0,
    };
    for op in ops {
        let writes = match op {
            Op::One(write) => std::slice::from_ref(write),
            Op::Together(writes) => writes.as_slice(),
            Op::Reopen => {
                log.close();
                drop(log);
                log = Log::open(dir.path(), LogOptions::default()).unwrap();
                &[]
            }
        };
        let requests: Vec<_> = writes.iter().map(|w| harness.request(w)).collect();
        // `join_all` polls the writes in order, and each queues its request on its first poll.
        let outcomes = rt.block_on(join_all(requests.iter().map(|r| apply(&log, r))));
        let expected: Vec<_> = requests.iter().map(|r| model.apply(r)).collect();
        prop_assert_eq!(&outcomes, &expected);
        harness.check_sequences(&outcomes)?;
        check(&log, &log.reader().unwrap(), &model)?;
    }
    log.close();
    Ok(())
}

fn write() -> impl Strategy<Value = Write> {
    let max_bytes = prop_oneof![Just(None), Just(Some(ALWAYS_OVER)), Just(Some(NEVER_OVER))];
    prop_oneof![
        6 => (
            (0..IDS.len(), 0..=1500_i64),
            (0..OBJECTS.len(), 0..=4_u64, prop::bool::weighted(0.2), any::<bool>()),
        )
            .prop_map(|((id, after_ms), (object, version, deleted, if_newer))| Write::Append {
                id,
                after_ms,
                object,
                version,
                deleted,
                if_newer,
            }),
        2 => (0..CONSUMERS.len(), 0..=30_u64)
            .prop_map(|(name, committed)| Write::Save { name, committed }),
        1 => (0..CONSUMERS.len()).prop_map(|name| Write::Delete { name }),
        2 => (prop::option::of(0..=4000_u64), max_bytes)
            .prop_map(|(max_age_ms, max_bytes)| Write::Retain { max_age_ms, max_bytes }),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => write().prop_map(Op::One),
        1 => prop::collection::vec(write(), 2..=5).prop_map(Op::Together),
        1 => Just(Op::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 32,
        failure_persistence: None,
        max_shrink_iters: 1024,
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_log_agrees_with_its_model(ops in prop::collection::vec(op(), 1..=40)) {
        run(&ops)?;
    }
}
