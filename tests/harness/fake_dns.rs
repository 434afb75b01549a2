//! A DNS server for tests: UDP and TCP on one ephemeral loopback port, answering TXT, MX, A,
//! AAAA, PTR and TLSA queries from records the test sets, following CNAMEs as a recursive
//! resolver does, and NXDOMAIN for everything else (with an SOA, as real zones answer, so
//! that resolvers cache it for the same short time).
//!
//! It can also play a validating resolver for DANE: answers about names marked with
//! [`FakeDns::secure`] carry the AD (authenticated data) bit when the query asked for DNSSEC
//! (DO or AD set), as a validating resolver does for signed zones; nothing is signed.
//!
//! Point ferrymail at it with [`FakeDns::resolver_config`] (`resolver.type = "custom"`), then
//! publish what a test needs:
//!
//! ```no_run
//! let dns = ferrymail_e2e::FakeDns::start();
//! dns.add_txt("example.org", "v=spf1 ip4:127.0.0.1 -all");
//! dns.add_mx("example.org", 10, "mx.example.org");
//! dns.add_a("mx.example.org", "127.0.0.1".parse().unwrap());
//! dns.fail("broken.example"); // SERVFAIL: a temporary DNS failure
//! dns.add_tlsa("_25._tcp.mx.example.org", 3, 1, 1, &[0u8; 32]);
//! dns.secure("example.org"); // answers about these names are "authenticated"
//! dns.secure("mx.example.org");
//! dns.secure("_25._tcp.mx.example.org");
//! ```
//!
//! Messages are parsed and built with `hickory-proto`, the resolver's own codec.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::tlsa::{CertUsage, Matching, Selector};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, NULL, PTR, SOA, TLSA, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};

/// Time to live of every answer: short, so that a test changing a record is not fooled by a
/// cache for long.
const TTL: u32 = 1;

#[derive(Default)]
struct Zone {
    records: HashMap<(String, RecordType), Vec<RData>>,
    failing: HashSet<String>,
    secure: HashSet<String>,
    queries: Vec<(String, RecordType)>,
    /// Time to live of answers, when a test set one (otherwise [`TTL`]).
    ttl: Option<u32>,
}

