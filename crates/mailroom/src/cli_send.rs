//! `mailroom send` (one message, or `--count N --concurrency C` with a progress bar and
//! a summary of outcomes) and `mailroom suppression list|add|remove`, both over the
//! HTTP API with a tenant API key (`--token` / `MAILROOM_TOKEN`).

use crate::client::{ApiArgs, ApiFailure, Client, print};
use anyhow::{Context, Result, bail};
use base64::Engine as _;
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Args, Debug)]
pub struct SendArgs {
    #[arg(long)]
    pub from: String,
    /// Recipient (repeat for more).
    #[arg(long, required = true)]
    pub to: Vec<String>,
    #[arg(long)]
    pub cc: Vec<String>,
    #[arg(long)]
    pub bcc: Vec<String>,
    #[arg(long, default_value = "Test message from mailroom send")]
    pub subject: String,
    #[arg(long)]
    pub text: Option<String>,
    #[arg(long)]
    pub html: Option<String>,
    /// A file to attach (repeat for more).
    #[arg(long)]
    pub attach: Vec<PathBuf>,
    #[arg(long)]
    pub tag: Vec<String>,
    #[arg(long)]
    pub idempotency_key: Option<String>,
    /// Send this many copies (load test); a summary is printed at the end.
    #[arg(long, default_value_t = 1)]
    pub count: u64,
    /// Requests in flight at once with --count.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
}

#[derive(Subcommand, Debug)]
pub enum SuppressionCmd {
    List {
        /// Operator only: the tenant whose list to show.
        #[arg(long)]
        tenant: Option<String>,
    },
    Add {
        address: String,
        #[arg(long, default_value = "manual")]
        reason: String,
        #[arg(long)]
        note: Option<String>,
        #[arg(long)]
        tenant: Option<String>,
    },
    Remove {
        address: String,
        #[arg(long)]
        tenant: Option<String>,
    },
}

/// The summary line of requests the API accepted.
const ACCEPTED: &str = "202 accepted";

fn body(args: &SendArgs) -> Result<Value> {
    let mut attachments = Vec::new();
    for path in &args.attach {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let filename = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "attachment".into());
        // The type a mail client will use to open it, guessed from the extension.
        let content_type = mime_guess::from_path(path).first_or_octet_stream();
        attachments.push(json!({
            "filename": filename,
            "content_type": content_type.essence_str(),
            "content": base64::engine::general_purpose::STANDARD.encode(bytes),
        }));
    }
    let text = match (&args.text, &args.html) {
        (None, None) => Some("Sent with mailroom send.".to_string()),
        (t, _) => t.clone(),
    };
    Ok(json!({
        "from": args.from,
        "to": args.to,
        "cc": args.cc,
        "bcc": args.bcc,
        "subject": args.subject,
        "text": text,
        "html": args.html,
        "attachments": attachments,
        "tags": args.tag,
    }))
}

pub async fn send(api: &ApiArgs, args: SendArgs) -> Result<()> {
    let client = Arc::new(Client::new(api)?);
    let body = body(&args)?;
    if args.count <= 1 {
        let extra: Vec<(&str, String)> = args
            .idempotency_key
            .iter()
            .map(|k| ("Idempotency-Key", k.clone()))
            .collect();
        let v = client
            .call_with(
                reqwest::Method::POST,
                client.endpoint(&["v1", "messages"])?,
                Some(body),
                &extra,
            )
            .await?;
        print(&v);
        return Ok(());
    }
    if args.idempotency_key.is_some() {
        bail!("--idempotency-key makes no sense with --count (every copy would be the first)");
    }
    let concurrency = args.concurrency.max(1);
    let bar = indicatif::ProgressBar::new(args.count);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {per_sec} eta {eta} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let url = client.endpoint(&["v1", "messages"])?;
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (client, url, body, next, bar, count) = (
            client.clone(),
            url.clone(),
            body.clone(),
            next.clone(),
            bar.clone(),
            args.count,
        );
        workers.push(tokio::spawn(async move {
            let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
            let mut latencies = Vec::new();
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < count {
                let t = Instant::now();
                let result = client
                    .call_with(reqwest::Method::POST, url.clone(), Some(body.clone()), &[])
                    .await;
                latencies.push(t.elapsed());
                let key = match result {
                    Ok(v) => {
                        for r in v["recipients"].as_array().into_iter().flatten() {
                            let status = r["status"].as_str().unwrap_or("?");
                            *outcomes.entry(format!("recipient {status}")).or_default() += 1;
                        }
                        ACCEPTED.to_string()
                    }
                    Err(e) => match e.downcast_ref::<ApiFailure>() {
                        Some(f) => f.answer.chars().take(80).collect(),
                        None => format!("{e:#}").chars().take(80).collect(),
                    },
                };
                *outcomes.entry(key).or_default() += 1;
                bar.inc(1);
            }
            (outcomes, latencies)
        }));
    }
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    let mut latencies: Vec<Duration> = Vec::new();
    for w in workers {
        let (o, l) = w.await.context("send worker")?;
        for (k, n) in o {
            *outcomes.entry(k).or_default() += n;
        }
        latencies.extend(l);
    }
    bar.finish_and_clear();
    let elapsed = started.elapsed();
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * p).round() as usize)
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(0.0)
    };
    println!(
        "{} requests in {:.2} s ({:.0}/s), latency p50 {:.1} ms, p99 {:.1} ms",
        latencies.len(),
        elapsed.as_secs_f64(),
        latencies.len() as f64 / elapsed.as_secs_f64().max(1e-9),
        pct(0.5),
        pct(0.99)
    );
    let accepted = outcomes.get(ACCEPTED).copied().unwrap_or(0);
    for (k, n) in outcomes {
        println!("  {n:>8}  {k}");
    }
    // Like a single send, a refused request makes the exit status non-zero.
    let failed = args.count - accepted;
    if failed > 0 {
        bail!("{failed} of {} requests were not accepted", args.count);
    }
    Ok(())
}

pub async fn suppression(api: &ApiArgs, cmd: SuppressionCmd) -> Result<()> {
    let c = Client::new(api)?;
    use reqwest::Method as M;
    // The API takes a tenant id; like every other command, accept a name too.
    let tenant_id = async |t: Option<String>| -> Result<Option<String>> {
        match t {
            Some(t) => Ok(Some(c.tenant_id(&t).await?)),
            None => Ok(None),
        }
    };
    let v = match cmd {
        SuppressionCmd::List { tenant } => {
            let t = tenant_id(tenant).await?;
            let url = c.endpoint_query(&["v1", "suppressions"], &[("tenant", t.as_deref())])?;
            c.call(M::GET, url, None).await?
        }
        SuppressionCmd::Add {
            address,
            reason,
            note,
            tenant,
        } => {
            let t = tenant_id(tenant).await?;
            let body = json!({"address": address, "reason": reason, "note": note, "tenant_id": t});
            c.call(M::POST, c.endpoint(&["v1", "suppressions"])?, Some(body))
                .await?
        }
        SuppressionCmd::Remove { address, tenant } => {
            let t = tenant_id(tenant).await?;
            let url = c.endpoint_query(
                &["v1", "suppressions", &address],
                &[("tenant", t.as_deref())],
            )?;
            c.call(M::DELETE, url, None).await?;
            json!({ "removed": address })
        }
    };
    print(&v);
    Ok(())
}
