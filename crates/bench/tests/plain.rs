//! The bench against the in-process sink over plain TCP: counts, sizes,
//! dot-stuffing, recipients, with and without PIPELINING, and a dead target.

mod common;

use std::sync::atomic::Ordering;

use mailroom_bench::sink::{SinkConfig, spawn_sink, spawn_sink_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pipelined_run_delivers_every_message_intact() {
    let (addr, stats) = spawn_sink().await;
    let target = addr.to_string();
    let args = common::args(&[
        "--target",
        &target,
        "--messages",
        "200",
        "--connections",
        "4",
        "--recipients",
        "2",
        "--size",
        "5120",
        "--max-seconds",
        "60",
    ]);
    let report = mailroom_bench::run(&args).await.expect("run");
    assert_eq!(
        (
            report.accepted,
            report.rejected,
            report.errors,
            report.unsent
        ),
        (200, 0, 0, 0)
    );
    assert!(report.samples.is_empty(), "{:?}", report.samples);
    assert!(
        report.p50_ms > 0.0 && report.p50_ms <= report.p99_ms && report.p99_ms <= report.max_ms
    );
    assert!(report.per_sec > 0.0);
    assert_eq!(stats.messages(), 200);
    assert_eq!(stats.bytes(), 200 * 5120);
    assert_eq!(stats.recipients.load(Ordering::Relaxed), 400);
    assert_eq!(stats.sessions.load(Ordering::Relaxed), 4);
    common::assert_captured_exactly(&args, &stats.captured(), 200);
}

#[tokio::test]
async fn one_command_at_a_time_without_pipelining() {
    let config = SinkConfig {
        no_pipelining: true,
        ..SinkConfig::default()
    };
    let (addr, stats) = spawn_sink_with(config).await.expect("sink");
    let target = addr.to_string();
    let args = common::args(&[
        "--target",
        &target,
        "--messages",
        "30",
        "--connections",
        "3",
        "--size",
        "900",
    ]);
    let report = mailroom_bench::run(&args).await.expect("run");
    assert_eq!((report.accepted, report.errors), (30, 0));
    common::assert_captured_exactly(&args, &stats.captured(), 30);
}

#[tokio::test]
async fn unreachable_target_is_an_error_naming_the_cause() {
    // Bind then drop: the port is (almost certainly) closed afterwards.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port");
    let target = closed.to_string();
    let args = common::args(&["--target", &target, "--messages", "5", "--connections", "2"]);
    let err = mailroom_bench::run(&args).await.expect_err("no server");
    assert!(
        err.to_string().contains("could not open any SMTP session"),
        "{err:#}"
    );
}

#[tokio::test]
async fn report_renders_as_json() {
    let (addr, _stats) = spawn_sink().await;
    let target = addr.to_string();
    let args = common::args(&[
        "--target",
        &target,
        "--messages",
        "3",
        "--connections",
        "1",
        "--json",
    ]);
    let report = mailroom_bench::run(&args).await.expect("run");
    let json = report.to_json();
    assert!(
        json.starts_with('{') && json.contains("\"accepted\":3"),
        "{json}"
    );
}

#[tokio::test]
async fn refusals_are_counted_and_sampled() {
    let config = SinkConfig {
        reject_every: 4,
        ..SinkConfig::default()
    };
    let (addr, stats) = spawn_sink_with(config).await.expect("sink");
    let target = addr.to_string();
    let args = common::args(&[
        "--target",
        &target,
        "--messages",
        "20",
        "--connections",
        "2",
    ]);
    let report = mailroom_bench::run(&args).await.expect("run");
    assert_eq!(
        (report.accepted, report.rejected, report.errors),
        (15, 5, 0),
        "{report}"
    );
    assert_eq!(report.samples, ["end of DATA: 554 5.6.0 rejected by sink"]);
    assert_eq!(stats.messages(), 15);
}

#[tokio::test]
async fn silent_server_is_bounded_by_max_seconds() {
    // Accepts, never greets.
    let (addr, _accepted) = mailroom_testkit::smtp_sink::spawn_tarpit().await;
    let target = addr.to_string();
    let args = common::args(&[
        "--target",
        &target,
        "--messages",
        "5",
        "--connections",
        "2",
        "--max-seconds",
        "1",
    ]);
    let started = std::time::Instant::now();
    let err = mailroom_bench::run(&args).await.expect_err("never greeted");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        format!("{err:#}").contains("could not open any SMTP session"),
        "{err:#}"
    );
}
