//! The key-encryption key (KEK) of the secrets at rest (`[secrets]`): where it comes
//! from (`secrets.key`, usually `MAILROOM_SECRETS__KEY`; else the file
//! `secrets.key_file`, by default `data_dir/secrets.key`, generated 0600 on the first
//! start of a database that holds no sealed secret), the start-up check that every
//! stored secret opens (a wrong or missing key stops the start, naming the setting;
//! a new key is never generated over sealed data), the migration that seals
//! plaintext rows of older databases and re-seals rows under an older key, and
//! `mailroom secrets rotate-key`. The crypto is `mailroom_secrets`'.

use crate::config::Config;
use crate::files;
use anyhow::{Context, Result, bail};
use mailroom_secrets::{Kek, Keyring};
use mailroom_store::{SecretUpdate, Store};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecretsSection {
    /// The KEK file (base64 of 32 bytes, mode 0600); default `data_dir/secrets.key`.
    pub key_file: Option<PathBuf>,
    /// The KEK itself, base64 (set it with `MAILROOM_SECRETS__KEY`); wins over
    /// `key_file`.
    pub key: Option<KeyText>,
    /// Older keys (base64) that still open secrets, during a rotation.
    pub previous_keys: Vec<KeyText>,
    /// Files of older keys that still open secrets, during a rotation.
    pub previous_key_files: Vec<PathBuf>,
}

/// Key text from the configuration; never printed.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct KeyText(String);

impl fmt::Debug for KeyText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyText(redacted)")
    }
}

/// Checks the keys given as text (files are read at start).
pub fn validate(s: &SecretsSection) -> Result<()> {
    if let Some(k) = &s.key {
        Kek::from_base64(&k.0)
            .map_err(|e| anyhow::anyhow!("invalid value for key secrets.key: {e}"))?;
    }
    for (i, k) in s.previous_keys.iter().enumerate() {
        Kek::from_base64(&k.0).map_err(|e| {
            anyhow::anyhow!("invalid value for key secrets.previous_keys[{i}]: {e}")
        })?;
    }
    Ok(())
}

/// The key file: `secrets.key_file`, or `data_dir/secrets.key`.
pub fn key_file(config: &Config) -> PathBuf {
    config
        .secrets
        .key_file
        .clone()
        .unwrap_or_else(|| config.data_dir.join("secrets.key"))
}

/// `<key file>.old` (the key before the last rotation) or `.next` (a rotation under
/// way): read as older keys while they exist.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Reads a key file; `None` when it does not exist.
fn read_key_file(path: &Path, setting: &str) -> Result<Option<Kek>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Kek::from_base64(&text).map(Some).map_err(|e| {
            anyhow::anyhow!("invalid value for key {setting}: {} : {e}", path.display())
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {setting} {}", path.display())),
    }
}

/// The keyring for this start, and what its current key is called in messages.
pub struct Loaded {
    pub keyring: Arc<Keyring>,
    pub setting: String,
}

