//! [`Zone`]: what the test DNS server knows, built in code, and the pure function
//! that turns a question into an answer (records, NODATA, NXDOMAIN, SERVFAIL or
//! silence). No sockets here.

use hickory_server::proto::op::ResponseCode;
use hickory_server::proto::rr::rdata::tlsa::{CertUsage, Matching, Selector, TLSA};
use hickory_server::proto::rr::rdata::{A, AAAA, CNAME, MX, SOA, TXT};
use hickory_server::proto::rr::{Name, RData, Record, RecordType};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Default TTL of records and of negative answers, in seconds.
const DEFAULT_TTL: u32 = 60;

/// How many CNAMEs the server chases within the zone for one answer.
const MAX_CNAME_CHAIN: usize = 8;

/// How a name answers, whatever is asked about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Behaviour {
    /// From its records (NODATA when none of the asked type).
    Records,
    NxDomain,
    ServFail,
    /// What a validating resolver says of a bogus name: SERVFAIL with the extended
    /// DNS error 6 (DNSSEC Bogus, RFC 8914).
    Bogus,
    /// Never answers: the client times out.
    Silent,
}

#[derive(Clone, Debug)]
struct NameData {
    owner: Name,
    /// Record data with its own TTL, if one was given in zone text.
    records: Vec<(RData, Option<u32>)>,
    behaviour: Behaviour,
    /// Answers about this name carry the AD bit, as a validating resolver sets it for
    /// signed data it validated (the server stands in for such a resolver in tests).
    secure: bool,
}

/// A zone for [`spawn_dns`](crate::spawn_dns), built in code:
///
/// ```
/// use mailroom_dns::authority::Zone;
/// use std::net::Ipv4Addr;
/// let zone = Zone::new()
///     .mx("example.test", 10, "mx1.example.test")
///     .a("mx1.example.test", Ipv4Addr::LOCALHOST)
///     .null_mx("nomail.test")
///     .servfail("broken.test")
///     .timeout("slow.test");
/// ```
///
/// or from zone text with [`Zone::parse`]. Names are case-insensitive and absolute
/// whether or not they end in a dot; U-labels are converted to A-labels.
///
/// What a query gets:
/// - a name set with [`servfail`](Self::servfail), [`timeout`](Self::timeout) or
///   [`nxdomain`](Self::nxdomain) answers that way for every type, records or not;
/// - a name with records answers those of the asked type, or NOERROR with no records
///   (NODATA) and an SOA;
/// - a name with no records of its own but with names below it (`example.test` when
///   only `mx1.example.test` is set) is an empty non-terminal: NODATA, as real DNS says;
/// - any other name: NXDOMAIN with an SOA.
///
/// Builder methods panic on a string that cannot be a DNS name: it is a bug in the test.
#[derive(Clone, Debug)]
pub struct Zone {
    /// Keyed by the lowercase absolute A-label form, e.g. `"mx1.example.test."`.
    names: BTreeMap<String, NameData>,
    ttl: u32,
}

impl Default for Zone {
    fn default() -> Self {
        Self {
            names: BTreeMap::new(),
            ttl: DEFAULT_TTL,
        }
    }
}

/// What the server does with one question.
#[derive(Debug)]
pub(crate) enum Answer {
    Reply {
        rcode: ResponseCode,
        answers: Vec<Record>,
        /// For NXDOMAIN and NODATA, so resolvers can cache the negative answer.
        soa: Option<Box<Record>>,
        /// Set the AD bit (the name was marked [`Zone::secure`]).
        authentic: bool,
        /// An extended DNS error code to attach (RFC 8914).
        ede: Option<u16>,
    },
    /// Send nothing.
    Silent,
}

impl Zone {
    /// An empty zone: every name is NXDOMAIN.
    pub fn new() -> Self {
        Self::default()
    }

    /// TTL of records (and of negative answers) in seconds; 60 unless set. Records
    /// parsed from zone text with their own TTL keep it.
    pub fn ttl(mut self, seconds: u32) -> Self {
        self.ttl = seconds;
        self
    }

    /// `domain MX preference host`.
    pub fn mx(self, domain: &str, preference: u16, host: &str) -> Self {
        let exchange = expect_name(host);
        self.with_record(domain, RData::MX(MX::new(preference, exchange)))
    }

    /// RFC 7505 Null MX: `domain MX 0 .`.
    pub fn null_mx(self, domain: &str) -> Self {
        self.with_record(domain, RData::MX(MX::new(0, Name::root())))
    }

    /// `host A addr`.
    pub fn a(self, host: &str, addr: Ipv4Addr) -> Self {
        self.with_record(host, RData::A(A(addr)))
    }

