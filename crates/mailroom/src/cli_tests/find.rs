//! Where an API command finds its server and token when `--url`/`--token` are not
//! given: `--config FILE` (its data_dir's listeners.json, else its http.listen; its
//! data_dir's operator-token), and `--url` winning over it. Also `status`'s version line.

use super::*;

/// Skips (returns true) when the environment names a server or token itself.
fn env_names_a_server() -> bool {
    ["MAILROOM_URL", "MAILROOM_TOKEN", "MAILROOM_DATA_DIR"]
        .iter()
        .any(|v| std::env::var_os(v).is_some())
}

fn write_token(dir: &std::path::Path, token: &str) {
    std::fs::write(dir.join("operator-token"), format!("{token}\n")).expect("operator-token");
}

fn config_file(s: &Setup, http_listen: &str) -> std::path::PathBuf {
    let path = s.dir.path().join("mailroom.toml");
    std::fs::write(
        &path,
        format!(
            "data_dir = {:?}\n[http]\nlisten = {http_listen:?}\n",
            s.dir.path().display().to_string()
        ),
    )
    .expect("config");
    path
}

fn run_argv(argv: &[&str]) -> anyhow::Result<()> {
    let cli = Cli::try_parse_from(argv).map_err(|e| anyhow::anyhow!("{e}"))?;
    run(cli)
}

#[test]
fn config_http_listen_and_data_dir_token() {
    if env_names_a_server() {
        return;
    }
    let s = setup(fake_api);
    write_token(s.dir.path(), &s.token);
    let conf = config_file(&s, &s.api.authority);
    run_argv(&[
        "mailroom",
        "tenant",
        "list",
        "--config",
        &conf.display().to_string(),
    ])
    .expect("tenant list --config");
    let seen = s.assert_token_stayed_home("--config");
    assert_eq!(
        seen.iter().map(Seen::line).collect::<Vec<_>>(),
        ["GET /v1/tenants"]
    );
}

#[test]
fn listeners_json_of_the_config_data_dir_wins_over_http_listen() {
    if env_names_a_server() {
        return;
    }
    let s = setup(fake_api);
    write_token(s.dir.path(), &s.token);
    // http.listen names the third party; the running server recorded the API.
    let trap_addr = s.trap.authority.clone();
    let conf = config_file(&s, &trap_addr);
    std::fs::write(
        s.dir.path().join("listeners.json"),
        json!({ "http": s.api.authority }).to_string(),
    )
    .expect("listeners.json");
    run_argv(&["mailroom", "queue", "--config", &conf.display().to_string()])
        .expect("queue --config");
    let seen = s.assert_token_stayed_home("listeners.json");
    assert_eq!(seen.len(), 1, "{seen:?}");
}

#[test]
fn url_wins_over_config() {
    let s = setup(fake_api);
    let trap_addr = s.trap.authority.clone();
    let conf = config_file(&s, &trap_addr);
    let mut argv = s.argv(&["tenant", "list"]);
    argv.extend(["--config".into(), conf.display().to_string()]);
    s.run(argv).expect("tenant list");
    let seen = s.assert_token_stayed_home("--url and --config");
    assert_eq!(seen.len(), 1, "{seen:?}");
}

#[test]
fn a_config_that_does_not_load_is_an_error_naming_it() {
    let s = setup(fake_api);
    let path = s.dir.path().join("bad.toml");
    std::fs::write(&path, "[http]\nlisten = 8080\n").expect("write");
    let mut argv = s.argv(&["tenant", "list"]);
    // --url is given too: a bad --config is still an error, not silently ignored.
    argv.extend(["--config".into(), path.display().to_string()]);
    let err = s.run(argv).expect_err("bad config");
    assert!(format!("{err:#}").contains("bad.toml"), "{err:#}");
    assert!(s.api.seen().is_empty());
}

#[test]
fn status_version_is_the_answering_node_s() {
    let v = json!({"nodes": [
        {"id": "a", "version": "0.1.0", "detail": {"http": "127.0.0.1:1"}},
        {"id": "b", "version": "0.2.0", "detail": {"http": "127.0.0.1:2"}},
    ]});
    assert_eq!(
        crate::server_find::node_version(&v, "127.0.0.1:2"),
        "0.2.0 (node b)"
    );
    assert_eq!(
        crate::server_find::node_version(&v, "127.0.0.1:9"),
        "0.1.0, 0.2.0 (2 nodes)"
    );
    assert_eq!(
        crate::server_find::node_version(&json!({"nodes": []}), "x:1"),
        "unknown (no node registered)"
    );
}
