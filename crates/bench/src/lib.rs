//! `mailroom bench`: an SMTP submission load generator. It opens `--connections`
//! sessions to a relay, submits `--messages` messages of `--size` bytes across
//! them, and reports throughput, latency percentiles and refusals. It also ships
//! a minimal in-process SMTP sink ([`sink`]) to measure against.
//!
//! Module map: `args` (flags), `message` (bytes of each message), `tls`
//! (accept-any client), `session` (one connection), `transaction` (one
//! message), `worker` (one connection's loop), `report` (figures), `sink`.

mod args;
mod message;
mod report;
mod session;
pub mod sink;
mod tls;
mod transaction;
mod worker;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use tokio::task::JoinSet;
use tokio::time::Instant;

pub use args::{BenchArgs, TlsMode};
pub use message::{MessageSpec, dot_stuff};
pub use report::Report;

use session::Endpoint;
use worker::{Shared, Tally};

/// Runs the benchmark described by `args` and returns its figures.
///
/// Fails on invalid arguments, or when not a single session could be opened
/// (the error names the first reason); refusals and mid-run I/O errors are
/// counted in the report instead.
pub async fn run(args: &BenchArgs) -> anyhow::Result<Report> {
    args.validate()?;
    let (host, _port) = args::split_target(&args.target)?;
    let connector = match args.tls {
        TlsMode::None => None,
        TlsMode::Starttls | TlsMode::Implicit => Some(tls::insecure_connector()?),
    };
    let endpoint = Endpoint {
        target: args.target.clone(),
        helo: args.helo.clone(),
        tls: args.tls,
        connector,
        server_name: tls::server_name(&host)?,
        auth_plain: match (&args.user, &args.password) {
            (Some(user), Some(password)) => Some(Endpoint::plain_credentials(user, password)),
            _ => None,
        },
    };
    let run_id = format!("{:016x}", rand::random::<u64>());
    let spec = MessageSpec::from_args(args, run_id);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.max_seconds);
    let mut shared = Shared::new(endpoint, spec, args.messages, deadline);
    shared.pace = args.rate.map(|rate| (started, rate));
    let shared = Arc::new(shared);

    let workers = u64::try_from(args.connections)
        .unwrap_or(u64::MAX)
        .min(args.messages);
    let mut tasks = JoinSet::new();
    for _ in 0..workers {
        let shared = shared.clone();
        let tally = Tally::new()?;
        tasks.spawn(async move { worker::work(&shared, tally).await });
    }
    let mut total = Tally::new()?;
    while let Some(done) = tasks.join_next().await {
        total.merge(&done.context("bench worker panicked")?)?;
    }
    let elapsed = started.elapsed();

    let samples = shared.samples();
    if workers > 0 && shared.sessions.load(Ordering::Relaxed) == 0 {
        let reason = samples.first().map_or("deadline reached", String::as_str);
        anyhow::bail!(
            "could not open any SMTP session with {}: {reason}",
            args.target
        );
    }
    Ok(report(args.messages, &total, elapsed, samples))
}

fn report(requested: u64, t: &Tally, elapsed: Duration, samples: Vec<String>) -> Report {
    let ms = |us: u64| us as f64 / 1000.0;
    let secs = elapsed.as_secs_f64();
    Report {
        requested,
        accepted: t.accepted,
        rejected: t.rejected,
        errors: t.errors,
        unsent: requested.saturating_sub(t.accepted + t.rejected + t.errors),
        connect_errors: t.connect_errors,
        deadline_reached: t.deadline_reached,
        elapsed,
        per_sec: if secs > 0.0 {
            t.accepted as f64 / secs
        } else {
            0.0
        },
        p50_ms: ms(t.latency_us.value_at_quantile(0.50)),
        p90_ms: ms(t.latency_us.value_at_quantile(0.90)),
        p99_ms: ms(t.latency_us.value_at_quantile(0.99)),
        p999_ms: ms(t.latency_us.value_at_quantile(0.999)),
        max_ms: ms(t.latency_us.max()),
        samples,
    }
}

/// Runs the benchmark and prints its report to stdout (text, or JSON with `--json`).
pub async fn run_cli(args: BenchArgs) -> anyhow::Result<()> {
    let sink_config = sink::SinkConfig {
        tls: match (&args.sink_tls_cert, &args.sink_tls_key) {
            (Some(cert), Some(key)) => Some(tls::sink_acceptor(cert, key)?),
            _ => None,
        },
        ..sink::SinkConfig::default()
    };
    let sink = match args.sink_listen {
        Some(addr) => Some(
            sink::spawn_sink_on(addr, sink_config)
                .await
                .with_context(|| format!("cannot listen on --sink-listen {addr}"))?
                .1,
        ),
        None => None,
    };
    let started = Instant::now();
    let accepted = if args.sink_only {
        args.messages
    } else {
        let report = run(&args).await?;
        if args.json {
            println!("{}", report.to_json());
        } else {
            println!("{report}");
        }
        report.accepted
    };
    if let Some(stats) = sink {
        // End to end: until every accepted recipient has reached the sink.
        let want = accepted * args.recipients as u64;
        let deadline = started + Duration::from_secs(args.max_seconds);
        while stats.recipients.load(Ordering::Relaxed) < want && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let elapsed = started.elapsed().as_secs_f64();
        let got = stats.recipients.load(Ordering::Relaxed);
        let messages = stats.messages.load(Ordering::Relaxed);
        let sessions = stats.sessions.load(Ordering::Relaxed);
        println!(
            "sink         {got} of {want} recipients in {messages} messages over {sessions} sessions"
        );
        println!(
            "end-to-end   {elapsed:.3} s, {:.1} msg/s",
            accepted as f64 / elapsed
        );
        if got < want {
            anyhow::bail!("the sink received {got} of {want} recipients before --max-seconds");
        }
    }
    Ok(())
}
