//! A small mutation fuzzer on stable Rust: replays a target's corpus, then mutates corpus entries
//! (bytes and JSON structure) until a time budget is spent, and fails with the input saved when the
//! target panics or breaks an invariant.
//!
//! It has no coverage feedback, so it finds what mutations of realistic inputs reach, not what
//! only a guided search would; the corpus (kept in the repository) carries what was found before.
//! `FUZZ_SECONDS` sets the budget per target (CI runs longer than a plain `cargo test`);
//! `FUZZ_SEED` repeats a run.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use serde_json::Value;

/// Budget per target when `FUZZ_SECONDS` is not set: enough to run in every `cargo test`.
const DEFAULT_SECONDS: f64 = 2.0;
/// Largest input a mutation may grow to.
const MAX_INPUT: usize = 256 * 1024;

/// Pieces a mutation may insert: JSON syntax, extreme numbers, escapes and Clerk's own keys.
const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    "\"",
    ":",
    ",",
    "null",
    "true",
    "-0",
    "1e999",
    "-1e999",
    "18446744073709551616",
    "-9223372036854775809",
    "0.0000001",
    "\\u0000",
    "\\ud800",
    "\u{fffd}",
    "\"data\":",
    "\"type\":\"user.created\"",
    "\"object\":\"event\"",
    "\"id\":",
    "\"timestamp\":",
    "\"updated_at\":",
    "\"public_metadata\":",
    "\"email_addresses\":[",
    "\"verification\":",
    "[[[[[[[[[[[[[[[[",
    "{\"a\":{\"a\":{\"a\":{\"a\":",
    "\r\n",
    "\r\n\r\n",
    "svix-id: ",
    "svix-timestamp: ",
    "svix-signature: v1,",
    "content-length: ",
];

/// What a target says of one input.
pub(crate) type Verdict = Result<(), String>;

/// Fuzzes `target` with the corpus in `corpus` (every file one input) as seeds, plus `seeds`.
///
/// # Panics
/// When the target panics or returns an error for an input: the input is written under
/// `target/fuzz-failures/` and its path and the seed are in the message.
pub(crate) fn fuzz(
    name: &str,
    corpus: &Path,
    seeds: Vec<Vec<u8>>,
    mut target: impl FnMut(&[u8]) -> Verdict,
) {
    let mut inputs = read_corpus(corpus);
    inputs.extend(seeds);
    assert!(
        !inputs.is_empty(),
        "{name}: no corpus in {}",
        corpus.display()
    );
    let seed = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    let mut rng = fastrand::Rng::with_seed(seed);

    for input in &inputs {
        check(name, seed, input, &mut target);
    }
    let deadline = Instant::now() + budget();
    let mut runs = 0u64;
    while Instant::now() < deadline {
        let mut input = inputs[rng.usize(..inputs.len())].clone();
        for _ in 0..rng.usize(1..=4) {
            mutate(&mut rng, &mut input, &inputs);
        }
        check(name, seed, &input, &mut target);
        runs += 1;
    }
    eprintln!(
        "fuzz {name}: {} corpus inputs, then {runs} mutated inputs in {:?} (FUZZ_SEED={seed})",
        inputs.len(),
        budget()
    );
}

/// The time budget per target.
fn budget() -> Duration {
    let seconds = std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(DEFAULT_SECONDS);
    Duration::from_secs_f64(seconds.max(0.0))
}

/// Runs `target` on `input`; a panic or an error fails the test with the input saved.
fn check(name: &str, seed: u64, input: &[u8], target: &mut impl FnMut(&[u8]) -> Verdict) {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| target(input)));
    let problem = match outcome {
        Ok(Ok(())) => return,
        Ok(Err(broken)) => broken,
        Err(panic) => format!("panicked: {}", panic_message(&panic)),
    };
    let saved = save_failure(name, input);
    panic!(
        "fuzz {name}: {problem}\n  input saved to {} (FUZZ_SEED={seed}); once fixed, add it to the \
         corpus",
        saved.display()
    );
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default()
}

fn save_failure(name: &str, input: &[u8]) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-failures");
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("{name}-{:016x}", fnv1a(input)));
    let _ = std::fs::write(&path, input);
    path
}

