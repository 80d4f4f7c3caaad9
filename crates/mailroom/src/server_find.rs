//! Which server an API command talks to and with which token, and `mailroom status`.
//! The server: `--url` / `MAILROOM_URL`; else `--config FILE` (the running server's
//! address from its data directory's `listeners.json`, else its `http.listen`); else
//! `--data-dir` (default `./mailroom-data`) and its `listeners.json`; else
//! `http://127.0.0.1:8080`, said on stderr. The token: `--token` / `MAILROOM_TOKEN`,
//! else the data directory's `operator-token`.

use crate::client::{ApiArgs, Client};
use anyhow::{Context, Result};
use serde_json::Value;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

/// The address used when nothing names a server.
pub const FALLBACK_URL: &str = "http://127.0.0.1:8080";

/// Where the CLI found its server and its token (each with where it came from).
#[derive(Debug, Clone)]
pub struct Target {
    pub url: String,
    pub url_from: String,
    pub token: String,
    pub token_from: String,
}

/// The data directory the flags name: `--data-dir` / `MAILROOM_DATA_DIR`, else the
/// configuration's `data_dir`, else `./mailroom-data`.
fn data_dir(args: &ApiArgs, config: Option<&crate::config::Config>) -> PathBuf {
    match (&args.data_dir, config) {
        (Some(d), _) => d.clone(),
        (None, Some(c)) => c.data_dir.clone(),
        (None, None) => PathBuf::from("./mailroom-data"),
    }
}

/// The `--config` file, loaded as `serve` would (environment overrides included).
fn load_config(args: &ApiArgs) -> Result<Option<crate::config::Config>> {
    args.config
        .as_ref()
        .map(|path| {
            crate::config::load(Some(path), std::env::vars())
                .with_context(|| format!("--config {}", path.display()))
        })
        .transpose()
}

/// The data directory an API command uses (see [`data_dir`]).
pub fn data_dir_for(args: &ApiArgs) -> Result<PathBuf> {
    Ok(data_dir(args, load_config(args)?.as_ref()))
}

/// The HTTP address recorded by a running server in `listeners.json`.
fn recorded_http(dir: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("listeners.json")).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    v["http"].as_str().map(|a| format!("http://{a}"))
}

/// A listen address as a client reaches it: the unspecified address becomes loopback.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), addr.port())
        }
        _ => addr,
    }
}

/// Resolves the server and the token (see the module doc); says on stderr when it
/// falls back to [`FALLBACK_URL`].
pub fn resolve(args: &ApiArgs) -> Result<Target> {
    resolve_with(args, true)
}

/// [`resolve`]; without `need_token`, a missing token file leaves the token empty
/// (`token_from` says so) instead of failing.
fn resolve_with(args: &ApiArgs, need_token: bool) -> Result<Target> {
    let config = load_config(args)?;
    let dir = data_dir(args, config.as_ref());
    let listeners = dir.join("listeners.json");
    let (url, url_from) = if let Some(u) = &args.url {
        (u.clone(), "--url / MAILROOM_URL".to_string())
    } else if let (Some(c), Some(path)) = (&config, &args.config) {
        match recorded_http(&dir) {
            Some(u) => (
                u,
                format!("{} (data_dir of {})", listeners.display(), path.display()),
            ),
            None => (
                format!("http://{}", reachable(c.http.listen)),
                format!("http.listen in {}", path.display()),
            ),
        }
    } else if let Some(u) = recorded_http(&dir) {
        (u, listeners.display().to_string())
    } else {
        eprintln!(
            "note: no --url, MAILROOM_URL, --config or {}: trying {FALLBACK_URL}",
            listeners.display()
        );
        (FALLBACK_URL.to_string(), "the default".to_string())
    };
    let (token, token_from) = match &args.token {
        Some(t) => (t.clone(), "--token / MAILROOM_TOKEN".to_string()),
        None => {
            let path = dir.join("operator-token");
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) if !need_token => {
                    let why = format!("none: no --token / MAILROOM_TOKEN, {}: {e}", path.display());
                    return Ok(Target {
                        url,
                        url_from,
                        token: String::new(),
                        token_from: why,
                    });
                }
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!(
                            "no --token / MAILROOM_TOKEN and cannot read {}",
                            path.display()
                        )
                    });
                }
            };
            let token = text.lines().next().unwrap_or_default().trim().to_string();
            (token, format!("the operator token in {}", path.display()))
        }
    };
    Ok(Target {
        url,
        url_from,
        token,
        token_from,
    })
}

/// `mailroom status`: which server and identity, the server's version, `/readyz`.
/// Exits non-zero when the server cannot be reached or is not ready.
pub async fn status(args: &ApiArgs) -> Result<()> {
    let target = resolve_with(args, false)?;
    let c = Client::with_target(&target)?;
    println!("server:   {} (from {})", target.url, target.url_from);
    println!("identity: {}", identity(&target));
    let ready = c
        .call(reqwest::Method::GET, c.endpoint(&["readyz"])?, None)
        .await;
    let version = if target.token.is_empty() {
        "unknown (GET /v1/nodes needs the operator token)".to_string()
    } else {
        match c
            .call(reqwest::Method::GET, c.endpoint(&["v1", "nodes"])?, None)
            .await
        {
            Ok(v) => node_version(&v, &c.authority()),
            Err(e) if ready.is_ok() => format!("unknown ({e:#})"),
            Err(_) => "unknown".to_string(),
        }
    };
    println!("version:  {version}");
    match ready {
        Ok(v) => {
            println!("health:   {}", v["status"].as_str().unwrap_or("ready"));
            Ok(())
        }
        Err(e) => {
            println!("health:   not ready ({e:#})");
            Err(e.context(format!("{} is not ready", target.url)))
        }
    }
}

/// Who the token makes us, as far as the CLI can tell without asking (the token
/// itself is never printed): the operator (the data directory's token file), or
/// whoever the token given on the command line or in the environment belongs to.
fn identity(t: &Target) -> String {
    if t.token.is_empty() {
        t.token_from.clone()
    } else if t.token_from.starts_with("the operator token") {
        format!("operator ({})", t.token_from)
    } else {
        format!("the token from {}", t.token_from)
    }
}

/// The version of the node that answers at `authority` (its `detail.http`), else of
/// the only node, else every version seen.
pub fn node_version(v: &Value, authority: &str) -> String {
    let empty = Vec::new();
    let nodes = v["nodes"].as_array().unwrap_or(&empty);
    let version = |n: &Value| n["version"].as_str().unwrap_or("?").to_string();
    if let Some(n) = nodes
        .iter()
        .find(|n| n["detail"]["http"].as_str() == Some(authority))
    {
        return format!("{} (node {})", version(n), n["id"].as_str().unwrap_or("?"));
    }
    match nodes.as_slice() {
        [] => "unknown (no node registered)".into(),
        [n] => format!("{} (node {})", version(n), n["id"].as_str().unwrap_or("?")),
        many => {
            let mut all: Vec<String> = many.iter().map(version).collect();
            all.sort();
            all.dedup();
            format!("{} ({} nodes)", all.join(", "), many.len())
        }
    }
}
