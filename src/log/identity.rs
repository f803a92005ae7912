//! Noticing that the data directory was removed or replaced under a running log.
//!
//! SQLite keeps writing to the files it opened even after they were unlinked, so a deleted data
//! directory would go on taking (and acknowledging) appends that vanish at the next start, and a
//! second bridge could take the path meanwhile. At open the log remembers the device and inode of
//! the directory, its lock file and its database file; [`DataDirIdentity::check`] compares them
//! with what the paths name now (three `stat` calls). The first mismatch is permanent: the log is
//! failed until the process restarts, and says so once at ERROR.

use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::OnceLock,
};

/// Which path changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    /// The data directory itself.
    DataDir,
    /// The `LOCK` file.
    LockFile,
    /// The database file.
    Database,
}

/// How it changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Change {
    /// The path names nothing now.
    Removed(Role),
    /// The path names another file or directory.
    Replaced(Role),
}

/// A path and the identity (device, inode) it had at open.
#[derive(Debug)]
struct Entry {
    /// What the path is.
    role: Role,
    /// The path.
    path: PathBuf,
    /// `(st_dev, st_ino)` at open.
    id: (u64, u64),
}

/// The identities of the data directory and its files at open, and the first change seen since.
#[derive(Debug)]
pub(super) struct DataDirIdentity {
    /// The directory first (a removed directory reads as such, not as a removed file).
    entries: Vec<Entry>,
    /// The directory, held open so that its inode number cannot be given to a new directory at
    /// the same path (the log's open files pin theirs already).
    _pinned: std::fs::File,
    /// Set once, at the first mismatch; never cleared.
    changed: OnceLock<Change>,
}

// === impl Role ===

impl Role {
    /// What to call it in a log line.
    fn as_str(self) -> &'static str {
        match self {
            Role::DataDir => "data directory",
            Role::LockFile => "lock file",
            Role::Database => "database file",
        }
    }
}

// === impl DataDirIdentity ===

impl DataDirIdentity {
    /// Remembers what `data_dir`, `lock_file` and `db_file` are now.
    ///
    /// # Errors
    /// When one cannot be `stat`ed.
    pub(super) fn remember(
        data_dir: &Path,
        lock_file: &Path,
        db_file: &Path,
    ) -> std::io::Result<Self> {
        let entry = |role, path: &Path, metadata: std::fs::Metadata| Entry {
            role,
            path: path.to_path_buf(),
            id: (metadata.dev(), metadata.ino()),
        };
        let pinned = std::fs::File::open(data_dir)?;
        Ok(DataDirIdentity {
            entries: vec![
                entry(Role::DataDir, data_dir, pinned.metadata()?),
                entry(Role::LockFile, lock_file, std::fs::metadata(lock_file)?),
                entry(Role::Database, db_file, std::fs::metadata(db_file)?),
            ],
            _pinned: pinned,
            changed: OnceLock::new(),
        })
    }

    /// The change already seen, without looking again.
    pub(super) fn changed(&self) -> Option<Change> {
        self.changed.get().copied()
    }

    /// Compares the paths with what they were at open. The first mismatch is logged at ERROR and
    /// returned by every later call. A `stat` that fails for another reason than a missing path
    /// (permissions, I/O) proves nothing and counts as unchanged.
    ///
    /// # Errors
    /// The change, when there is one.
    pub(super) fn check(&self) -> Result<(), Change> {
        if let Some(change) = self.changed() {
            return Err(change);
        }
        let Some(found) = self.entries.iter().find_map(Entry::change) else {
            return Ok(());
        };
        let first = *self.changed.get_or_init(|| {
            let (what, role) = match found {
                Change::Removed(role) => ("removed", role),
                Change::Replaced(role) => ("replaced", role),
            };
            tracing::error!(
                data_dir = %self.entries[0].path.display(),
                path = %self.path(role).display(),
                "The log's {} was {what} while the bridge ran: it no longer stores or acknowledges \
                 anything (webhooks get 503, /readyz fails); restart the bridge",
                role.as_str(),
            );
            found
        });
        Err(first)
    }

    /// The path of `role`.
    fn path(&self, role: Role) -> &Path {
        self.entries
            .iter()
            .find(|e| e.role == role)
            .map_or(Path::new(""), |e| &e.path)
    }
}

// === impl Entry ===

impl Entry {
    /// How the path changed since open, if it did.
    fn change(&self) -> Option<Change> {
        match std::fs::metadata(&self.path) {
            Ok(now) if (now.dev(), now.ino()) == self.id => None,
            Ok(_) => Some(Change::Replaced(self.role)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(Change::Removed(self.role)),
            Err(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(dir: &Path) -> DataDirIdentity {
        let (lock, db) = (dir.join("LOCK"), dir.join("db"));
        std::fs::write(&lock, "").unwrap();
        std::fs::write(&db, "").unwrap();
        DataDirIdentity::remember(dir, &lock, &db).unwrap()
    }

    #[test]
    fn unchanged_paths_pass_and_writes_to_the_files_change_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let identity = identity(tmp.path());
        std::fs::write(tmp.path().join("db"), "more").unwrap();
        assert_eq!(identity.check(), Ok(()));
        assert_eq!(identity.changed(), None);
    }

    #[test]
    fn a_removed_directory_is_seen_and_stays_seen() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        std::fs::create_dir(&dir).unwrap();
        let identity = identity(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(identity.check(), Err(Change::Removed(Role::DataDir)));
        // Even once the path exists again.
        std::fs::create_dir(&dir).unwrap();
        assert_eq!(identity.check(), Err(Change::Removed(Role::DataDir)));
        assert_eq!(identity.changed(), Some(Change::Removed(Role::DataDir)));
    }

    #[test]
    fn a_replaced_directory_or_file_is_seen() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        std::fs::create_dir(&dir).unwrap();
        let identity_of_dir = identity(&dir);
        std::fs::rename(&dir, tmp.path().join("moved")).unwrap();
        std::fs::create_dir(&dir).unwrap();
        assert_eq!(
            identity_of_dir.check(),
            Err(Change::Replaced(Role::DataDir))
        );

        let identity_of_files = identity(&dir);
        // Made before the old one goes, so it cannot get the old inode number back.
        std::fs::write(dir.join("db.new"), "").unwrap();
        std::fs::rename(dir.join("db.new"), dir.join("db")).unwrap();
        assert_eq!(
            identity_of_files.check(),
            Err(Change::Replaced(Role::Database))
        );

        let identity_of_lock = identity(&dir);
        std::fs::remove_file(dir.join("LOCK")).unwrap();
        assert_eq!(
            identity_of_lock.check(),
            Err(Change::Removed(Role::LockFile))
        );
    }
}
