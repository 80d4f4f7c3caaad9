//! The database file itself: created by Mailroom, owner-only, before SQLite opens it.
//! SQLite gives the `-wal` and `-shm` files it creates the main file's mode, so those
//! are owner-only too (checked by `tests/e2e/test_secrets_at_rest.py`).

use crate::StoreError;
use std::path::Path;

/// Creates `path` empty with mode 0600 (owner only) unless it exists.
pub(super) fn create_private(path: &Path) -> Result<(), StoreError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(file) => {
            // Exactly 0600, not whatever the umask leaves of it.
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                file.set_permissions(std::fs::Permissions::from_mode(0o600))
                    .map_err(|e| {
                        StoreError::Database(format!("cannot chmod {}: {e}", path.display()))
                    })?;
            }
            drop(file);
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::Database(format!(
            "cannot create {}: {e}",
            path.display()
        ))),
    }
}