/// A stable hash, so the same failure is saved under the same name.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Every file in `dir`, sorted by name.
fn read_corpus(dir: &Path) -> Vec<Vec<u8>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
    paths.sort();
    paths
        .iter()
        .filter(|p| p.is_file())
        .filter_map(|p| std::fs::read(p).ok())
        .collect()
}

/// One random change to `input`.
fn mutate(rng: &mut fastrand::Rng, input: &mut Vec<u8>, corpus: &[Vec<u8>]) {
    match rng.u8(..8) {
        0 if !input.is_empty() => {
            let at = rng.usize(..input.len());
            input[at] ^= 1 << rng.u8(..8);
        }
        1 if !input.is_empty() => {
            let at = rng.usize(..input.len());
            input[at] = rng.u8(..);
        }
        2 if !input.is_empty() => {
            let start = rng.usize(..input.len());
            let end = (start + rng.usize(1..=64)).min(input.len());
            input.drain(start..end);
        }
        3 if !input.is_empty() => {
            let start = rng.usize(..input.len());
            let end = (start + rng.usize(1..=256)).min(input.len());
            let piece = input[start..end].to_vec();
            let at = rng.usize(..=input.len());
            for _ in 0..rng.usize(1..=8) {
                input.splice(at..at, piece.iter().copied());
            }
        }
        4 => {
            let other = &corpus[rng.usize(..corpus.len())];
            if !other.is_empty() {
                let start = rng.usize(..other.len());
                let end = (start + rng.usize(1..=512)).min(other.len());
                let at = rng.usize(..=input.len());
                input.splice(at..at, other[start..end].iter().copied());
            }
        }
        5 | 6 => mutate_json(rng, input),
        _ => {
            let token = TOKENS[rng.usize(..TOKENS.len())].as_bytes();
            let at = rng.usize(..=input.len());
            input.splice(at..at, token.iter().copied());
        }
    }
    input.truncate(MAX_INPUT);
}

/// A structural change when `input` holds JSON (after any header block): a value somewhere is
/// removed, replaced by another type, or nested deeper.
fn mutate_json(rng: &mut fastrand::Rng, input: &mut Vec<u8>) {
    let body_start = find(input, b"\r\n\r\n").map_or(0, |at| at + 4);
    let Ok(mut value) = serde_json::from_slice::<Value>(&input[body_start..]) else {
        return;
    };
    let mut slots = 0usize;
    count_slots(&value, &mut slots);
    if slots == 0 {
        return;
    }
    let target = rng.usize(..slots);
    let replacement = match rng.u8(..7) {
        0 => Value::Null,
        1 => Value::from(rng.i64(..)),
        2 => Value::from(rng.f64() * 1e300),
        3 => Value::from("x".repeat(rng.usize(..4096))),
        4 => Value::Array(vec![Value::from(rng.u8(..)); rng.usize(..2048)]),
        5 => serde_json::json!({ "id": "user_fuzz", "object": "user", "nested": [[{}]] }),
        _ => Value::Bool(rng.bool()),
    };
    let mut seen = 0usize;
    replace_slot(&mut value, target, &mut seen, &replacement);
    input.truncate(body_start);
    input.extend(serde_json::to_vec(&value).unwrap_or_default());
}

fn count_slots(value: &Value, slots: &mut usize) {
    *slots += 1;
    match value {
        Value::Object(map) => map.values().for_each(|v| count_slots(v, slots)),
        Value::Array(list) => list.iter().for_each(|v| count_slots(v, slots)),
        _ => {}
    }
}

fn replace_slot(value: &mut Value, target: usize, seen: &mut usize, replacement: &Value) -> bool {
    if *seen == target {
        *value = replacement.clone();
        return true;
    }
    *seen += 1;
    match value {
        Value::Object(map) => map
            .values_mut()
            .any(|v| replace_slot(v, target, seen, replacement)),
        Value::Array(list) => list
            .iter_mut()
            .any(|v| replace_slot(v, target, seen, replacement)),
        _ => false,
    }
}

/// Where `needle` first occurs in `haystack`.
pub(crate) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
