//! Open-loop runs (`--rate`): messages start on a fixed schedule, not as fast as the
//! connections turn around, and latency counts from each message's scheduled start.

mod common;

use mailroom_bench::sink::spawn_sink;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_start_at_the_fixed_rate() {
    let (addr, stats) = spawn_sink().await;
    let target = addr.to_string();
    // 120 messages at 200/s: the last is due 0.595 s after the start, however fast
    // the sink answers (closed loop, the same load takes a few milliseconds).
    let args = common::args(&[
        "--target",
        &target,
        "--messages",
        "120",
        "--connections",
        "8",
        "--rate",
        "200",
        "--size",
        "2048",
        "--max-seconds",
        "30",
    ]);
    let report = mailroom_bench::run(&args).await.expect("run");
    assert_eq!((report.accepted, report.errors, report.unsent), (120, 0, 0));
    let secs = report.elapsed.as_secs_f64();
    assert!(secs >= 0.59, "paced run took {secs} s");
    assert!(secs < 10.0, "paced run took {secs} s");
    assert!(report.per_sec <= 205.0, "{} msg/s", report.per_sec);
    assert!(report.p50_ms <= report.p99_ms && report.p99_ms <= report.p999_ms);
    assert!(report.p999_ms <= report.max_ms);
    assert_eq!(stats.messages(), 120);
    common::assert_captured_exactly(&args, &stats.captured(), 120);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_past_the_deadline_stops_the_run() {
    let (addr, _stats) = spawn_sink().await;
    let target = addr.to_string();
    // 50 messages at 10/s need 4.9 s; --max-seconds 1 lets about 10 start.
    let args = common::args(&[
        "--target",
        &target,
        "--messages",
        "50",
        "--connections",
        "2",
        "--rate",
        "10",
        "--max-seconds",
        "1",
    ]);
    let report = mailroom_bench::run(&args).await.expect("run");
    assert!(report.deadline_reached);
    assert!(
        (8..=12).contains(&report.accepted),
        "{} accepted",
        report.accepted
    );
    assert_eq!(report.accepted + report.unsent + report.errors, 50);
}
