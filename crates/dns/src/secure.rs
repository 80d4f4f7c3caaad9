//! DNSSEC status for DANE: [`SecureQuery`] asks a configured *validating* resolver
//! (Unbound, BIND, Knot Resolver, …) with the AD bit set and trusts the AD bit of its
//! answer (RFC 6840 §5.7), and reads a SERVFAIL carrying a DNSSEC extended DNS error
//! (RFC 8914 codes 1–12) as bogus. [`judge`] is the pure part (a response in, a
//! [`SecureLookup`] out); [`SecureQuery::query`] is the socket edge (UDP, TCP when the
//! answer is truncated).
//!
//! Why trust the AD bit instead of validating in process with hickory's `dnssec-*`
//! features: this is what Postfix does (`smtp_dns_support_level = dnssec`) and what
//! RFC 7672 §1.3 expects of an MTA's stub resolver; a local validating resolver
//! already keeps the trust anchors current (RFC 5011 rollovers), caches validated
//! chains for every process on the host, and is the thing operators monitor. An
//! in-process validator would need its own trust-anchor management, would chase the
//! whole chain from the root for each name through a forwarder that may strip
//! RRSIGs, and would add a second copy of that logic to keep correct. The price: the
//! path to the resolver must be trusted (loopback, or a network the operator
//! controls) — `dns.dnssec = true` is documented that way.

use crate::{DnsError, Security};
use hickory_resolver::proto::op::{Edns, Message, Query, ResponseCode};
use hickory_resolver::proto::rr::rdata::opt::EdnsOption;
use hickory_resolver::proto::rr::{Name, Record, RecordType};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// EDNS buffer size we advertise (the DNS flag day 2020 value).
const EDNS_PAYLOAD: u16 = 1232;

/// The extended DNS error option (RFC 8914).
const EDE_OPTION: u16 = 15;

/// What one security-aware query found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecureLookup {
    /// NOERROR or NXDOMAIN: the answer section (empty for NODATA/NXDOMAIN) and whether
    /// the resolver validated it.
    Answer {
        security: Security,
        answers: Vec<Record>,
    },
    /// The resolver says the answer failed DNSSEC validation (EDE code and text).
    Bogus(String),
}

/// Queries a list of validating resolvers, in order, with the AD bit set.
#[derive(Clone, Debug)]
pub struct SecureQuery {
    servers: Vec<SocketAddr>,
    timeout: Duration,
}

impl SecureQuery {
    /// Asks `servers` (tried in order on failure), `timeout` per try.
    pub fn new(servers: Vec<SocketAddr>, timeout: Duration) -> Self {
        Self { servers, timeout }
    }

    /// One question; transport failures and error rcodes other than a bogus SERVFAIL
    /// are [`DnsError`]s, tried on the next server first.
    pub async fn query(&self, name: &Name, rtype: RecordType) -> Result<SecureLookup, DnsError> {
        let mut last = DnsError::ServFail("no DNS name servers".into());
        for server in &self.servers {
            let attempt = tokio::time::timeout(self.timeout, exchange(*server, name, rtype)).await;
            match attempt {
                Err(_) => last = DnsError::Timeout,
                Ok(Err(e)) => last = DnsError::ServFail(format!("{server}: {e}")),
                Ok(Ok(response)) => match judge(&response) {
                    Ok(found) => return Ok(found),
                    Err(e) => last = e,
                },
            }
        }
        Err(last)
    }
}

/// The query message: recursion desired, AD set (RFC 6840 §5.7: "give me the AD bit"),
/// EDNS with DO so resolvers that key on it answer the same way.
pub fn build_query(name: &Name, rtype: RecordType) -> Message {
    let mut msg = Message::query();
    msg.add_query(Query::query(name.clone(), rtype));
    msg.metadata.recursion_desired = true;
    msg.metadata.authentic_data = true;
    let mut edns = Edns::new();
    edns.set_max_payload(EDNS_PAYLOAD);
    edns.set_version(0);
    edns.set_dnssec_ok(true);
    msg.set_edns(edns);
    msg
}