    /// `host AAAA addr`.
    pub fn aaaa(self, host: &str, addr: Ipv6Addr) -> Self {
        self.with_record(host, RData::AAAA(AAAA(addr)))
    }

    /// `name TXT text`, split into 255-octet character-strings when longer (as DKIM
    /// keys are published).
    pub fn txt(self, name: &str, text: &str) -> Self {
        self.with_record(name, RData::TXT(TXT::new(split_txt(text))))
    }

    /// `name CNAME target`. A query of another type for `name` gets the CNAME and, when
    /// the target is in this zone, the target's records of that type (as an
    /// authoritative server chases in-zone aliases).
    pub fn cname(self, name: &str, target: &str) -> Self {
        let target = expect_name(target);
        self.with_record(name, RData::CNAME(CNAME(target)))
    }

    /// Every query for exactly `domain` answers NXDOMAIN (also what unmentioned names
    /// get; this makes it explicit, and overrides records or names below it).
    pub fn nxdomain(self, domain: &str) -> Self {
        self.with_behaviour(domain, Behaviour::NxDomain)
    }

    /// Every query for exactly `domain` answers SERVFAIL.
    pub fn servfail(self, domain: &str) -> Self {
        self.with_behaviour(domain, Behaviour::ServFail)
    }

    /// `_25._tcp.<host> TLSA usage selector matching data` — the DANE record of an
    /// SMTP server (give `host`, the prefix is added).
    pub fn tlsa(self, host: &str, usage: u8, selector: u8, matching: u8, data: &[u8]) -> Self {
        let rdata = TLSA::new(
            CertUsage::from(usage),
            Selector::from(selector),
            Matching::from(matching),
            data.to_vec(),
        );
        let owner = format!("_25._tcp.{}", host.trim_end_matches('.'));
        self.with_record(&owner, RData::TLSA(rdata))
    }

    /// Answers about exactly `name` carry the AD bit: this server then plays a
    /// validating resolver that validated them (DNSSEC-secure).
    pub fn secure(mut self, name: &str) -> Self {
        self.data(expect_name(name)).secure = true;
        self
    }

    /// Every query for exactly `name` answers as a validating resolver does for
    /// data that failed validation: SERVFAIL with extended DNS error 6, DNSSEC Bogus.
    pub fn bogus(self, name: &str) -> Self {
        self.with_behaviour(name, Behaviour::Bogus)
    }

    /// Queries for exactly `domain` are never answered, over UDP or TCP.
    pub fn timeout(self, domain: &str) -> Self {
        self.with_behaviour(domain, Behaviour::Silent)
    }

    fn with_record(mut self, name: &str, data: RData) -> Self {
        self.add_record(expect_name(name), data, None);
        self
    }

    fn with_behaviour(mut self, name: &str, behaviour: Behaviour) -> Self {
        self.set_behaviour(expect_name(name), behaviour);
        self
    }

    fn data(&mut self, owner: Name) -> &mut NameData {
        self.names.entry(key(&owner)).or_insert_with(|| NameData {
            owner,
            records: Vec::new(),
            behaviour: Behaviour::Records,
            secure: false,
        })
    }

    pub(crate) fn add_record(&mut self, owner: Name, data: RData, ttl: Option<u32>) {
        self.data(owner).records.push((data, ttl));
    }

    pub(crate) fn set_behaviour(&mut self, owner: Name, behaviour: Behaviour) {
        self.data(owner).behaviour = behaviour;
    }