/// Loads the KEK (generating the default file when allowed), checks that every
/// stored secret opens, then seals plaintext rows and re-seals rows under older keys.
pub async fn open(config: &Config, store: &dyn Store) -> Result<Loaded> {
    let stored = store
        .list_secrets()
        .await
        .context("reading stored secrets")?;
    let sealed_ids: BTreeSet<String> = stored
        .iter()
        .filter_map(|s| s.value.key_id().map(str::to_string))
        .collect();
    let path = key_file(config);
    let mut readable = Vec::new();
    let (current, setting, from_file) = match &config.secrets.key {
        Some(k) => (
            Kek::from_base64(&k.0)
                .map_err(|e| anyhow::anyhow!("invalid value for key secrets.key: {e}"))?,
            "secrets.key (MAILROOM_SECRETS__KEY)".to_string(),
            false,
        ),
        None => {
            let setting = format!("secrets.key_file ({})", path.display());
            match read_key_file(&path, "secrets.key_file")? {
                Some(k) => {
                    if let Some(old) = files::secure_file(&path)? {
                        tracing::warn!(file = %path.display(), old_mode = format!("{old:o}"), "key file was readable by others; mode set to 0600");
                    }
                    (k, setting, true)
                }
                None if sealed_ids.is_empty() => {
                    let (k, text) = Kek::generate()?;
                    // A missing parent is created 0700; an existing one (the data
                    // directory, or the operator's) is left as it is.
                    if let Some(dir) = path
                        .parent()
                        .filter(|d| !d.as_os_str().is_empty() && !d.exists())
                    {
                        files::create_private_dir(dir)?;
                    }
                    files::write_private(&path, format!("{text}\n").as_bytes())
                        .context("writing secrets.key_file")?;
                    tracing::info!(file = %path.display(), key_id = k.id(), "generated the key-encryption key for secrets at rest; back it up apart from the database");
                    (k, setting, true)
                }
                None => bail!(
                    "the database holds secrets sealed under key {} but {setting} does not \
                     exist: restore that file, or point secrets.key_file (or \
                     MAILROOM_SECRETS__KEY) at the key they were sealed with; a new key is \
                     not generated over sealed data",
                    join(&sealed_ids)
                ),
            }
        }
    };
    for (i, k) in config.secrets.previous_keys.iter().enumerate() {
        readable.push(Kek::from_base64(&k.0).map_err(|e| {
            anyhow::anyhow!("invalid value for key secrets.previous_keys[{i}]: {e}")
        })?);
    }
    for (i, p) in config.secrets.previous_key_files.iter().enumerate() {
        let key = format!("secrets.previous_key_files[{i}]");
        match read_key_file(p, &key)? {
            Some(k) => readable.push(k),
            None => bail!(
                "invalid value for key {key}: {} does not exist",
                p.display()
            ),
        }
    }
    if from_file {
        for suffix in [".old", ".next"] {
            let p = sibling(&path, suffix);
            if let Some(k) = read_key_file(&p, "secrets.key_file")? {
                files::secure_file(&p)?;
                readable.push(k);
            }
        }
    }
    let keyring = Keyring::new(current, readable);
    let unknown: BTreeSet<String> = sealed_ids
        .iter()
        .filter(|id| !keyring.knows(id))
        .cloned()
        .collect();
    if !unknown.is_empty() {
        bail!(
            "wrong key: the database holds secrets sealed under key {} but {setting} is key \
             {} (known: {}). Set secrets.key_file or MAILROOM_SECRETS__KEY to the key they \
             were sealed with (during a rotation, list the old one in \
             secrets.previous_key_files or secrets.previous_keys)",
            join(&unknown),
            keyring.current_id(),
            keyring.key_ids().join(", ")
        );
    }
    let (plain, moved) = reseal(&keyring, store, &setting).await?;
    if plain > 0 {
        tracing::info!(
            count = plain,
            key_id = keyring.current_id(),
            "sealed plaintext secrets (DKIM keys, webhook secrets) of an older database"
        );
    }
    if moved > 0 {
        tracing::info!(
            count = moved,
            key_id = keyring.current_id(),
            "re-sealed secrets under the current key"
        );
    }
    if from_file && sibling(&path, ".old").exists() {
        tracing::warn!(file = %sibling(&path, ".old").display(), "every secret is sealed under the current key: the old key file is no longer needed; delete it once backups made under it are gone");
    }
    Ok(Loaded {
        keyring: Arc::new(keyring),
        setting,
    })
}

fn join(ids: &BTreeSet<String>) -> String {
    ids.iter().cloned().collect::<Vec<_>>().join(", ")
}

/// Seals every plaintext secret and re-seals every secret not under the current key,
/// in one transaction. Returns (plaintext sealed, re-sealed).
pub async fn reseal(keyring: &Keyring, store: &dyn Store, setting: &str) -> Result<(usize, usize)> {
    let mut updates = Vec::new();
    let (mut plain, mut moved) = (0, 0);
    for s in store
        .list_secrets()
        .await
        .context("reading stored secrets")?
    {
        let context = s.owner.context();
        match keyring.reseal(&context, &s.value) {
            Ok(Some(new)) => {
                if s.value.is_sealed() {
                    moved += 1;
                } else {
                    plain += 1;
                }
                updates.push(SecretUpdate {
                    owner: s.owner,
                    old: s.value,
                    new,
                });
            }
            Ok(None) => {}
            Err(e) => bail!("the stored secret of {context} does not open with {setting}: {e}"),
        }
    }
    if !updates.is_empty() {
        store
            .replace_secrets(updates)
            .await
            .context("writing re-sealed secrets")?;
    }
    Ok((plain, moved))
}

