//! Writes DKIM-signed and ARC-sealed messages, and the DNS TXT records that verify
//! them, into a directory, so an independent verifier (tests/auth/test_dkimpy.py, on
//! dkimpy and pyspf) can check what mailroom-auth produces.
//!
//! `cargo run --ignore-rust-version -p mailroom-auth --example sign_fixtures -- <dir>`
//!
//! Files written:
//! - `*.eml`: the messages (CRLF);
//! - `dns.txt`: `name<TAB>TXT text` per line (names lowercase, no trailing dot);
//! - `manifest.txt`: `file<TAB>expect<TAB>what` per line, expect `pass`, `fail`
//!   (DKIM must fail) or `arc` (the ARC chain must pass, DKIM too);
//! - `spf.txt`: `domain<TAB>ip<TAB>expected result` per line, for SPF checks.

use mailroom_auth::{
    ArcSealKey, Authenticator, DkimKey, ExpectedRecord, KeyAlgorithm, RecordKind, RecordOptions,
    SmtpContext, SpfAuthorization, expected_records, sign, verify_and_seal,
};
use mailroom_testkit::{TestZone, spawn_dns};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

const DOMAIN: &str = "example.test";
const OPERATOR: &str = "op.test";

fn plain_message() -> Vec<u8> {
    b"From: App <app@example.test>\r\n\
To: you@dest.test\r\n\
Subject: Plain\r\n\
Date: Tue, 07 Jul 2026 10:00:00 +0000\r\n\
Message-ID: <plain@example.test>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=us-ascii\r\n\
\r\n\
Hello,\r\n\
\r\n\
a plain message.\r\n"
        .to_vec()
}

/// 8-bit UTF-8 (and one non-UTF-8 octet) in the body, trailing whitespace and
/// whitespace-only lines, long folded headers.
fn eightbit_folded_message() -> Vec<u8> {
    let recipients: Vec<String> = (0..12)
        .map(|i| format!("Recipient Number {i} <recipient{i}@dest.test>"))
        .collect();
    let mut m = Vec::new();
    m.extend_from_slice(b"From: =?utf-8?q?Caf=C3=A9?= <app@example.test>\r\n");
    m.extend_from_slice(format!("To: {}\r\n", recipients.join(",\r\n ")).as_bytes());
    m.extend_from_slice(
        b"Subject: A subject line long enough that it had to be folded by the client\r\n\
\tonto a second line, and then   onto a third    with odd   spacing\r\n\
Date: Tue, 07 Jul 2026 10:00:00 +0000\r\n\
Message-ID: <eightbit@example.test>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: text/plain;\r\n\
\x20charset=utf-8\r\n\
Content-Transfer-Encoding: 8bit\r\n\
X-Long: ",
    );
    m.extend_from_slice("x".repeat(900).as_bytes());
    m.extend_from_slice(
        "\r\n\r\nCafé crème brûlée — ünïcödé 日本語   \r\n  \t \r\nraw octet: \u{0}"
            .replace('\u{0}', "")
            .as_bytes(),
    );
    m.push(0xff);
    m.extend_from_slice(b"\r\n\r\n  \r\n\r\n");
    m
}

fn attachment_message() -> Vec<u8> {
    let payload: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 256) as u8).collect();
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(payload);
    let mut body = String::new();
    for line in b64.as_bytes().chunks(76) {
        body.push_str(&String::from_utf8_lossy(line));
        body.push_str("\r\n");
    }
    format!(
        "From: App <app@example.test>\r\n\
To: you@dest.test\r\n\
Cc: other@dest.test\r\n\
Reply-To: help@example.test\r\n\
Subject: With an attachment\r\n\
Date: Tue, 07 Jul 2026 10:00:00 +0000\r\n\
Message-ID: <attach@example.test>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b1\"\r\n\
\r\n\
--b1\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: 8bit\r\n\
\r\n\
See the attached file — thanks.\r\n\
--b1\r\n\
Content-Type: application/octet-stream; name=\"data.bin\"\r\n\
Content-Disposition: attachment; filename=\"data.bin\"\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
{body}--b1--\r\n"
    )
    .into_bytes()
}

struct Out {
    dir: PathBuf,
    manifest: String,
}

impl Out {
    fn write(&mut self, file: &str, expect: &str, what: &str, data: &[u8]) {
        std::fs::write(self.dir.join(file), data).expect("write fixture");
        writeln!(self.manifest, "{file}\t{expect}\t{what}").ok();
    }
}

fn tamper_body(signed: &[u8]) -> Vec<u8> {
    let mut t = signed.to_vec();
    let at = t.len() - 5;
    t[at] ^= 0x01;
    t
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let dir = match std::env::args_os().nth(1) {
        Some(d) => PathBuf::from(d),
        None => {
            eprintln!("usage: sign_fixtures <output directory>");
            std::process::exit(2);
        }
    };
    std::fs::create_dir_all(&dir).expect("create output directory");
    run(&dir).await;
    eprintln!("sign_fixtures: wrote fixtures to {}", dir.display());
}

