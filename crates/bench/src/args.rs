//! Command-line surface of `mailroom bench`: the flags, their defaults and the
//! checks that reject a contradictory combination before any socket is opened.
//! It does not open connections or build messages.

use anyhow::{Context, bail};
use clap::ValueEnum;

/// How the load generator secures each connection.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain text for the whole session.
    None,
    /// Plain text greeting and EHLO, then `STARTTLS` and a second EHLO.
    Starttls,
    /// TLS from the first byte (submissions, port 465 style).
    Implicit,
}

/// Flags of `mailroom bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Submission endpoint to load, as HOST:PORT.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:2587")]
    pub target: String,

    /// Number of messages to submit in total, across all connections.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub messages: u64,

    /// Size of each message in bytes, headers included.
    #[arg(long, value_name = "BYTES", default_value_t = 5120)]
    pub size: usize,

    /// Number of parallel SMTP connections.
    #[arg(long, value_name = "C", default_value_t = 20)]
    pub connections: usize,

    /// Recipients per message (R>1 sends to local+1@domain .. local+R@domain).
    #[arg(long, value_name = "R", default_value_t = 1)]
    pub recipients: usize,

    /// Transport security: none, starttls or implicit.
    #[arg(long, value_enum, default_value_t = TlsMode::None)]
    pub tls: TlsMode,

    /// User name for AUTH PLAIN (needs --password and TLS).
    #[arg(long, requires = "password")]
    pub user: Option<String>,

    /// Password for AUTH PLAIN (needs --user and TLS).
    #[arg(long, requires = "user")]
    pub password: Option<String>,

    /// Envelope sender, also written as the From: header.
    #[arg(long, value_name = "ADDR", default_value = "bench@example.com")]
    pub from: String,

    /// Recipient address (the base of the variants when --recipients > 1).
    #[arg(long, value_name = "ADDR", default_value = "rcpt@example.net")]
    pub to: String,

    /// Name sent with EHLO (also the right side of each Message-ID).
    #[arg(long, value_name = "NAME", default_value = "bench.local")]
    pub helo: String,

    /// Hard bound on the run: no new message is started after this many seconds.
    #[arg(long, value_name = "S", default_value_t = 300)]
    pub max_seconds: u64,

    /// Open loop: start messages at this fixed rate (messages per second) whatever the
    /// relay's answers, instead of each connection sending its next message as soon as
    /// the last is answered. Latency is then counted from each message's scheduled
    /// start, so time spent waiting for a free connection counts too; give enough
    /// --connections (about rate × p99 latency).
    #[arg(long, value_name = "MSG_PER_S")]
    pub rate: Option<f64>,

    /// Print the report as one JSON object instead of text.
    #[arg(long)]
    pub json: bool,

    /// Also run an SMTP sink on this address (e.g. 127.0.0.1:2700) for the relay under
    /// test to deliver to, and report end-to-end figures: the run ends when the sink
    /// has received every accepted recipient (or at --max-seconds).
    #[arg(long, value_name = "HOST:PORT")]
    pub sink_listen: Option<std::net::SocketAddr>,

    /// Submit nothing: only run the --sink-listen sink until it has received
    /// --messages × --recipients recipients (or --max-seconds), e.g. to time the
    /// drain of a queue filled earlier (`scripts/bench-scale`).
    #[arg(long, requires = "sink_listen")]
    pub sink_only: bool,

    /// Make the --sink-listen sink offer STARTTLS with this certificate chain (PEM),
    /// e.g. one a test CA signed, so the relay can verify it (MTA-STS, DANE).
    #[arg(long, value_name = "PEM", requires_all = ["sink_listen", "sink_tls_key"])]
    pub sink_tls_cert: Option<std::path::PathBuf>,

    /// The private key (PEM) of --sink-tls-cert.
    #[arg(long, value_name = "PEM", requires = "sink_tls_cert")]
    pub sink_tls_key: Option<std::path::PathBuf>,
}

/// Largest `--size` accepted; a benchmark message bigger than this is a typo.
pub const MAX_SIZE: usize = 64 * 1024 * 1024;
/// Largest `--recipients` accepted (RFC 5321 requires servers to take 100).
pub const MAX_RECIPIENTS: usize = 1000;
/// Largest `--connections` accepted.
pub const MAX_CONNECTIONS: usize = 10_000;