/// What a response means for DANE. Pure.
pub fn judge(response: &Message) -> Result<SecureLookup, DnsError> {
    let secure = if response.metadata.authentic_data {
        Security::Secure
    } else {
        Security::Insecure
    };
    match response.metadata.response_code {
        ResponseCode::NoError | ResponseCode::NXDomain => Ok(SecureLookup::Answer {
            security: secure,
            answers: response.answers.clone(),
        }),
        ResponseCode::ServFail => match dnssec_failure(response) {
            Some(why) => Ok(SecureLookup::Bogus(why)),
            None => Err(DnsError::ServFail("SERVFAIL".into())),
        },
        other => Err(DnsError::ServFail(format!(
            "response code {}",
            u16::from(other)
        ))),
    }
}

/// The extended DNS error of a response when it is one of RFC 8914's DNSSEC failures
/// (1 unsupported DNSKEY algorithm … 12 NSEC missing): "EDE 6 (DNSSEC Bogus): text".
fn dnssec_failure(response: &Message) -> Option<String> {
    let edns = response.edns.as_ref()?;
    edns.options().options.iter().find_map(|(code, option)| {
        let EdnsOption::Unknown(_, data) = option else {
            return None;
        };
        if u16::from(*code) != EDE_OPTION || data.len() < 2 {
            return None;
        }
        let info = u16::from_be_bytes([data[0], data[1]]);
        let label = match info {
            1 => "unsupported DNSKEY algorithm",
            2 => "unsupported DS digest type",
            5 => "DNSSEC indeterminate",
            6 => "DNSSEC bogus",
            7 => "signature expired",
            8 => "signature not yet valid",
            9 => "DNSKEY missing",
            10 => "RRSIGs missing",
            11 => "no zone key bit set",
            12 => "NSEC missing",
            _ => return None,
        };
        let text = String::from_utf8_lossy(&data[2..]);
        Some(if text.is_empty() {
            format!("EDE {info} ({label})")
        } else {
            format!("EDE {info} ({label}): {text}")
        })
    })
}