    /// The answer to `qname qtype`.
    pub(crate) fn answer(&self, qname: &Name, qtype: RecordType) -> Answer {
        let k = key(qname);
        let authentic = self.names.get(&k).is_some_and(|d| d.secure);
        let negative = |rcode| Answer::Reply {
            rcode,
            answers: Vec::new(),
            soa: Some(Box::new(self.soa_for(qname))),
            authentic,
            ede: None,
        };
        let Some(data) = self.names.get(&k) else {
            let suffix = if qname.is_root() {
                String::new()
            } else {
                format!(".{k}")
            };
            let has_children = self
                .names
                .keys()
                .any(|name| name.ends_with(&suffix) && name != &k);
            return negative(if has_children {
                ResponseCode::NoError
            } else {
                ResponseCode::NXDomain
            });
        };
        match data.behaviour {
            Behaviour::NxDomain => negative(ResponseCode::NXDomain),
            Behaviour::ServFail => Answer::Reply {
                rcode: ResponseCode::ServFail,
                answers: Vec::new(),
                soa: None,
                authentic: false,
                ede: None,
            },
            Behaviour::Bogus => Answer::Reply {
                rcode: ResponseCode::ServFail,
                answers: Vec::new(),
                soa: None,
                authentic: false,
                ede: Some(6),
            },
            Behaviour::Silent => Answer::Silent,
            Behaviour::Records => {
                let mut answers: Vec<Record> = data
                    .records
                    .iter()
                    .filter(|(d, _)| qtype == RecordType::ANY || d.record_type() == qtype)
                    .map(|(d, ttl)| {
                        Record::from_rdata(data.owner.clone(), ttl.unwrap_or(self.ttl), d.clone())
                    })
                    .collect();
                if answers.is_empty() && qtype != RecordType::CNAME {
                    answers = self.alias_chain(data, qtype);
                }
                if answers.is_empty() {
                    negative(ResponseCode::NoError)
                } else {
                    Answer::Reply {
                        rcode: ResponseCode::NoError,
                        answers,
                        soa: None,
                        authentic,
                        ede: None,
                    }
                }
            }
        }
    }

    /// For a name holding a CNAME: the CNAME record(s) down the chain, then the records
    /// of `qtype` at its in-zone end. Empty when the name holds no CNAME.
    fn alias_chain(&self, start: &NameData, qtype: RecordType) -> Vec<Record> {
        let mut out = Vec::new();
        let mut data = start;
        for _ in 0..MAX_CNAME_CHAIN {
            let Some((RData::CNAME(target), ttl)) = data
                .records
                .iter()
                .find(|(d, _)| d.record_type() == RecordType::CNAME)
            else {
                break;
            };
            out.push(Record::from_rdata(
                data.owner.clone(),
                ttl.unwrap_or(self.ttl),
                RData::CNAME(target.clone()),
            ));
            match self.names.get(&key(&target.0)) {
                Some(next) if next.behaviour == Behaviour::Records => data = next,
                _ => return out,
            }
            let found: Vec<Record> = data
                .records
                .iter()
                .filter(|(d, _)| d.record_type() == qtype)
                .map(|(d, ttl)| {
                    Record::from_rdata(data.owner.clone(), ttl.unwrap_or(self.ttl), d.clone())
                })
                .collect();
            if !found.is_empty() {
                out.extend(found);
                return out;
            }
        }
        out
    }

    /// A synthetic SOA at the name's last two labels (`example.test.` for
    /// `mx1.example.test.`), whose minimum is the zone TTL: the negative-caching time.
    fn soa_for(&self, qname: &Name) -> Record {
        let apex = qname.trim_to(usize::from(qname.num_labels()).min(2));
        let label = |l: &str| {
            Name::from_ascii(l)
                .and_then(|n| n.append_domain(&apex))
                .unwrap_or_else(|_| apex.clone())
        };
        let soa = SOA::new(
            label("ns"),
            label("hostmaster"),
            1,
            3600,
            600,
            86_400,
            self.ttl,
        );
        Record::from_rdata(apex.clone(), self.ttl, RData::SOA(soa))
    }
}

/// The map key of a name: lowercase, absolute, A-labels.
fn key(name: &Name) -> String {
    let mut name = name.to_lowercase();
    name.set_fqdn(true);
    name.to_ascii()
}

/// Parses a name as absolute (`"."` is the root).
pub(crate) fn parse_name(s: &str) -> Result<Name, String> {
    let s = s.trim();
    if s == "." {
        return Ok(Name::root());
    }
    if s.is_empty() {
        return Err("empty name".to_string());
    }
    let mut name = Name::from_utf8(s).map_err(|e| format!("bad name {s:?}: {e}"))?;
    name.set_fqdn(true);
    Ok(name.to_lowercase())
}

fn expect_name(s: &str) -> Name {
    match parse_name(s) {
        Ok(name) => name,
        Err(e) => panic!("Zone: {e}"),
    }
}

