//! The signing micro-benchmark of BENCHMARKS.md: the cost of one DKIM signature over a
//! 5 KiB message, per algorithm (RSA-2048, Ed25519) and for both as Mailroom signs by
//! default, on one thread, through the same `mailroom_auth::signature_headers` the
//! ingest pipeline calls (canonicalisation, hashing and the private-key operation).
//!
//! `cargo run --release --ignore-rust-version -p mailroom-auth --example sign_bench -- [N]`
//!
//! Prints one line per case: `sign <case> <ms per message> ms (<N> messages)`.

use mailroom_auth::{DkimKey, KeyAlgorithm, signature_headers};
use std::time::Instant;

fn message(size: usize) -> Vec<u8> {
    let mut m = b"From: App <app@example.test>\r\nTo: you@dest.test\r\nSubject: Bench\r\n\
Date: Tue, 07 Jul 2026 10:00:00 +0000\r\nMessage-ID: <bench@example.test>\r\n\
MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
        .to_vec();
    let line = b"The quick brown fox jumps over the lazy dog, 0123456789 abcdefghij.\r\n";
    while m.len() + line.len() <= size {
        m.extend_from_slice(line);
    }
    m
}

fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2000);
    let msg = message(5120);
    let rsa = DkimKey::generate(KeyAlgorithm::Rsa2048).expect("RSA key");
    let ed = DkimKey::generate(KeyAlgorithm::Ed25519).expect("Ed25519 key");
    let cases: [(&str, Vec<(&str, &DkimKey)>); 3] = [
        ("rsa-2048", vec![("r", &rsa)]),
        ("ed25519", vec![("e", &ed)]),
        ("ed25519+rsa", vec![("e", &ed), ("r", &rsa)]),
    ];
    for (name, keys) in cases {
        // Warm up, then time.
        for _ in 0..20 {
            signature_headers(&msg, "example.test", &keys).expect("sign");
        }
        let started = Instant::now();
        for _ in 0..n {
            std::hint::black_box(signature_headers(&msg, "example.test", &keys).expect("sign"));
        }
        let ms = started.elapsed().as_secs_f64() * 1000.0 / f64::from(n);
        println!(
            "sign {name:<12} {ms:.3} ms/msg ({n} messages of {} bytes)",
            msg.len()
        );
    }
}
