//! A configuration file that is read again when it changes (a mounted Kubernetes Secret), so a
//! rotation needs no restart.
//!
//! Change detection compares the file's metadata (modification time, length, inode), following
//! symlinks, because Kubernetes swaps a `..data` symlink when a Secret changes. The file is checked
//! on a timer and, through [`WatchedFile::reload_if_changed`], on demand: the webhook receiver
//! calls it when a signature fails, so a webhook signed with a new secret is accepted as soon as
//! the file holds that secret. A file that changes into something unparsable keeps the previous
//! value (and logs a warning), so a bad edit does not take the bridge down.

use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, SystemTime},
};

use tokio_util::sync::CancellationToken;

/// What identifies one version of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    /// Last modification, where the filesystem records one.
    modified: Option<SystemTime>,
    /// Length in bytes.
    len: u64,
    /// Changes when the file is replaced by a rename (as Kubernetes does), even when the time and
    /// length happen to match.
    inode: u64,
}

/// Turns the file's text into the value; the error says what is wrong, without the contents.
pub type Parse<T> = fn(&str) -> Result<T, String>;

/// The current value of a watched file.
#[derive(Debug)]
pub struct WatchedFile<T> {
    /// As configured; symlinks are followed afresh on every check.
    path: PathBuf,
    /// Run on every changed version; an error keeps the previous value.
    parse: Parse<T>,
    /// The value and the fingerprint of the file it came from.
    current: Mutex<(Arc<T>, Option<Fingerprint>)>,
}

// === impl WatchedFile ===

impl<T> WatchedFile<T> {
    /// Reads `path` now.
    ///
    /// # Errors
    /// When the file cannot be read or parsed: the message names neither the contents nor secrets.
    pub fn load(path: &Path, parse: Parse<T>) -> Result<Self, String> {
        let fingerprint = fingerprint(path);
        let value = read(path, parse)?;
        Ok(WatchedFile {
            path: path.to_path_buf(),
            parse,
            current: Mutex::new((Arc::new(value), fingerprint)),
        })
    }

    /// The value from the latest readable version of the file.
    pub fn current(&self) -> Arc<T> {
        self.lock().0.clone()
    }

    /// Reads the file again if it changed since the last read. Returns whether the value changed.
    pub fn reload_if_changed(&self) -> bool {
        let now = fingerprint(&self.path);
        if now == self.lock().1 {
            return false;
        }
        match read(&self.path, self.parse) {
            Ok(value) => {
                *self.lock() = (Arc::new(value), now);
                tracing::info!(path = %self.path.display(), "Reloaded changed file");
                true
            }
            Err(error) => {
                // Remember the bad version so it is not read again until it changes.
                self.lock().1 = now;
                tracing::warn!(%error, "Changed file is unusable; keeping the previous value");
                false
            }
        }
    }

    /// Checks the file every `interval` until `shutdown`.
    pub async fn watch(self: Arc<Self>, interval: Duration, shutdown: CancellationToken) {
        let mut ticks = tokio::time::interval(interval);
        loop {
            tokio::select! {
                _ = ticks.tick() => { self.reload_if_changed(); }
                () = shutdown.cancelled() => return,
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Arc<T>, Option<Fingerprint>)> {
        // Every critical section only replaces the pair whole, so a poisoned lock holds a valid one.
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn fingerprint(path: &Path) -> Option<Fingerprint> {
    let meta = std::fs::metadata(path).ok()?;
    Some(Fingerprint {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode: meta.ino(),
    })
}

fn read<T>(path: &Path, parse: Parse<T>) -> Result<T, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(text: &str) -> Result<u32, String> {
        text.trim().parse().map_err(|_| "not a number".to_owned())
    }

    #[test]
    fn a_changed_file_is_read_again_and_a_bad_change_keeps_the_old_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("value");
        std::fs::write(&path, "1").unwrap();
        let file = WatchedFile::load(&path, number).unwrap();
        assert_eq!(*file.current(), 1);
        assert!(!file.reload_if_changed());
        // Replace the file the way Kubernetes does: a new inode under the same name.
        std::fs::write(dir.path().join("next"), "22").unwrap();
        std::fs::rename(dir.path().join("next"), &path).unwrap();
        assert!(file.reload_if_changed());
        assert_eq!(*file.current(), 22);
        std::fs::write(dir.path().join("next"), "oops").unwrap();
        std::fs::rename(dir.path().join("next"), &path).unwrap();
        assert!(!file.reload_if_changed());
        assert_eq!(*file.current(), 22);
    }

    #[test]
    fn an_unreadable_file_is_an_error_naming_the_path() {
        let error = WatchedFile::load(Path::new("/nonexistent/secret"), number).unwrap_err();
        assert!(error.contains("/nonexistent/secret"), "{error}");
    }
}
