//! Helpers shared by the bench's integration tests: parsing flags the way the
//! CLI does, and checking what a sink captured against the generator.

#![allow(dead_code)]

use std::collections::BTreeSet;

use clap::Parser;
use mailroom_bench::{BenchArgs, MessageSpec};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: BenchArgs,
}

/// `BenchArgs` from command-line words, as `mailroom bench` would parse them.
pub fn args(words: &[&str]) -> BenchArgs {
    let argv = std::iter::once("bench").chain(words.iter().copied());
    Cli::try_parse_from(argv)
        .unwrap_or_else(|e| panic!("{e}"))
        .args
}

fn header<'a>(msg: &'a str, name: &str) -> &'a str {
    msg.split("\r\n")
        .find_map(|l| l.strip_prefix(name))
        .unwrap_or_else(|| panic!("no {name} header in {msg:?}"))
}

/// Every captured message is byte-for-byte the message the generator would
/// build for its sequence number (so size and dot-stuffing survived the trip),
/// and the sequence numbers are exactly `0..n`.
pub fn assert_captured_exactly(args: &BenchArgs, captured: &[Vec<u8>], n: u64) {
    assert_eq!(captured.len() as u64, n);
    let mut seqs = BTreeSet::new();
    for raw in captured {
        assert_eq!(raw.len(), args.size, "message size");
        let msg = std::str::from_utf8(raw).expect("ASCII message");
        let id = header(msg, "Message-ID: <");
        let (run_id, rest) = id.split_once('.').expect("run id");
        let seq: u64 = rest
            .split_once('@')
            .expect("seq")
            .0
            .parse()
            .expect("numeric seq");
        let date = header(msg, "Date: ");
        let expected = MessageSpec::from_args(args, run_id).build(seq, date);
        assert!(
            expected == *raw,
            "message {seq} differs from what was generated"
        );
        let dotted = msg
            .split("\r\n")
            .filter(|l| l.starts_with('.') && l.len() > 1)
            .count();
        assert!(dotted > 0, "body has lines that need dot-stuffing");
        if args.size >= 2048 {
            assert!(msg.contains("\r\n.\r\n"), "body has a lone-dot line");
        }
        assert!(seqs.insert(seq), "message {seq} received twice");
    }
    assert_eq!(seqs, (0..n).collect());
}
