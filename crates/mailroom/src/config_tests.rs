//! Loading and validating the configuration: defaults, file, environment overrides,
//! errors that name the key.

use super::*;

fn load_text(text: &str, env: &[(&str, &str)]) -> Result<Config> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.toml");
    std::fs::write(&path, text).unwrap();
    load(
        Some(&path),
        env.iter().map(|(a, b)| (a.to_string(), b.to_string())),
    )
}

#[test]
fn defaults_file_and_env() {
    let c = load(None, std::iter::empty()).unwrap();
    assert_eq!(c.smtp.max_recipients, 100);
    assert_eq!(c.http.listen.port(), 8080);
    let c = load_text(
        "hostname = \"mx.test\"\n[smtp]\nmax_recipients = 5\n",
        &[
            ("MAILROOM_SMTP__MAX_MESSAGE_SIZE", "2048"),
            ("MAILROOM_HTTP__LISTEN", "127.0.0.1:0"),
            ("MAILROOM_TOKEN", "x"),
        ],
    )
    .unwrap();
    assert_eq!(c.hostname, "mx.test");
    assert_eq!(c.smtp.max_recipients, 5);
    assert_eq!(c.smtp.max_message_size, 2048);
    assert_eq!(c.http.listen.port(), 0);
}

#[test]
fn errors_name_the_key() {
    let e = load_text("[smtp]\nmax_recipientz = 5\n", &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("max_recipientz"), "{e}");
    let e = load_text("[smtp]\nmax_recipients = \"many\"\n", &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("max_recipients") && e.contains("line 2"), "{e}");
    let e = load_text("[smtp]\nmax_recipients = 0\n", &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("smtp.max_recipients"), "{e}");
    // Found by tests/e2e/test_logs.py: the documented MAILROOM_LOG=debug filter
    // was taken for the [log] section and the server refused to start.
    let c = load_text("", &[("MAILROOM_LOG", "debug,sqlx=warn")]).unwrap();
    assert_eq!(c.log.level, "info");
    let e = load_text("", &[("MAILROOM_LOG__FORMAT", "xml")])
        .unwrap_err()
        .to_string();
    assert!(e.contains("log.format"), "{e}");
}

#[test]
fn storage_and_node_keys() {
    let c = load(None, std::iter::empty()).unwrap();
    assert_eq!(c.storage.backend, "sqlite");
    assert_eq!(
        (c.storage.pool_size, c.storage.statement_timeout_secs),
        (16, 30)
    );
    assert_eq!((c.node.id.as_deref(), c.node.heartbeat_secs), (None, 5));
    assert_eq!(c.delivery.lease_secs, 60);
    let url = "postgres://mr:hunter2@127.0.0.1:5432/mail";
    let c = load_text(
        "[storage]\nbackend = \"postgres\"\npool_size = 4\n[node]\nid = \"n1\"\n[delivery]\nlease_secs = 7\n",
        &[("MAILROOM_STORAGE__URL", url)],
    )
    .unwrap();
    assert_eq!(c.storage.url.as_deref(), Some(url));
    assert_eq!(c.storage.pool_size, 4);
    assert!(!format!("{c:?}").contains("hunter2"));
    let d = c.delivery_config(Vec::new(), "n1");
    assert_eq!(
        (d.lease, d.node_id.as_str()),
        (std::time::Duration::from_secs(7), "n1")
    );
    let e = load_text("[storage]\nbackend = \"postgres\"\n", &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("storage.url"), "{e}");
    let e = load_text(
        "[storage]\nbackend = \"postgres\"\nurl = \"http://u:hunter2@h/db\"\n",
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("storage.url") && !e.contains("hunter2"), "{e}");
    // A syntax error quotes the line: the password is redacted there too.
    let e = load_text("[storage]\nurl = postgres://u:hunter2@h/db\n", &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("line 2") && !e.contains("hunter2"), "{e}");
    let e = load_text("[storage]\nbackend = \"mysql\"\n", &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("storage.backend"), "{e}");
    let e = load_text("[node]\nheartbeat_secs = 0\n", &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("node.heartbeat_secs"), "{e}");
    let e = load_text("[node]\nid = \"a b\"\n", &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("node.id"), "{e}");
}
