//! File helpers for the data directory, which holds secrets (the database with every
//! message, the KEK file, the operator token, TLS and ARC keys): the directory is
//! `0700`, every file in it `0600`, set explicitly at creation whatever the umask, and
//! corrected at start when an older version (or a person) left them open. Private
//! files are written atomically (temp file, fsync, rename).

use anyhow::{Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

const DIR_MODE: u32 = 0o700;
const FILE_MODE: u32 = 0o600;

/// Writes `data` to `path` with mode 0600, atomically.
pub fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(FILE_MODE);
        }
        let mut f = options
            .open(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        // A leftover temp file keeps its old mode through `open`: set it.
        set_mode(&tmp, FILE_MODE)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    if let Some(dir) = path.parent() {
        // The rename is durable once the directory is.
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
}

/// Creates `dir` (and missing parents) with mode 0700, or tightens an existing one.
pub fn create_private_dir(dir: &Path) -> Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(DIR_MODE);
    }
    builder
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    tighten(dir, DIR_MODE)?;
    Ok(())
}

/// What Mailroom writes in the data directory (and `<name>.tmp` while writing it).
/// Only these are touched: `data_dir` may hold other people's files.
const OURS: [&str; 18] = [
    "mailroom.db",
    "mailroom.db-wal",
    "mailroom.db-shm",
    "mailroom.db-journal",
    "secrets.key",
    "secrets.key.old",
    "secrets.key.next",
    "operator-token",
    "tracking-secret",
    "arc-key.pem",
    "listeners.json",
    "node-id",
    "tls",
    "tls/cert.pem",
    "tls/key.pem",
    "acme",
    "acme/account.json",
    "acme/cert.pem",
];

/// Makes the data directory private: creates it `0700` or corrects its mode, then
/// gives every directory and file Mailroom writes in it (`OURS`, and their `.tmp`)
/// `0700` / `0600`. Symbolic links are not followed. Returns what it changed, as
/// `(path, old mode)`, for the log.
pub fn secure_data_dir(dir: &Path) -> Result<Vec<(PathBuf, u32)>> {
    let mut changed = Vec::new();
    if dir.exists() {
        if let Some(old) = tighten(dir, DIR_MODE)? {
            changed.push((dir.to_path_buf(), old));
        }
    } else {
        create_private_dir(dir)?;
    }
    for name in OURS {
        for suffix in ["", ".tmp"] {
            let path = dir.join(format!("{name}{suffix}"));
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let mode = if meta.is_dir() {
                DIR_MODE
            } else if meta.is_file() {
                FILE_MODE
            } else {
                continue;
            };
            if let Some(old) = tighten(&path, mode)? {
                changed.push((path, old));
            }
        }
    }
    Ok(changed)
}

/// Gives `path` mode 0600 if it exists and is not already; returns the old mode.
pub fn secure_file(path: &Path) -> Result<Option<u32>> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_file() => tighten(path, FILE_MODE),
        _ => Ok(None),
    }
}

/// Sets `mode` unless the permission bits already are exactly that.
fn tighten(path: &Path, mode: u32) -> Result<Option<u32>> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let old = std::fs::metadata(path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .permissions()
            .mode()
            & 0o7777;
        if old == mode {
            return Ok(None);
        }
        set_mode(path, mode)?;
        Ok(Some(old))
    }
    #[cfg(not(unix))]
    {
        let _ = (path, mode);
        Ok(None)
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("cannot set the mode of {} to {mode:o}", path.display()))?;
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn creates_private_and_tightens_what_exists() {
        let root = tempfile::tempdir().unwrap();
        let fresh = root.path().join("a/b");
        assert!(secure_data_dir(&fresh).unwrap().is_empty());
        assert_eq!(mode(&fresh), 0o700);

        let old = root.path().join("old");
        std::fs::create_dir_all(old.join("tls")).unwrap();
        std::fs::write(old.join("mailroom.db"), b"x").unwrap();
        std::fs::write(old.join("someone-elses.txt"), b"x").unwrap();
        std::fs::write(old.join("tls/key.pem"), b"k").unwrap();
        for (p, m) in [
            (old.clone(), 0o755),
            (old.join("tls"), 0o755),
            (old.join("mailroom.db"), 0o644),
            (old.join("tls/key.pem"), 0o644),
            (old.join("someone-elses.txt"), 0o644),
        ] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(m)).unwrap();
        }
        let changed = secure_data_dir(&old).unwrap();
        assert_eq!(changed.len(), 4, "{changed:?}");
        assert!(changed.contains(&(old.join("mailroom.db"), 0o644)));
        assert_eq!(mode(&old), 0o700);
        assert_eq!(mode(&old.join("tls")), 0o700);
        assert_eq!(mode(&old.join("mailroom.db")), 0o600);
        assert_eq!(mode(&old.join("tls/key.pem")), 0o600);
        assert_eq!(
            mode(&old.join("someone-elses.txt")),
            0o644,
            "not ours: untouched"
        );
        assert!(
            secure_data_dir(&old).unwrap().is_empty(),
            "second start: nothing to do"
        );

        let f = old.join("token");
        std::fs::write(f.with_extension("tmp"), b"old").unwrap();
        std::fs::set_permissions(
            PathBuf::from(format!("{}.tmp", f.display())),
            std::fs::Permissions::from_mode(0o644),
        )
        .ok();
        write_private(&f, b"secret").unwrap();
        assert_eq!(mode(&f), 0o600);
    }
}
