//! `mailroom throttle list | clear [--site S]` (traffic shaping, operator token):
//! the throttles and suspensions in force (`GET /v1/throttles`) as a table — site,
//! tenant, action and figure, rule, expiry, the remote reply that caused it — and
//! clearing them (`DELETE /v1/throttles`); `mailroom throttle pool TENANT [POOL]`
//! assigns a tenant's egress pool (`PUT /v1/tenants/{id}/egress-pool`);
//! `mailroom queue destinations` prints `GET /v1/queue/destinations` as one block per
//! site (see [`destinations_table`]).

use crate::client::{ApiArgs, Client, print};
use anyhow::Result;
use clap::Subcommand;
use serde_json::{Value, json};

#[derive(Subcommand, Debug)]
pub enum ThrottleCmd {
    /// Throttles and suspensions in force.
    List {
        /// Print the API's JSON instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Clear throttles and suspensions (all, or one site's).
    Clear {
        #[arg(long)]
        site: Option<String>,
    },
    /// Assign a tenant's egress pool (no POOL: back to the default pool).
    Pool {
        tenant: String,
        pool: Option<String>,
    },
}

pub async fn throttle(args: &ApiArgs, cmd: ThrottleCmd) -> Result<()> {
    let c = Client::new(args)?;
    match cmd {
        ThrottleCmd::List { json } => {
            let v = c
                .call(
                    reqwest::Method::GET,
                    c.endpoint(&["v1", "throttles"])?,
                    None,
                )
                .await?;
            if json {
                print(&v);
            } else {
                print!("{}", table(&v, mailroom_model::now_millis()));
            }
        }
        ThrottleCmd::Clear { site } => {
            let url = c.endpoint_query(&["v1", "throttles"], &[("site", site.as_deref())])?;
            print(&c.call(reqwest::Method::DELETE, url, None).await?);
        }
        ThrottleCmd::Pool { tenant, pool } => {
            let url = c.endpoint(&["v1", "tenants", &tenant, "egress-pool"])?;
            print(
                &c.call(reqwest::Method::PUT, url, Some(json!({ "pool": pool })))
                    .await?,
            );
        }
    }
    Ok(())
}

/// The table `mailroom throttle list` prints, expiries relative to `now` (Unix ms).
pub fn table(v: &Value, now: i64) -> String {
    let empty = Vec::new();
    let mut out = String::from("SITE\tTENANT\tACTION\tRULE\tEXPIRES IN\tCAUSE\n");
    for t in v["throttles"].as_array().unwrap_or(&empty) {
        let action = match t["value"].as_i64() {
            Some(n) => format!("{} {n}", t["action"].as_str().unwrap_or("?")),
            None => t["action"].as_str().unwrap_or("?").to_string(),
        };
        let secs = (t["expires_at"].as_i64().unwrap_or(now) - now).max(0) / 1000;
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}s\t{}\n",
            t["site"].as_str().unwrap_or("?"),
            t["tenant"].as_str().unwrap_or("*"),
            action,
            t["rule"].as_str().unwrap_or("?"),
            secs,
            t["cause"].as_str().unwrap_or("").replace('\n', " "),
        ));
    }
    out
}

/// The text `mailroom queue destinations` prints: a line per site (provider,
/// queued, oldest, connections in use and allowed, message rate, TLS floor), then
/// indented lines for its throttles (action, scope, expiry, cause) and warm-up
/// positions (address, day, sent of allowance).
pub fn destinations_table(v: &Value) -> String {
    let empty = Vec::new();
    let mut out = String::from("SITE\tPROVIDER\tQUEUED\tOLDEST\tCONNECTIONS\tRATE/MIN\tTLS\n");
    for s in v["sites"].as_array().unwrap_or(&empty) {
        let l = &s["limits"];
        let conns = match l["connections"].as_u64() {
            Some(max) => format!("{}/{max}", s["connections_in_use"].as_u64().unwrap_or(0)),
            None => "-".into(),
        };
        let rate = match l["messages_per_minute"].as_u64() {
            Some(0) => "-".to_string(),
            Some(n) => n.to_string(),
            None => "-".into(),
        };
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
            s["site"].as_str().unwrap_or("?"),
            s["provider"].as_str().unwrap_or("-"),
            s["queued"].as_i64().unwrap_or(0),
            s["oldest_at"].as_str().unwrap_or("-"),
            conns,
            rate,
            l["tls"].as_str().unwrap_or("-"),
        ));
        for t in s["throttles"].as_array().unwrap_or(&empty) {
            let action = match t["value"].as_i64() {
                Some(n) => format!("{} {n}", t["action"].as_str().unwrap_or("?")),
                None => t["action"].as_str().unwrap_or("?").to_string(),
            };
            out.push_str(&format!(
                "  {action}\ttenant {}\trule {}\tfor {}s\t{}\n",
                t["tenant"].as_str().unwrap_or("*"),
                t["rule"].as_str().unwrap_or("?"),
                t["expires_in_secs"].as_i64().unwrap_or(0),
                t["cause"].as_str().unwrap_or("").replace('\n', " "),
            ));
        }
        for w in s["warmup"].as_array().unwrap_or(&empty) {
            let pos = match (w["day"].as_i64(), w["allowance"].as_u64()) {
                (Some(d), Some(m)) => format!("day {d}\t{}/{m}", w["sent_today"]),
                _ => format!("warm\t{}", w["sent_today"]),
            };
            out.push_str(&format!(
                "  warm-up {} ({})\t{pos}\n",
                w["address"].as_str().unwrap_or("?"),
                w["pool"].as_str().unwrap_or("?"),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_shows_scope_action_and_expiry() {
        let v = json!({"throttles": [{
            "site": "provider:google", "tenant": null, "action": "throttle", "value": 60,
            "rule": "gmail-rate", "cause": "421 4.7.28 unusual rate", "expires_at": 61_000
        }]});
        let t = table(&v, 1_000);
        assert!(
            t.contains("provider:google\t*\tthrottle 60\tgmail-rate\t60s\t421 4.7.28 unusual rate"),
            "{t}"
        );
    }

    #[test]
    fn destinations_table_shows_site_throttle_and_warmup() {
        let v = json!({"sites": [{
            "site": "provider:yahoo", "provider": "yahoo", "queued": 12,
            "oldest_at": "2026-12-06T22:00:00Z", "connections_in_use": 2,
            "limits": {"connections": 5, "messages_per_minute": 600, "tls": "opportunistic"},
            "throttles": [{"action": "suspend", "value": null, "tenant": null,
                "rule": "yahoo-ts03", "expires_in_secs": 30, "cause": "421 4.7.0 [TS03]"}],
            "warmup": [{"address": "127.0.0.3", "pool": "p", "day": 1, "allowance": 20,
                "sent_today": 20}]
        }]});
        let t = destinations_table(&v);
        assert!(
            t.contains("provider:yahoo\tyahoo\t12\t2026-12-06T22:00:00Z\t2/5\t600\topportunistic"),
            "{t}"
        );
        assert!(
            t.contains("  suspend\ttenant *\trule yahoo-ts03\tfor 30s\t421 4.7.0 [TS03]"),
            "{t}"
        );
        assert!(t.contains("  warm-up 127.0.0.3 (p)\tday 1\t20/20"), "{t}");
    }
}