async fn run(dir: &Path) {
    let ed = DkimKey::generate(KeyAlgorithm::Ed25519).expect("ed25519 key");
    let rsa = DkimKey::generate(KeyAlgorithm::Rsa2048).expect("rsa key");
    let operator = DkimKey::generate(KeyAlgorithm::Rsa2048).expect("operator key");
    let (ed_sel, rsa_sel) = ("mr202607e", "mr202607r");

    // What the tenant publishes, straight from expected_records.
    let options = RecordOptions {
        spf: SpfAuthorization::Addresses(vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]),
        ..RecordOptions::default()
    };
    let mut records: Vec<ExpectedRecord> = expected_records(
        DOMAIN,
        "tok123",
        &[(ed_sel, &ed), (rsa_sel, &rsa)],
        &options,
    );
    // A second tenant domain authorising the operator by include:.
    let include = RecordOptions {
        spf: SpfAuthorization::Include(format!("spf.{OPERATOR}")),
        ..RecordOptions::default()
    };
    records.extend(
        expected_records("inc.test", "tok456", &[], &include)
            .into_iter()
            .filter(|r| matches!(r.kind, RecordKind::Spf | RecordKind::ReturnPathSpf)),
    );
    let mut dns = String::new();
    let mut zone = TestZone::new();
    let mut txt = |name: &str, value: &str| {
        writeln!(dns, "{name}\t{value}").ok();
        zone = std::mem::take(&mut zone).txt(name, value);
    };
    for r in records.iter().filter(|r| r.rtype.as_str() == "TXT") {
        txt(&r.name, &r.value);
    }
    txt(&format!("spf.{OPERATOR}"), "v=spf1 ip4:127.0.0.1 -all");
    txt(
        &format!("arc1._domainkey.{OPERATOR}"),
        &operator.public_txt(),
    );
    std::fs::write(dir.join("dns.txt"), &dns).expect("write dns.txt");

    let spf = "bounces.example.test\t127.0.0.1\tpass\n\
               bounces.example.test\t127.0.0.2\tfail\n\
               example.test\t127.0.0.1\tpass\n\
               example.test\t127.0.0.2\tsoftfail\n\
               bounces.inc.test\t127.0.0.1\tpass\n\
               bounces.inc.test\t127.0.0.3\tfail\n";
    std::fs::write(dir.join("spf.txt"), spf).expect("write spf.txt");

    let mut out = Out {
        dir: dir.to_path_buf(),
        manifest: String::new(),
    };
    let s = |m: &[u8], keys: &[(&str, &DkimKey)]| sign(m, DOMAIN, keys).expect("sign");

    let ed_plain = s(&plain_message(), &[(ed_sel, &ed)]);
    out.write("ed25519_plain.eml", "pass", "ed25519, plain", &ed_plain);
    let rsa_plain = s(&plain_message(), &[(rsa_sel, &rsa)]);
    out.write("rsa_plain.eml", "pass", "rsa, plain", &rsa_plain);
    let both = s(&attachment_message(), &[(ed_sel, &ed), (rsa_sel, &rsa)]);
    out.write(
        "both_attachment.eml",
        "pass",
        "ed25519+rsa, attachment",
        &both,
    );
    let rsa_8 = s(&eightbit_folded_message(), &[(rsa_sel, &rsa)]);
    out.write("rsa_8bit_folded.eml", "pass", "rsa, 8-bit, folded", &rsa_8);
    let ed_8 = s(&eightbit_folded_message(), &[(ed_sel, &ed)]);
    out.write(
        "ed25519_8bit_folded.eml",
        "pass",
        "ed25519, 8-bit, folded",
        &ed_8,
    );
    let rsa_att = s(&attachment_message(), &[(rsa_sel, &rsa)]);
    out.write("rsa_attachment.eml", "pass", "rsa, attachment", &rsa_att);

    out.write(
        "tampered_body_rsa.eml",
        "fail",
        "rsa, body changed",
        &tamper_body(&rsa_8),
    );
    out.write(
        "tampered_body_ed25519.eml",
        "fail",
        "ed25519, body changed",
        &tamper_body(&ed_8),
    );
    let header_changed = String::from_utf8_lossy(&rsa_plain)
        .replace("Subject: Plain", "Subject: Plain!")
        .into_bytes();
    out.write(
        "tampered_header_rsa.eml",
        "fail",
        "rsa, subject changed",
        &header_changed,
    );
    let mut second_from = b"From: evil@else.test\r\n".to_vec();
    second_from.extend_from_slice(&ed_plain);
    out.write(
        "added_from_ed25519.eml",
        "fail",
        "ed25519, From added above",
        &second_from,
    );

    // A forward: the tenant's signed message, verified and sealed by the operator.
    let (addr, _server) = spawn_dns(zone).await;
    let auth = Authenticator::with_nameservers(&[addr], Duration::from_secs(2)).expect("auth");
    let smtp = SmtpContext {
        client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        helo: "mta.example.test",
        mail_from: "bounce@bounces.example.test",
    };
    let seal = ArcSealKey {
        domain: OPERATOR,
        selector: "arc1",
        key: &operator,
    };
    let sealed = verify_and_seal(&auth, &both, &smtp, "relay.op.test", &seal)
        .await
        .expect("seal");
    assert!(sealed.summary.dkim_pass(), "{:?}", sealed.summary);
    out.write(
        "arc_forwarded.eml",
        "arc",
        "ARC-sealed forward",
        &sealed.message,
    );
    let mut arc_tampered = sealed.message.clone();
    let text = String::from_utf8_lossy(&arc_tampered).replace(
        "Subject: With an attachment",
        "Subject: With an attachment!",
    );
    arc_tampered = text.into_bytes();
    out.write(
        "arc_tampered.eml",
        "arcfail",
        "ARC-sealed, subject changed",
        &arc_tampered,
    );

    std::fs::write(dir.join("manifest.txt"), &out.manifest).expect("write manifest");
}
