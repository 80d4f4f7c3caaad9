//! What nodes sharing one store know of each other: node rows (heartbeats) and the
//! owned, fenced lease under which a node works on recipients.

use serde::Serialize;

/// A claim on recipients: who holds it, its fencing token, and when it runs out (Unix
/// ms). The token is fresh for every claim (random, 63 bits); an outcome is recorded
/// only while the recipient still carries it, so a node whose lease ran out and was
/// taken over cannot overwrite the new holder's work.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub owner: String,
    pub token: i64,
    pub until: i64,
}

impl Lease {
    /// A new claim for `owner` with a fresh token.
    pub fn new(owner: &str, until: i64) -> Self {
        Self {
            owner: owner.to_string(),
            token: fresh_token(),
            until,
        }
    }
}

/// A random positive token (never 0, which the tables never hold for a live lease).
pub fn fresh_token() -> i64 {
    loop {
        let t = rand::random::<i64>() & i64::MAX;
        if t != 0 {
            return t;
        }
    }
}

/// What a node says of itself in each heartbeat.
#[derive(Clone, Debug, Serialize)]
pub struct NodeInfo {
    pub id: String,
    pub started_at: i64,
    pub last_seen: i64,
    /// The Mailroom version it runs.
    pub version: String,
    /// Free-form facts (listen addresses, host name) shown by `GET /v1/nodes`.
    pub detail: serde_json::Value,
}

/// A node row as read back, with the work it holds.
#[derive(Clone, Debug, Serialize)]
pub struct NodeRecord {
    pub id: String,
    pub started_at: i64,
    pub last_seen: i64,
    pub version: String,
    pub detail: serde_json::Value,
    /// Recipients under a live lease owned by this node.
    pub leased_recipients: i64,
}