/// Lower case, without the trailing dot: how names are keyed.
fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// A running fake DNS server; stops when dropped.
pub struct FakeDns {
    address: SocketAddr,
    zone: Arc<Mutex<Zone>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl FakeDns {
    /// Starts a server on `127.0.0.1:<ephemeral>`, UDP and TCP on the same port.
    pub fn start() -> FakeDns {
        let (udp, tcp) = bind_pair();
        let address = udp.local_addr().unwrap();
        let zone = Arc::new(Mutex::new(Zone::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let threads = vec![
            std::thread::spawn({
                let (zone, stop) = (zone.clone(), stop.clone());
                move || serve_udp(udp, zone, stop)
            }),
            std::thread::spawn({
                let (zone, stop) = (zone.clone(), stop.clone());
                move || serve_tcp(tcp, zone, stop)
            }),
        ];
        FakeDns {
            address,
            zone,
            stop,
            threads,
        }
    }

    /// The server's address (UDP and TCP).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// A `[resolver]` section pointing ferrymail at this server, short timeouts.
    pub fn resolver_config(&self) -> String {
        format!(
            "[resolver]\ntype = \"custom\"\ncustom = [\"udp://{}\"]\ntimeout = \"2s\"\nattempts = 1\n",
            self.address
        )
    }

    fn add(&self, name: &str, kind: RecordType, data: RData) {
        let mut zone = self.zone.lock().unwrap();
        zone.records
            .entry((key(name), kind))
            .or_default()
            .push(data);
    }

    /// Publishes a TXT record (split into 255-byte strings as DNS requires).
    pub fn add_txt(&self, name: &str, text: &str) {
        let chunks: Vec<&[u8]> = text.as_bytes().chunks(255).collect();
        self.add(name, RecordType::TXT, RData::TXT(TXT::from_bytes(chunks)));
    }

    /// Publishes an MX record: `domain` receives mail at `host` with `preference`.
    pub fn add_mx(&self, domain: &str, preference: u16, host: &str) {
        let exchange = Name::from_ascii(format!("{}.", key(host))).unwrap();
        self.add(
            domain,
            RecordType::MX,
            RData::MX(MX::new(preference, exchange)),
        );
    }

    /// Publishes an A record.
    pub fn add_a(&self, host: &str, address: Ipv4Addr) {
        self.add(host, RecordType::A, RData::A(A(address)));
    }

    /// Publishes an AAAA record.
    pub fn add_aaaa(&self, host: &str, address: Ipv6Addr) {
        self.add(host, RecordType::AAAA, RData::AAAA(AAAA(address)));
    }

    /// Publishes a CNAME record: `alias` is another name for `target`. Queries for `alias`
    /// are answered with the CNAME and `target`'s records of the asked type.
    pub fn add_cname(&self, alias: &str, target: &str) {
        let target = Name::from_ascii(format!("{}.", key(target))).unwrap();
        self.add(alias, RecordType::CNAME, RData::CNAME(CNAME(target)));
    }

    /// Publishes a PTR record: `address` reverses to `host`.
    pub fn add_ptr(&self, address: IpAddr, host: &str) {
        let reverse = Name::from(address).to_ascii();
        let target = Name::from_ascii(format!("{}.", key(host))).unwrap();
        self.add(&reverse, RecordType::PTR, RData::PTR(PTR(target)));
    }

    /// Publishes a TLSA record (RFC 6698) with the given usage, selector, matching type and
    /// association data; any values, so that tests can publish unusable or malformed ones.
    pub fn add_tlsa(&self, name: &str, usage: u8, selector: u8, matching: u8, data: &[u8]) {
        let tlsa = TLSA::new(
            CertUsage::from(usage),
            Selector::from(selector),
            Matching::from(matching),
            data.to_vec(),
        );
        self.add(name, RecordType::TLSA, RData::TLSA(tlsa));
    }

    /// Publishes a TLSA record whose data is `rdata` as is: lets a test send one that does
    /// not parse (shorter than the usage, selector and matching fields, say).
    pub fn add_undecodable_tlsa(&self, name: &str, rdata: &[u8]) {
        let data = RData::Unknown {
            code: RecordType::TLSA,
            rdata: NULL::with(rdata.to_vec()),
        };
        self.add(name, RecordType::TLSA, data);
    }

    /// Marks the answers about `name` as DNSSEC-secure: they carry the AD bit when the query
    /// asked for DNSSEC. Every name of a query must be secure for its answer to be.
    pub fn secure(&self, name: &str) {
        self.zone.lock().unwrap().secure.insert(key(name));
    }

    /// Answers every query about `name` with SERVFAIL: a temporary DNS failure.
    pub fn fail(&self, name: &str) {
        self.zone.lock().unwrap().failing.insert(key(name));
    }

    /// Answers queries about `name` again, after [`FakeDns::fail`].
    pub fn recover(&self, name: &str) {
        self.zone.lock().unwrap().failing.remove(&key(name));
    }

    /// Gives every answer from now on `seconds` to live (1 by default).
    pub fn set_ttl(&self, seconds: u32) {
        self.zone.lock().unwrap().ttl = Some(seconds);
    }

    /// The queries received so far: name and type.
    pub fn queries(&self) -> Vec<(String, RecordType)> {
        self.zone.lock().unwrap().queries.clone()
    }
}

impl Drop for FakeDns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake both loops so that they see the flag.
        if let Ok(socket) = UdpSocket::bind("127.0.0.1:0") {
            let _ = socket.send_to(&[0], self.address);
        }
        let _ = TcpStream::connect(self.address);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Binds UDP on an ephemeral port and TCP on the same one (retrying if it is taken).
fn bind_pair() -> (UdpSocket, TcpListener) {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        if let Ok(tcp) = TcpListener::bind(udp.local_addr().unwrap()) {
            return (udp, tcp);
        }
    }
    panic!("no loopback port free for both UDP and TCP");
}

/// The answer to one query message, or `None` for something that is not a query.
fn answer(request: &[u8], zone: &Mutex<Zone>) -> Option<Vec<u8>> {
    let request = Message::from_vec(request).ok()?;
    if request.metadata.message_type != MessageType::Query {
        return None;
    }
    let mut response = Message::response(request.metadata.id, OpCode::Query);
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    response.metadata.recursion_available = true;
    response.metadata.authoritative = true;
    let mut zone = zone.lock().unwrap();
    let ttl = zone.ttl.unwrap_or(TTL);
    // A validating resolver sets AD only for a client that asked for DNSSEC (RFC 6840 §5.7).
    let wants_dnssec = request.metadata.authentic_data
        || request
            .edns
            .as_ref()
            .is_some_and(|edns| edns.flags().dnssec_ok);
    response.metadata.authentic_data = wants_dnssec && !request.queries.is_empty();
    for query in &request.queries {
        zone.queries
            .push((key(&query.name.to_ascii()), query.query_type));
        response.add_query(query.clone());
        // Follows CNAMEs (a few links at most), answering each one as a resolver does.
        let mut owner = query.name.clone();
        let mut name = key(&owner.to_ascii());
        for _ in 0..8 {
            if !zone.secure.contains(&name) {
                response.metadata.authentic_data = false;
            }
            if zone.failing.contains(&name) {
                break;
            }
            let alias = zone.records.get(&(name.clone(), RecordType::CNAME));
            let Some(RData::CNAME(target)) = alias.and_then(|r| r.first()).cloned() else {
                break;
            };
            if query.query_type == RecordType::CNAME {
                break;
            }
            response.add_answer(Record::from_rdata(
                owner.clone(),
                ttl,
                RData::CNAME(target.clone()),
            ));
            owner = target.0;
            name = key(&owner.to_ascii());
        }
        if zone.failing.contains(&name) {
            response.metadata.response_code = ResponseCode::ServFail;
            continue;
        }
        match zone.records.get(&(name.clone(), query.query_type)) {
            Some(records) => {
                for data in records {
                    response.add_answer(Record::from_rdata(owner.clone(), ttl, data.clone()));
                }
            }
            // A name that has records of another type exists: an empty NOERROR answer.
            None if zone.records.keys().any(|(n, _)| *n == name) => {
                response.add_authority(negative_ttl(&query.name, ttl));
            }
            None => {
                response.metadata.response_code = ResponseCode::NXDomain;
                response.add_authority(negative_ttl(&query.name, ttl));
            }
        }
    }
    response.to_vec().ok()
}

/// The SOA record an authoritative server puts in a negative answer (RFC 2308 §3): without
/// it resolvers may not cache the answer, which no real zone does to them.
fn negative_ttl(name: &Name, ttl: u32) -> Record {
    let soa = SOA::new(
        Name::from_ascii("ns.fake-dns.test.").unwrap(),
        Name::from_ascii("hostmaster.fake-dns.test.").unwrap(),
        1,
        3600,
        600,
        86400,
        ttl,
    );
    Record::from_rdata(name.clone(), ttl, RData::SOA(soa))
}

fn serve_udp(socket: UdpSocket, zone: Arc<Mutex<Zone>>, stop: Arc<AtomicBool>) {
    let mut buffer = [0u8; 4096];
    while !stop.load(Ordering::SeqCst) {
        let Ok((n, peer)) = socket.recv_from(&mut buffer) else {
            continue;
        };
        if let Some(reply) = answer(&buffer[..n], &zone) {
            let _ = socket.send_to(&reply, peer);
        }
    }
}

fn serve_tcp(listener: TcpListener, zone: Arc<Mutex<Zone>>, stop: Arc<AtomicBool>) {
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let zone = zone.clone();
        std::thread::spawn(move || serve_tcp_connection(stream, &zone));
    }
}

/// Answers length-prefixed queries (RFC 1035 §4.2.2) until the client closes.
fn serve_tcp_connection(mut stream: TcpStream, zone: &Mutex<Zone>) {
    loop {
        let mut length = [0u8; 2];
        if stream.read_exact(&mut length).is_err() {
            return;
        }
        let mut request = vec![0u8; usize::from(u16::from_be_bytes(length))];
        if stream.read_exact(&mut request).is_err() {
            return;
        }
        let Some(reply) = answer(&request, zone) else {
            return;
        };
        let Ok(length) = u16::try_from(reply.len()) else {
            return;
        };
        if stream.write_all(&length.to_be_bytes()).is_err() || stream.write_all(&reply).is_err() {
            return;
        }
    }
}
