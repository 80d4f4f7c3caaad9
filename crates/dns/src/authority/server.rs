//! The socket side of the authoritative server: [`serve_dns`] binds UDP and TCP on one
//! address ([`spawn_dns`]: an ephemeral loopback port, for tests) and serves a [`Zone`]
//! through hickory-server's `Server` with a small request handler of ours;
//! [`DnsServerHandle`] keeps it alive and shows what was asked (bounded log).

use super::zone::{Answer, Zone};
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{Edns, Header, HeaderCounts, Metadata, ResponseCode};
use hickory_server::proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_server::proto::rr::{Name, Record};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo, Server};
use hickory_server::zone_handler::MessageResponseBuilder;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;
use tokio::net::{TcpListener, UdpSocket};

/// The extended DNS error option (RFC 8914).
const EDE_OPTION: u16 = 15;

/// At most this many questions are kept in the log; later ones are only counted.
const QUERY_LOG_LIMIT: usize = 10_000;

/// How long an idle TCP connection to the server stays open.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// Tries at finding a port free for both UDP and TCP.
const BIND_TRIES: usize = 50;

#[derive(Debug, Default)]
struct QueryLog {
    /// `"name. TYPE"` and whether it came over TCP.
    entries: Vec<(String, bool)>,
    total: usize,
}

type SharedLog = Arc<Mutex<QueryLog>>;

/// Answers every request from the zone.
struct ZoneHandler {
    /// Shared with the handle so a test can change DNS while the server runs.
    zone: Arc<RwLock<Zone>>,
    log: SharedLog,
}

#[async_trait::async_trait]
impl RequestHandler for ZoneHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative = true;
        let mut builder = MessageResponseBuilder::from_message_request(request);

        let query = match request.request_info() {
            Ok(info) => info.query,
            Err(_) => {
                // No single question: not a query this server understands.
                let response = builder.error_msg(&request.metadata, ResponseCode::FormErr);
                return send(&mut response_handle, response, metadata).await;
            }
        };
        let qname = Name::from(query.name());
        let qtype = query.query_type();
        {
            let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
            log.total += 1;
            if log.entries.len() < QUERY_LOG_LIMIT {
                let tcp = request.protocol() == Protocol::Tcp;
                log.entries
                    .push((format!("{} {qtype}", qname.to_ascii()), tcp));
            }
        }

        // Like a real server: answer EDNS with EDNS, so UDP replies may exceed 512 octets
        // up to the client's advertised size (and are truncated beyond it).
        let answer = self
            .zone
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .answer(&qname, qtype);
        let ede = match &answer {
            Answer::Reply { ede, .. } => *ede,
            Answer::Silent => None,
        };
        let edns = request.edns.as_ref().map(|req| {
            let mut edns = Edns::new();
            edns.set_max_payload(req.max_payload().max(512));
            edns.set_version(0);
            if let Some(code) = ede {
                // RFC 8914 extended DNS error: INFO-CODE, no EXTRA-TEXT.
                edns.options_mut().options.push((
                    EdnsCode::from(EDE_OPTION),
                    EdnsOption::Unknown(EDE_OPTION, code.to_be_bytes().to_vec()),
                ));
            }
            edns
        });
        if let Some(edns) = &edns {
            builder.edns(edns);
        }

        match answer {
            Answer::Silent => {
                // Nothing is sent. hickory only logs the returned info; no reply exists.
                metadata.response_code = ResponseCode::ServFail;
                ResponseInfo::from(Header {
                    metadata,
                    counts: HeaderCounts::default(),
                })
            }
            Answer::Reply {
                rcode,
                mut answers,
                mut soa,
                authentic,
                ede: _,
            } => {
                metadata.response_code = rcode;
                metadata.authentic_data = authentic;
                if request.protocol() == Protocol::Udp
                    && edns.is_none()
                    && encoded_size(&qname, &answers, soa.as_deref()) > CLASSIC_UDP_LIMIT
                {
                    // Too big for a client without EDNS: say so (TC) with no records,
                    // and the client asks again over TCP (RFC 1035 4.2.1, RFC 7766).
                    // hickory's own truncation leaves stray bytes after the counted
                    // records, which strict clients refuse.
                    metadata.truncation = true;
                    answers.clear();
                    soa = None;
                }
                let none: [&Record; 0] = [];
                let response = builder.build(metadata, answers.iter(), none, soa.as_deref(), none);
                send(&mut response_handle, response, metadata).await
            }
        }
    }
}

/// A UDP message without EDNS may not exceed this (RFC 1035 4.2.1).
const CLASSIC_UDP_LIMIT: usize = 512;

/// An upper bound of the encoded response: header, question, and every record encoded
/// on its own (no name compression, so never an underestimate).
fn encoded_size(qname: &Name, answers: &[Record], soa: Option<&Record>) -> usize {
    use hickory_server::proto::serialize::binary::BinEncodable;
    let question = qname.to_bytes().map(|b| b.len()).unwrap_or(255) + 4;
    let records: usize = answers
        .iter()
        .chain(soa)
        .map(|r| r.to_bytes().map(|b| b.len()).unwrap_or(CLASSIC_UDP_LIMIT))
        .sum();
    12 + question + records
}

