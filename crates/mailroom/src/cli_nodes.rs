//! `mailroom nodes`: the nodes sharing the store (`GET /v1/nodes`, operator token) as
//! a table — id, alive or dead, age of the last heartbeat, leased recipients — or as
//! the API's JSON (`--json`); `mailroom reload` (`POST /v1/admin/reload`).

use crate::client::{ApiArgs, Client, print};
use anyhow::Result;
use serde_json::Value;

pub async fn nodes(args: &ApiArgs, json: bool) -> Result<()> {
    let c = Client::new(args)?;
    let v = c
        .call(reqwest::Method::GET, c.endpoint(&["v1", "nodes"])?, None)
        .await?;
    if json {
        print(&v);
    } else {
        print!("{}", table(&v, mailroom_model::now_millis()));
    }
    Ok(())
}

/// `mailroom reload`: the server re-reads its configuration file; prints what changed
/// live and what waits for a restart. A refused file is an error (exit status 1) with
/// the server's reason.
pub async fn reload(args: &ApiArgs) -> Result<()> {
    let c = Client::new(args)?;
    let v = c
        .call(
            reqwest::Method::POST,
            c.endpoint(&["v1", "admin", "reload"])?,
            None,
        )
        .await?;
    let list = |key: &str| -> Vec<String> {
        v[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let file = v["file"].as_str().unwrap_or("(embedded defaults)");
    println!("reloaded {file}");
    let applied = list("applied");
    if applied.is_empty() {
        println!("applied: no live setting changed");
    } else {
        println!("applied: {}", applied.join(", "));
    }
    for key in list("restart_required") {
        println!("warning: {key} changed but takes effect only after a restart");
    }
    for w in list("warnings") {
        println!("warning: {w}");
    }
    Ok(())
}

/// The table `mailroom nodes` prints, ages taken at `now` (Unix ms).
pub fn table(v: &Value, now: i64) -> String {
    let empty = Vec::new();
    let nodes = v["nodes"].as_array().unwrap_or(&empty);
    let rows: Vec<[String; 4]> = nodes
        .iter()
        .map(|n| {
            [
                n["id"].as_str().unwrap_or("?").to_string(),
                if n["alive"].as_bool() == Some(true) {
                    "alive"
                } else {
                    "dead"
                }
                .to_string(),
                n["last_seen"]
                    .as_i64()
                    .map(|t| format!("{} ago", age(now - t)))
                    .unwrap_or_else(|| "-".into()),
                n["leased_recipients"].as_i64().unwrap_or(0).to_string(),
            ]
        })
        .collect();
    let head = ["NODE", "STATE", "LAST HEARTBEAT", "LEASED"];
    let width = |i: usize| {
        rows.iter()
            .map(|r| r[i].len())
            .chain([head[i].len()])
            .max()
            .unwrap_or(0)
    };
    let (w0, w1, w2) = (width(0), width(1), width(2));
    let mut out = String::new();
    for r in std::iter::once(head.map(String::from)).chain(rows) {
        out.push_str(&format!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {}\n",
            r[0], r[1], r[2], r[3]
        ));
    }
    if nodes.is_empty() {
        out.push_str("(no node has sent a heartbeat)\n");
    }
    out
}

/// `850ms`, `42s`, `3m05s`, `2h10m`, `4d03h`.
fn age(ms: i64) -> String {
    let ms = ms.max(0);
    let s = ms / 1000;
    match s {
        0 => format!("{ms}ms"),
        1..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn the_table_shows_state_age_and_leases() {
        let v = json!({"nodes": [
            {"id": "mx1-a1b2c3", "alive": true, "last_seen": 998_000, "leased_recipients": 12},
            {"id": "mx2", "alive": false, "last_seen": 1_000_000 - 3_725_000, "leased_recipients": 0}
        ]});
        let t = super::table(&v, 1_000_000);
        assert_eq!(
            t,
            "NODE        STATE  LAST HEARTBEAT  LEASED\n\
             mx1-a1b2c3  alive  2s ago          12\n\
             mx2         dead   1h02m ago       0\n"
        );
        assert!(super::table(&json!({"nodes": []}), 0).contains("no node"));
    }
}