impl BenchArgs {
    /// Rejects combinations that cannot produce a meaningful run.
    pub fn validate(&self) -> anyhow::Result<()> {
        split_target(&self.target)?;
        if self.connections == 0 || self.connections > MAX_CONNECTIONS {
            bail!("--connections must be between 1 and {MAX_CONNECTIONS}");
        }
        if self.recipients == 0 || self.recipients > MAX_RECIPIENTS {
            bail!("--recipients must be between 1 and {MAX_RECIPIENTS}");
        }
        if self.size > MAX_SIZE {
            bail!("--size must be at most {MAX_SIZE} bytes");
        }
        if let Some(rate) = self.rate
            && !(rate.is_finite() && rate > 0.0 && rate <= 1_000_000.0)
        {
            bail!("--rate must be between 0 and 1000000 messages per second");
        }
        if self.max_seconds == 0 {
            bail!("--max-seconds must be at least 1");
        }
        for (flag, value) in [
            ("--from", &self.from),
            ("--to", &self.to),
            ("--helo", &self.helo),
        ] {
            if value.is_empty()
                || value
                    .bytes()
                    .any(|b| !b.is_ascii_graphic() || b == b'<' || b == b'>')
            {
                bail!("{flag} must be non-empty printable ASCII without spaces or angle brackets");
            }
        }
        if !self.to.contains('@') {
            bail!("--to must be an address with a domain (local@domain)");
        }
        if self.user.is_some() != self.password.is_some() {
            bail!("--user and --password go together");
        }
        if self.user.is_some() && self.tls == TlsMode::None {
            bail!("--user/--password need --tls starttls or --tls implicit");
        }
        Ok(())
    }

    /// Envelope recipients of every message: `--to` itself, or its `+i` variants.
    pub fn recipient_list(&self) -> Vec<String> {
        if self.recipients <= 1 {
            return vec![self.to.clone()];
        }
        let (local, domain) = self.to.rsplit_once('@').unwrap_or((&self.to, ""));
        (1..=self.recipients)
            .map(|i| format!("{local}+{i}@{domain}"))
            .collect()
    }
}

/// Splits `HOST:PORT` (or `[v6]:PORT`) into the host used for TLS server name
/// and the port.
pub fn split_target(target: &str) -> anyhow::Result<(String, u16)> {
    let (host, port) = target
        .rsplit_once(':')
        .with_context(|| format!("--target {target:?} must be HOST:PORT"))?;
    let port = port
        .parse::<u16>()
        .with_context(|| format!("--target {target:?} has an invalid port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        bail!("--target {target:?} has an empty host");
    }
    Ok((host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: BenchArgs,
    }

    fn parse(extra: &[&str]) -> BenchArgs {
        let argv = std::iter::once("bench").chain(extra.iter().copied());
        Cli::try_parse_from(argv)
            .map(|c| c.args)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn defaults_match_the_documented_values() {
        let a = parse(&[]);
        assert_eq!(a.target, "127.0.0.1:2587");
        assert_eq!(
            (a.messages, a.size, a.connections, a.recipients),
            (10_000, 5120, 20, 1)
        );
        assert_eq!(a.tls, TlsMode::None);
        assert_eq!(
            (a.from.as_str(), a.to.as_str()),
            ("bench@example.com", "rcpt@example.net")
        );
        assert_eq!(
            (a.helo.as_str(), a.max_seconds, a.json),
            ("bench.local", 300, false)
        );
        assert_eq!(a.rate, None);
        assert!(a.validate().is_ok());
    }

    #[test]
    fn recipients_become_plus_variants() {
        let a = parse(&["--recipients", "3"]);
        assert_eq!(
            a.recipient_list(),
            [
                "rcpt+1@example.net",
                "rcpt+2@example.net",
                "rcpt+3@example.net"
            ]
        );
        assert_eq!(parse(&[]).recipient_list(), ["rcpt@example.net"]);
    }

    #[test]
    fn auth_without_tls_is_refused() {
        let a = parse(&["--user", "u", "--password", "p"]);
        assert!(a.validate().is_err());
        let a = parse(&["--user", "u", "--password", "p", "--tls", "starttls"]);
        assert!(a.validate().is_ok());
        assert!(Cli::try_parse_from(["bench", "--user", "u"]).is_err());
    }

    #[test]
    fn sink_tls_needs_a_sink_and_both_files() {
        let ok = ["bench", "--sink-listen", "127.0.0.1:2700"];
        let with = |extra: &[&str]| {
            Cli::try_parse_from(ok.iter().chain(extra.iter()).copied()).map(|c| c.args)
        };
        let a = with(&["--sink-tls-cert", "c.pem", "--sink-tls-key", "k.pem"]);
        assert!(a.is_ok_and(|a| a.sink_tls_key.is_some()));
        assert!(with(&["--sink-tls-cert", "c.pem"]).is_err());
        assert!(with(&["--sink-tls-key", "k.pem"]).is_err());
        let no_sink = [
            "bench",
            "--sink-tls-cert",
            "c.pem",
            "--sink-tls-key",
            "k.pem",
        ];
        assert!(Cli::try_parse_from(no_sink).is_err());
    }

    #[test]
    fn rate_must_be_positive_and_finite() {
        assert!(parse(&["--rate", "500"]).validate().is_ok());
        for bad in ["0", "-1", "NaN", "inf", "2000000"] {
            let flag = format!("--rate={bad}");
            assert!(parse(&[&flag]).validate().is_err(), "{bad}");
        }
    }

    #[test]
    fn targets_split_into_host_and_port() {
        assert_eq!(split_target("[::1]:25").ok(), Some(("::1".to_owned(), 25)));
        assert_eq!(
            split_target("mx.example:587").ok(),
            Some(("mx.example".to_owned(), 587))
        );
        assert!(split_target("nohost").is_err());
        assert!(split_target(":25").is_err());
    }
}