/// Sends a response; a send failure is the client's problem (it will time out).
async fn send<'a, R: ResponseHandler>(
    handle: &mut R,
    response: hickory_server::zone_handler::MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
    metadata: Metadata,
) -> ResponseInfo {
    match handle.send_response(response).await {
        Ok(info) => info,
        Err(_) => ResponseInfo::from(Header {
            metadata,
            counts: HeaderCounts::default(),
        }),
    }
}

/// Keeps the server of [`spawn_dns`] running; dropping it stops the server.
pub struct DnsServerHandle {
    addr: SocketAddr,
    server: Server<ZoneHandler>,
    log: SharedLog,
    zone: Arc<RwLock<Zone>>,
}

impl fmt::Debug for DnsServerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DnsServerHandle")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl DnsServerHandle {
    /// Where the server listens (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The questions received so far, oldest first, as `"name. TYPE"` (name in
    /// lowercase A-labels, e.g. `"example.test. MX"`); the first 10,000 only.
    pub fn queries(&self) -> Vec<String> {
        self.logged(|_| true)
    }

    /// The questions that came over TCP, in the same form as [`queries`](Self::queries).
    pub fn tcp_queries(&self) -> Vec<String> {
        self.logged(|tcp| tcp)
    }

    fn logged(&self, keep: impl Fn(bool) -> bool) -> Vec<String> {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entries
            .iter()
            .filter(|(_, tcp)| keep(*tcp))
            .map(|(q, _)| q.clone())
            .collect()
    }

    /// Replaces what the server answers from, for the questions that come after (a
    /// record published or removed while a test runs). Resolvers' caches are not
    /// told: give the zone a short [`ttl`](Zone::ttl) when that matters.
    pub fn set_zone(&self, zone: Zone) {
        *self.zone.write().unwrap_or_else(PoisonError::into_inner) = zone;
    }

    /// How many questions were received, including any beyond the log's limit.
    pub fn query_count(&self) -> usize {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total
    }
}

impl Drop for DnsServerHandle {
    fn drop(&mut self) {
        // Stops accepting; the server's tasks are aborted when it is dropped next.
        self.server.shutdown_token().cancel();
    }
}

/// Starts an authoritative DNS server for `zone` on `addr`, UDP and TCP (port 0: one
/// ephemeral port free for both). Returns the bound address and the handle that keeps
/// it running.
pub async fn serve_dns(
    addr: SocketAddr,
    zone: Zone,
) -> std::io::Result<(SocketAddr, DnsServerHandle)> {
    let (udp, tcp, bound) = if addr.port() == 0 {
        bind_pair_on(addr.ip()).await?
    } else {
        let udp = UdpSocket::bind(addr).await?;
        let tcp = TcpListener::bind(addr).await?;
        (udp, tcp, addr)
    };
    Ok(start(udp, tcp, bound, zone))
}

fn start(
    udp: UdpSocket,
    tcp: TcpListener,
    addr: SocketAddr,
    zone: Zone,
) -> (SocketAddr, DnsServerHandle) {
    let log = SharedLog::default();
    let zone = Arc::new(RwLock::new(zone));
    let mut server = Server::new(ZoneHandler {
        zone: zone.clone(),
        log: log.clone(),
    });
    server.register_socket(udp);
    server.register_listener(tcp, TCP_IDLE_TIMEOUT, 16);
    (
        addr,
        DnsServerHandle {
            addr,
            server,
            log,
            zone,
        },
    )
}

/// Starts an authoritative DNS server for `zone` on 127.0.0.1, UDP and TCP on the same
/// ephemeral port, and returns that address with the handle that keeps it running.
///
/// Must be called inside a tokio runtime; the server's tasks run on it.
///
/// # Panics
///
/// If no loopback port free for both UDP and TCP can be found (test environment
/// broken).
pub async fn spawn_dns(zone: Zone) -> (SocketAddr, DnsServerHandle) {
    match bind_pair_on(Ipv4Addr::LOCALHOST.into()).await {
        Ok((udp, tcp, addr)) => start(udp, tcp, addr, zone),
        Err(e) => panic!("spawn_dns: no loopback port free for both UDP and TCP: {e}"),
    }
}

/// A UDP socket on an ephemeral port of `ip` and a TCP listener on the same port.
async fn bind_pair_on(
    ip: std::net::IpAddr,
) -> std::io::Result<(UdpSocket, TcpListener, SocketAddr)> {
    let mut last_error = None;
    for _ in 0..BIND_TRIES {
        let udp = match UdpSocket::bind((ip, 0)).await {
            Ok(udp) => udp,
            Err(e) => {
                last_error = Some(e);
                continue;
            }
        };
        let addr = match udp.local_addr() {
            Ok(addr) => addr,
            Err(e) => {
                last_error = Some(e);
                continue;
            }
        };
        match TcpListener::bind(addr).await {
            Ok(tcp) => return Ok((udp, tcp, addr)),
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error.unwrap_or_else(|| std::io::Error::other("no free port")))
}