/// Splits text into character-strings of at most 255 octets, on char boundaries.
pub(crate) fn split_txt(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for c in text.chars() {
        if current.len() + c.len_utf8() > 255 {
            out.push(std::mem::take(&mut current));
        }
        current.push(c);
    }
    if !current.is_empty() || out.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(zone: &Zone, name: &str, qtype: RecordType) -> (ResponseCode, Vec<RData>, bool) {
        match zone.answer(&parse_name(name).unwrap(), qtype) {
            Answer::Reply {
                rcode,
                answers,
                soa,
                ..
            } => (
                rcode,
                answers.into_iter().map(|r| r.data).collect(),
                soa.is_some(),
            ),
            Answer::Silent => panic!("silent"),
        }
    }

    fn zone() -> Zone {
        Zone::new()
            .mx("Example.TEST", 20, "mx2.example.test")
            .mx("example.test.", 10, "mx1.example.test")
            .a("mx1.example.test", Ipv4Addr::LOCALHOST)
            .aaaa("mx1.example.test", Ipv6Addr::LOCALHOST)
            .txt("example.test", "v=spf1 -all")
            .null_mx("nomail.test")
            .servfail("broken.test")
            .timeout("slow.test")
            .nxdomain("gone.example.test")
    }

    #[test]
    fn records_of_the_asked_type() {
        let (rcode, answers, soa) = ask(&zone(), "EXAMPLE.test", RecordType::MX);
        assert_eq!(rcode, ResponseCode::NoError);
        assert_eq!(answers.len(), 2);
        assert!(!soa);
        let (_, answers, _) = ask(&zone(), "mx1.example.test.", RecordType::AAAA);
        assert_eq!(answers, vec![RData::AAAA(AAAA(Ipv6Addr::LOCALHOST))]);
        let (_, answers, _) = ask(&zone(), "example.test", RecordType::ANY);
        assert_eq!(answers.len(), 3);
    }

    #[test]
    fn nodata_nxdomain_and_empty_non_terminals() {
        let z = zone();
        assert_eq!(
            ask(&z, "mx1.example.test", RecordType::MX),
            (ResponseCode::NoError, vec![], true)
        );
        assert_eq!(
            ask(&z, "nowhere.test", RecordType::A),
            (ResponseCode::NXDomain, vec![], true)
        );
        assert_eq!(
            ask(&z, "gone.example.test", RecordType::A),
            (ResponseCode::NXDomain, vec![], true)
        );
        // "test." only exists because names below it do.
        assert_eq!(
            ask(&z, "test", RecordType::MX),
            (ResponseCode::NoError, vec![], true)
        );
    }

    #[test]
    fn failures() {
        let z = zone();
        assert_eq!(
            ask(&z, "broken.test", RecordType::MX),
            (ResponseCode::ServFail, vec![], false)
        );
        assert!(matches!(
            z.answer(&parse_name("slow.test").unwrap(), RecordType::A),
            Answer::Silent
        ));
    }

    #[test]
    fn cname_is_answered_and_chased_in_zone() {
        let z = Zone::new()
            .cname("s1._domainkey.example.test", "s1.keys.other.test")
            .txt("s1.keys.other.test", "v=DKIM1; p=abc")
            .cname("out.example.test", "elsewhere.invalid");
        let (rcode, answers, _) = ask(&z, "s1._domainkey.example.test", RecordType::CNAME);
        assert_eq!(rcode, ResponseCode::NoError);
        assert_eq!(
            answers,
            vec![RData::CNAME(CNAME(
                parse_name("s1.keys.other.test").unwrap()
            ))]
        );
        let (_, answers, _) = ask(&z, "s1._domainkey.example.test", RecordType::TXT);
        assert_eq!(answers.len(), 2);
        assert_eq!(
            answers[1],
            RData::TXT(TXT::new(vec!["v=DKIM1; p=abc".into()]))
        );
        // Target outside the zone: the CNAME alone.
        let (rcode, answers, _) = ask(&z, "out.example.test", RecordType::A);
        assert_eq!(rcode, ResponseCode::NoError);
        assert_eq!(answers.len(), 1);
        // A name with only TXT asked for CNAME: NODATA.
        assert_eq!(
            ask(&z, "s1.keys.other.test", RecordType::CNAME),
            (ResponseCode::NoError, vec![], true)
        );
    }

    #[test]
    fn soa_sits_at_the_last_two_labels() {
        let z = zone().ttl(5);
        let Answer::Reply { soa: Some(soa), .. } =
            z.answer(&parse_name("a.b.example.test").unwrap(), RecordType::A)
        else {
            panic!("no soa");
        };
        assert_eq!(soa.name.to_ascii(), "example.test.");
        assert_eq!(soa.ttl, 5);
    }

    #[test]
    fn txt_splits_at_255_octets() {
        assert_eq!(split_txt(""), vec![String::new()]);
        let long = "é".repeat(200); // 400 octets
        let parts = split_txt(&long);
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(|p| p.len() <= 255));
        assert_eq!(parts.concat(), long);
    }

    #[test]
    #[should_panic(expected = "Zone: bad name")]
    fn bad_names_panic_clearly() {
        let _ = Zone::new().a("a..b", Ipv4Addr::LOCALHOST);
    }
}