/// `mailroom secrets rotate-key`: a new key file, every secret re-sealed under it in
/// one transaction, the old key kept as `<key file>.old` (still read at start) until
/// the operator deletes it. Run with the service stopped.
pub async fn rotate(config: &Config, store: &dyn Store) -> Result<String> {
    if config.secrets.key.is_some() {
        bail!(
            "secrets.key is set (MAILROOM_SECRETS__KEY): rotate by setting the new key there \
             and the old one in secrets.previous_keys (MAILROOM_SECRETS__PREVIOUS_KEYS), \
             starting once, then removing the old one"
        );
    }
    if let Some(addr) = running_server(&config.data_dir) {
        bail!(
            "the service is running (its HTTP listener {addr}, from listeners.json, answers): \
             stop it before rotating the key; a running server keeps the old key in memory"
        );
    }
    let loaded = open(config, store).await?;
    let path = key_file(config);
    let old_text = std::fs::read(&path)
        .with_context(|| format!("cannot read secrets.key_file {}", path.display()))?;
    let old = Kek::from_base64(&String::from_utf8_lossy(&old_text))?;
    let (new, new_text) = Kek::generate()?;
    let new_id = new.id().to_string();
    // The new key is on disk before any row is sealed under it, and the old one
    // stays readable (`.old`) whatever happens next.
    let next = sibling(&path, ".next");
    files::write_private(&next, format!("{new_text}\n").as_bytes())?;
    files::write_private(&sibling(&path, ".old"), &old_text)?;
    let ring = Keyring::new(new, vec![old]);
    let (_, moved) = reseal(&ring, store, &loaded.setting).await?;
    std::fs::rename(&next, &path).with_context(|| format!("cannot replace {}", path.display()))?;
    if let Some(dir) = path.parent() {
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(format!(
        "new key {new_id} in {}; {moved} secrets re-sealed under it.\n\
         The previous key {} is kept in {} and still read at start: delete it once \
         `mailroom serve` has started with the new key and no backup needs it.",
        path.display(),
        loaded.keyring.current_id(),
        sibling(&path, ".old").display()
    ))
}

/// The HTTP address of a server still running on this data directory, if one answers.
fn running_server(data_dir: &Path) -> Option<std::net::SocketAddr> {
    let text = std::fs::read_to_string(data_dir.join("listeners.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let addr: std::net::SocketAddr = v.get("http")?.as_str()?.parse().ok()?;
    std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(1))
        .ok()
        .map(|_| addr)
}

#[cfg(test)]
mod tests {
    use crate::config::parse;
    use mailroom_secrets::Kek;

    fn env(pairs: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn config_errors_name_the_key_and_keys_are_not_printed() {
        let e = parse("[secrets]\nkey = \"c2hvcnQ=\"\n", "m.toml", env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("secrets.key") && e.contains("32 bytes"), "{e}");
        let e = parse(
            "",
            "m.toml",
            env(&[("MAILROOM_SECRETS__PREVIOUS_KEYS", "[\"nope\"]")]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("secrets.previous_keys[0]"), "{e}");
        let e = parse("[secrets]\nkey_fil = \"x\"\n", "m.toml", env(&[]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("key_fil"), "{e}");
        let (_, text) = Kek::generate().unwrap();
        let c = parse("", "m.toml", env(&[("MAILROOM_SECRETS__KEY", &text)])).unwrap();
        assert!(c.secrets.key.is_some());
        assert!(!format!("{c:?}").contains(&text), "the key is printed");
    }

    #[tokio::test]
    async fn a_damaged_key_file_names_the_setting() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = parse("", "m.toml", env(&[])).unwrap();
        c.data_dir = dir.path().to_path_buf();
        let store = mailroom_store::sqlite::SqliteStore::open(&dir.path().join("m.db"))
            .await
            .unwrap();
        std::fs::write(dir.path().join("secrets.key"), "not a key\n").unwrap();
        let e = super::open(&c, &store).await.err().unwrap().to_string();
        assert!(e.contains("secrets.key_file"), "{e}");
        std::fs::remove_file(dir.path().join("secrets.key")).unwrap();
        let first = super::open(&c, &store).await.unwrap();
        let again = super::open(&c, &store).await.unwrap();
        assert_eq!(first.keyring.current_id(), again.keyring.current_id());
    }
}
