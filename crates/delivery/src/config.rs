//! Delivery settings (the `[delivery]` and `[[delivery.routes]]` configuration).

use crate::schedule::RetrySchedule;
use mailroom_smtp_client::{Timeouts, TlsMode};
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct StaticRoute {
    /// Recipient domains this route serves; `*` serves every domain without an own route.
    pub domains: Vec<String>,
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub auth: Option<(String, String)>,
}

#[derive(Clone, Debug)]
pub struct DeliveryConfig {
    /// Name sent with EHLO and used as Reporting-MTA in bounces.
    pub helo_name: String,
    /// Port of recipients' exchangers (25; tests point it elsewhere).
    pub mx_port: u16,
    /// TLS toward exchangers found through MX.
    pub mx_tls: TlsMode,
    pub routes: Vec<StaticRoute>,
    /// Deliver to loopback, private and link-local addresses (tests, internal relays).
    pub allow_private: bool,
    /// Mailroom's own SMTP listeners: never deliver to them (mail loop).
    pub own_listeners: Vec<SocketAddr>,
    pub per_destination_connections: usize,
    pub max_connections: usize,
    pub max_messages_per_connection: u32,
    pub idle_timeout: Duration,
    pub timeouts: Timeouts,
    pub retry: RetrySchedule,
    /// Work items waiting per destination before new ones stay in storage.
    pub destination_queue: usize,
    /// Recipients claimed per scheduler round.
    pub claim_batch: usize,
    /// How long a claim lasts before another node may take the recipient: renewed
    /// every third of it while delivery is in progress; work with less than a sixth
    /// (at most 10 s) left is not started. A dead node's work is claimable again
    /// within one lease.
    pub lease: Duration,
    /// This node's id: the owner of the leases it takes.
    pub node_id: String,
    /// Longest wait between scheduler rounds when nothing wakes it.
    pub poll_interval: Duration,
    /// Send RFC 3464 bounces to the envelope sender.
    pub dsn: bool,
    /// Times after acceptance at which a recipient still being retried gets one delay
    /// report (when its NOTIFY includes DELAY): each threshold once, by the first
    /// attempt past it.
    pub delay_reports: Vec<Duration>,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            helo_name: "localhost".into(),
            mx_port: 25,
            mx_tls: TlsMode::Opportunistic,
            routes: Vec::new(),
            allow_private: false,
            own_listeners: Vec::new(),
            per_destination_connections: 10,
            max_connections: 200,
            max_messages_per_connection: 100,
            idle_timeout: Duration::from_secs(5),
            timeouts: Timeouts::default(),
            retry: RetrySchedule::default(),
            destination_queue: 1000,
            claim_batch: 500,
            lease: Duration::from_secs(60),
            node_id: "local".into(),
            poll_interval: Duration::from_secs(1),
            dsn: true,
            delay_reports: vec![Duration::from_secs(4 * 3600)],
        }
    }
}
