//! The sequence watermark: a small file beside the database, `WATERMARK`, that remembers how far
//! sequences have gone even if the database loses its newest transactions (a damaged or deleted
//! write-ahead log after a crash).
//!
//! # Format
//! Four lines of text, all required, in this order:
//!
//! ```text
//! clerk-bridge sequence watermark 1
//! reserved 8192
//! head 4100
//! check 9f0c1e7a5d3b2c41
//! ```
//!
//! `reserved`: no sequence above it has been (or will be, before the file says otherwise)
//! assigned, so an open continues after the higher of it and the database's head. `head`: the
//! log's head when the file was written; an open that finds a lower head in the database has lost
//! acknowledged events. `check`: FNV-1a (64 bit, hex) of the lines before it, so a damaged digit
//! is refused instead of read as a lower number. Both numbers are at most `i64::MAX` (SQLite's
//! limit) and `head <= reserved`.
//!
//! # Writes
//! Atomic: the new content goes to `WATERMARK.tmp` (mode 0600), which is fsynced, renamed over
//! `WATERMARK`, and the directory fsynced, so a crash leaves either the old file or the new one.

use std::{
    fs::File,
    io::Write as _,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use super::PRIVATE_FILE_MODE;

/// Name of the watermark file inside the data directory.
pub(super) const WATERMARK_FILE: &str = "WATERMARK";
/// Name of the file a write goes to before it is renamed over [`WATERMARK_FILE`].
const TEMP_FILE: &str = "WATERMARK.tmp";
/// The first line: what the file is, and the version of its format.
const HEADER: &str = "clerk-bridge sequence watermark 1";

/// What the watermark file records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Watermark {
    /// The highest sequence that may have been assigned.
    pub(super) reserved: u64,
    /// The log's head when this was written.
    pub(super) head: u64,
}

/// Why the watermark file could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct WatermarkError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub reason: String,
}

// === impl Watermark ===

impl Watermark {
    /// The file's text.
    fn encode(self) -> String {
        let body = format!("{HEADER}\nreserved {}\nhead {}\n", self.reserved, self.head);
        let check = fnv1a(body.as_bytes());
        format!("{body}check {check:016x}\n")
    }

    /// Parses the file's text; the reason when it is not exactly what [`Watermark::encode`] writes.
    fn decode(text: &str) -> Result<Self, String> {
        let body_end = text
            .find("check ")
            .ok_or_else(|| "no check line".to_owned())?;
        let (body, check) = text.split_at(body_end);
        let mut lines = body.lines();
        if lines.next() != Some(HEADER) {
            return Err(format!("the first line is not {HEADER:?}"));
        }
        let reserved = number(lines.next(), "reserved")?;
        let head = number(lines.next(), "head")?;
        if lines.next().is_some() {
            return Err("unexpected lines".to_owned());
        }
        let expected = format!("check {:016x}\n", fnv1a(body.as_bytes()));
        if check != expected {
            return Err("the check does not match (damaged)".to_owned());
        }
        if head > reserved {
            return Err(format!("head {head} is above reserved {reserved}"));
        }
        Ok(Watermark { reserved, head })
    }
}

/// The value of a `name N` line, N a sequence SQLite can store.
fn number(line: Option<&str>, name: &str) -> Result<u64, String> {
    line.and_then(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|digits| digits.parse::<i64>().ok())
        .and_then(|n| u64::try_from(n).ok())
        .ok_or_else(|| format!("no valid {name:?} line"))
}

/// 64-bit FNV-1a: enough to notice a damaged byte in a file of a few dozen.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Reads the watermark in `data_dir`; `None` when there is no file.
///
/// # Errors
/// [`WatermarkError`] when the file cannot be read or is not a valid watermark.
pub(super) fn read(data_dir: &Path) -> Result<Option<Watermark>, WatermarkError> {
    let path = data_dir.join(WATERMARK_FILE);
    let error = |reason: String| WatermarkError {
        path: path.clone(),
        reason,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => Watermark::decode(&text).map(Some).map_err(error),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(error(e.to_string())),
    }
}

/// Replaces the watermark in `data_dir` with `watermark`, atomically and durably.
///
/// # Errors
/// When a step fails; the file then holds the old watermark or, if the rename happened but the
/// directory's fsync failed, possibly the new one.
pub(super) fn write(data_dir: &Path, watermark: Watermark) -> std::io::Result<()> {
    let temp = data_dir.join(TEMP_FILE);
    let mut file = File::options()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(PRIVATE_FILE_MODE)
        .open(&temp)?;
    file.write_all(watermark.encode().as_bytes())?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temp, data_dir.join(WATERMARK_FILE))?;
    File::open(data_dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    const SAMPLE: Watermark = Watermark {
        reserved: 8192,
        head: 4100,
    };

    #[test]
    fn a_written_watermark_reads_back_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
        write(dir.path(), SAMPLE).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(SAMPLE));
        let next = Watermark {
            reserved: 9000,
            head: 9000,
        };
        write(dir.path(), next).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(next));
        let path = dir.path().join(WATERMARK_FILE);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(
            !dir.path().join(TEMP_FILE).exists(),
            "the temp file was renamed"
        );
    }

    #[test]
    fn a_leftover_temp_file_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), SAMPLE).unwrap();
        // A crash between the temp file's write and its rename leaves both.
        std::fs::write(dir.path().join(TEMP_FILE), "clerk-bridge sequ").unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(SAMPLE));
        write(dir.path(), SAMPLE).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(SAMPLE));
    }

    #[test]
    fn a_damaged_watermark_is_refused_never_read_low() {
        let good = SAMPLE.encode();
        let damaged = [
            good.replace("reserved 8192", "reserved 1192"),
            good.replace("head 4100", "head 4101"),
            good.replace("check ", "check 0"),
            good.lines().take(3).collect::<Vec<_>>().join("\n"),
            good[..good.len() / 2].to_owned(),
            String::new(),
            "garbage".to_owned(),
            good.replace(HEADER, "clerk-bridge sequence watermark 2"),
        ];
        let dir = tempfile::tempdir().unwrap();
        for text in damaged {
            std::fs::write(dir.path().join(WATERMARK_FILE), &text).unwrap();
            let error = read(dir.path()).expect_err(&text);
            assert_eq!(error.path, dir.path().join(WATERMARK_FILE));
            assert!(!error.reason.is_empty());
        }
    }

    #[test]
    fn numbers_beyond_what_sqlite_stores_or_a_head_above_the_reservation_are_refused() {
        for (reserved, head) in [(u64::MAX, 1), (10, 11)] {
            let body = format!("{HEADER}\nreserved {reserved}\nhead {head}\n");
            let text = format!("{body}check {:016x}\n", fnv1a(body.as_bytes()));
            assert!(Watermark::decode(&text).is_err(), "{text}");
        }
    }
}