/// Sends the question over UDP; asks again over TCP when the answer is truncated.
async fn exchange(server: SocketAddr, name: &Name, rtype: RecordType) -> Result<Message, String> {
    let query = build_query(name, rtype);
    let id = query.metadata.id;
    let wire = query.to_vec().map_err(|e| e.to_string())?;
    let bind: SocketAddr = if server.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let udp = UdpSocket::bind(bind).await.map_err(|e| e.to_string())?;
    udp.connect(server).await.map_err(|e| e.to_string())?;
    udp.send(&wire).await.map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 65_535];
    let response = loop {
        let n = udp.recv(&mut buf).await.map_err(|e| e.to_string())?;
        // Anything that is not the answer to our question (spoofing attempts, late
        // answers) is ignored; the caller's timeout bounds the wait.
        if let Ok(msg) = Message::from_vec(&buf[..n])
            && msg.metadata.id == id
            && msg.queries == query.queries
        {
            break msg;
        }
    };
    if !response.metadata.truncation {
        return Ok(response);
    }
    let mut tcp = TcpStream::connect(server)
        .await
        .map_err(|e| e.to_string())?;
    let len = u16::try_from(wire.len()).map_err(|_| "query too long".to_string())?;
    let mut framed = len.to_be_bytes().to_vec();
    framed.extend_from_slice(&wire);
    tcp.write_all(&framed).await.map_err(|e| e.to_string())?;
    let mut len = [0u8; 2];
    tcp.read_exact(&mut len).await.map_err(|e| e.to_string())?;
    let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
    tcp.read_exact(&mut body).await.map_err(|e| e.to_string())?;
    let msg = Message::from_vec(&body).map_err(|e| e.to_string())?;
    if msg.metadata.id != id {
        return Err("TCP answer to another question".into());
    }
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_resolver::proto::op::{MessageType, OpCode};
    use hickory_resolver::proto::rr::RData;
    use hickory_resolver::proto::rr::rdata::opt::EdnsCode;
    use hickory_resolver::proto::rr::rdata::tlsa::{CertUsage, Matching, Selector, TLSA};

    fn response(rcode: ResponseCode, ad: bool) -> Message {
        let mut m = Message::new(7, MessageType::Response, OpCode::Query);
        m.metadata.response_code = rcode;
        m.metadata.authentic_data = ad;
        m
    }

    fn with_ede(mut m: Message, code: u16, text: &str) -> Message {
        let mut data = code.to_be_bytes().to_vec();
        data.extend_from_slice(text.as_bytes());
        let mut edns = Edns::new();
        edns.options_mut().options.push((
            EdnsCode::from(EDE_OPTION),
            EdnsOption::Unknown(EDE_OPTION, data),
        ));
        m.set_edns(edns);
        m
    }

    #[test]
    fn the_query_asks_for_authenticated_data() {
        let q = build_query(
            &Name::from_ascii("_25._tcp.mx.example.").unwrap(),
            RecordType::TLSA,
        );
        assert!(q.metadata.authentic_data && q.metadata.recursion_desired);
        let edns = q.edns.as_ref().unwrap();
        assert!(edns.flags().dnssec_ok);
        // Survives the wire.
        let back = Message::from_vec(&q.to_vec().unwrap()).unwrap();
        assert!(back.metadata.authentic_data);
        assert_eq!(back.queries[0].query_type(), RecordType::TLSA);
    }

    #[test]
    fn ad_bit_decides_secure_or_insecure() {
        let name = Name::from_ascii("_25._tcp.mx.example.").unwrap();
        let tlsa = TLSA::new(
            CertUsage::DaneEe,
            Selector::Spki,
            Matching::Sha256,
            vec![1; 32],
        );
        let mut m = response(ResponseCode::NoError, true);
        m.add_answer(Record::from_rdata(name, 60, RData::TLSA(tlsa)));
        match judge(&m).unwrap() {
            SecureLookup::Answer { security, answers } => {
                assert_eq!(security, Security::Secure);
                assert_eq!(answers.len(), 1);
            }
            other => panic!("{other:?}"),
        }
        m.metadata.authentic_data = false;
        assert!(matches!(
            judge(&m).unwrap(),
            SecureLookup::Answer {
                security: Security::Insecure,
                ..
            }
        ));
        // A signed denial is secure, and empty.
        assert_eq!(
            judge(&response(ResponseCode::NXDomain, true)).unwrap(),
            SecureLookup::Answer {
                security: Security::Secure,
                answers: vec![]
            }
        );
    }

    #[test]
    fn servfail_is_bogus_only_with_a_dnssec_ede() {
        let bogus = with_ede(response(ResponseCode::ServFail, false), 6, "sig mismatch");
        assert_eq!(
            judge(&bogus).unwrap(),
            SecureLookup::Bogus("EDE 6 (DNSSEC bogus): sig mismatch".into())
        );
        let expired = with_ede(response(ResponseCode::ServFail, false), 7, "");
        assert_eq!(
            judge(&expired).unwrap(),
            SecureLookup::Bogus("EDE 7 (signature expired)".into())
        );
        // EDE 23 (network error) is not a DNSSEC verdict: a plain failure.
        let net = with_ede(response(ResponseCode::ServFail, false), 23, "");
        assert_eq!(judge(&net), Err(DnsError::ServFail("SERVFAIL".into())));
        assert_eq!(
            judge(&response(ResponseCode::ServFail, false)),
            Err(DnsError::ServFail("SERVFAIL".into()))
        );
        assert!(judge(&response(ResponseCode::Refused, false)).is_err());
    }
}
