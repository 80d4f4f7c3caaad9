//! CLI subcommands for the event stream and webhooks, through the HTTP API:
//! `mailroom events tail [--follow]` and `mailroom webhook add|list|remove|test`.

use crate::client::{ApiArgs, Client, print};
use anyhow::Result;
use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::time::Duration;

#[derive(Subcommand, Debug)]
pub enum EventsCmd {
    /// Print the latest events, one JSON object per line (oldest first).
    Tail {
        /// Keep printing new events as they are recorded.
        #[arg(long, short)]
        follow: bool,
        /// Only these types (comma-separated, e.g. delivered,bounced).
        #[arg(long = "type")]
        kind: Option<String>,
        /// How many of the latest events to print first.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
}

#[derive(Subcommand, Debug)]
pub enum WebhookCmd {
    /// Register a webhook; prints its id and signing secret (shown once).
    Add {
        /// Where Mailroom will POST the signed events (https:// in production); not
        /// the API, which is --url.
        // Its own clap id: never the global `--url` (`api_url`), the one host the
        // token is sent to.
        #[arg(id = "webhook_url", value_name = "RECEIVER_URL")]
        url: String,
        /// Event types to send (comma-separated); default: all.
        #[arg(long)]
        events: Option<String>,
        /// The tenant (name or id); required with the operator token.
        #[arg(long)]
        tenant: Option<String>,
    },
    List,
    Remove {
        id: String,
    },
    /// Send a signed ping now and show the receiver's answer.
    Test {
        id: String,
    },
}

fn events_url(c: &Client, after: &str, kind: Option<&str>, limit: usize) -> Result<reqwest::Url> {
    let limit = limit.to_string();
    let after = Some(after).filter(|a| !a.is_empty());
    c.endpoint_query(
        &["v1", "events"],
        &[("limit", Some(&limit)), ("after", after), ("type", kind)],
    )
}

pub async fn events(args: &ApiArgs, cmd: EventsCmd) -> Result<()> {
    let c = Client::new(args)?;
    let EventsCmd::Tail {
        follow,
        kind,
        limit,
    } = cmd;
    // The API reads forward from a cursor: page to the end, keeping the last `limit`.
    let mut last: VecDeque<Value> = VecDeque::with_capacity(limit);
    let mut cursor = String::new();
    loop {
        let page = c
            .call(
                Method::GET,
                events_url(&c, &cursor, kind.as_deref(), 1000)?,
                None,
            )
            .await?;
        let events = page["events"].as_array().cloned().unwrap_or_default();
        let next = page["next_cursor"].as_str().unwrap_or_default().to_string();
        for e in events.iter().cloned() {
            if last.len() == limit {
                last.pop_front();
            }
            if limit > 0 {
                last.push_back(e);
            }
        }
        let at_end = next == cursor || events.len() < 1000;
        cursor = next;
        if at_end {
            break;
        }
    }
    for e in last {
        println!("{e}");
    }
    if !follow {
        return Ok(());
    }
    loop {
        let page = c
            .call(
                Method::GET,
                events_url(&c, &cursor, kind.as_deref(), 1000)?,
                None,
            )
            .await?;
        let events = page["events"].as_array().cloned().unwrap_or_default();
        for e in &events {
            println!("{e}");
        }
        if let Some(next) = page["next_cursor"].as_str() {
            cursor = next.to_string();
        }
        if events.len() < 1000 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

pub async fn webhook(args: &ApiArgs, cmd: WebhookCmd) -> Result<()> {
    let c = Client::new(args)?;
    let v = match cmd {
        WebhookCmd::Add {
            url,
            events,
            tenant,
        } => {
            let mut body = json!({ "url": url });
            if let Some(list) = events {
                body["event_types"] = json!(
                    list.split(',')
                        .map(str::trim)
                        .filter(|t| !t.is_empty())
                        .collect::<Vec<_>>()
                );
            }
            if let Some(t) = tenant {
                body["tenant_id"] = json!(c.tenant_id(&t).await?);
            }
            c.call(Method::POST, c.endpoint(&["v1", "webhooks"])?, Some(body))
                .await?
        }
        WebhookCmd::List => {
            c.call(Method::GET, c.endpoint(&["v1", "webhooks"])?, None)
                .await?
        }
        WebhookCmd::Remove { id } => {
            let url = c.endpoint(&["v1", "webhooks", &id])?;
            c.call(Method::DELETE, url, None).await?;
            json!({ "removed": id })
        }
        WebhookCmd::Test { id } => {
            let url = c.endpoint(&["v1", "webhooks", &id, "test"])?;
            c.call(Method::POST, url, None).await?
        }
    };
    print(&v);
    Ok(())
}
