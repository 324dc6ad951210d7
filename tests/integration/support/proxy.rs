//! A fault-injecting HTTP/1.1 reverse proxy in front of a real registry, and [`Recorder`], a
//! stand-in for "another host" that blob uploads can be redirected to.
//!
//! The proxy listens on 127.0.0.1 and keeps client connections alive (reqwest reuses them). Each
//! request goes upstream over a connection of its own (`Host` rewritten, `Connection: close`), and
//! the answer comes back with a `Location` that points at the proxy again, so the client keeps
//! talking through it. Tests script [`Fault`]s per request with [`Rule`]s and read back what
//! happened: [`Proxy::requests`] and the byte counters.
//!
//! Only std: blocking sockets with short timeouts and a thread per connection. Every loop is
//! bounded by the stop flag, a deadline or a size cap, so dropping a [`Proxy`] or a [`Recorder`]
//! stops it within a poll interval.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How often blocked reads, writes, accepts and stalls look at the stop flag.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// A client connection silent this long (between or inside requests) is dropped. Longer than
/// any client timeout a test sets, so a stall is always the client's to detect.
const CLIENT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// The registry may think a while before answering a large PUT (it hashes the blob).
const UPSTREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// After a cut, the registry gets this long to finish with the broken request, so the client's
/// retry finds the upload in a settled state rather than racing the registry.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);
/// After an early answer (413), the rest of the body is read and dropped for at most this long,
/// so the client reads the answer instead of a reset (nginx's lingering close).
const LINGER_TIMEOUT: Duration = Duration::from_secs(2);
const MAX_LINGER_BYTES: u64 = 64 * 1024 * 1024;
/// Connections beyond this many open at once are reset on accept.
const MAX_OPEN_CONNECTIONS: usize = 64;
const MAX_REQUESTS_PER_CONNECTION: usize = 10_000;
const MAX_HEAD_BYTES: usize = 64 * 1024;
const MAX_TRAILER_LINES: usize = 64;
const MAX_INTERIM_RESPONSES: usize = 8;
const IO_CHUNK: usize = 64 * 1024;
/// How much of each request body [`RequestRecord::body`] keeps; the count is always complete.
pub const MAX_RECORDED_BODY_BYTES: usize = 64 * 1024;

/// The page ingress-nginx sends with a 413 (`client_max_body_size` exceeded).
pub const NGINX_413_PAGE: &str = "<html>\r\n<head><title>413 Request Entity Too Large</title></head>\r\n<body>\r\n<center><h1>413 Request Entity Too Large</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";

/// What the proxy does to a request that a [`Rule`] matched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Read the request body, then answer with this instead of forwarding. `Content-Length` is
    /// added unless given.
    Respond {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Reset the client connection (RST) right after the request head; nothing is forwarded.
    Reset,
    /// Forward the head and exactly this many body bytes, let the registry finish with the broken
    /// request, then reset the client connection. If the body is not longer, the whole request
    /// is forwarded and the answer is lost instead: the registry acted, the client never hears.
    /// distribution 2.8 keeps the partial bytes and then cancels the upload (the next request
    /// to its Location gets 404 BLOB_UPLOAD_INVALID): a client has to start that blob over.
    ResetAfterBodyBytes(u64),
    /// After the request head, neither read nor forward anything for this long, then close.
    Stall(Duration),
    /// Wait this long after the request head, then forward as usual: a slow registry.
    Delay(Duration),
    /// Forward the head and this many body bytes (the registry's connection stays open), then
    /// stall like [`Fault::Stall`].
    StallAfterBodyBytes(u64, Duration),
    /// Like ingress-nginx with `client_max_body_size`: a body over this many bytes gets 413 and
    /// [`NGINX_413_PAGE`] (the connection is then closed); a smaller one is buffered and
    /// forwarded with `Content-Length`.
    BodyLimit(u64),
    /// Forward, then point the answer's `Location` at this origin (`http://host:port`) instead
    /// of the proxy: the client is sent to another host. See [`Rule::redirect_uploads_to`].
    RedirectUploadsTo(String),
}

impl Fault {
    /// An empty answer with this status.
    pub fn status(status: u16) -> Fault {
        Fault::Respond {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// An empty answer with this status and `Retry-After: seconds`.
    pub fn retry_after(status: u16, seconds: u64) -> Fault {
        Fault::Respond {
            status,
            headers: vec![("Retry-After".into(), seconds.to_string())],
            body: Vec::new(),
        }
    }
}

/// Applies `fault` to the next `times` requests matching `method` and `path_contains`.
#[derive(Clone, Debug)]
pub struct Rule {
    /// Exact method (`"PATCH"`); `None` matches any.
    pub method: Option<String>,
    /// A substring of the request target (path and query); `None` matches any.
    pub path_contains: Option<String>,
    /// How many matching requests it still applies to; `usize::MAX` means always.
    pub times: usize,
    pub fault: Fault,
}

impl Rule {
    /// Every request, always; narrow it with the builder methods.
    pub fn new(fault: Fault) -> Rule {
        Rule {
            method: None,
            path_contains: None,
            times: usize::MAX,
            fault,
        }
    }

    /// Points the `Location` of every `POST .../blobs/uploads/` answer at `base_url`.
    pub fn redirect_uploads_to(base_url: &str) -> Rule {
        Rule::new(Fault::RedirectUploadsTo(base_url.to_owned()))
            .method("POST")
            .path_contains("/blobs/uploads/")
    }

    pub fn method(mut self, method: &str) -> Rule {
        self.method = Some(method.to_owned());
        self
    }

    pub fn path_contains(mut self, text: &str) -> Rule {
        self.path_contains = Some(text.to_owned());
        self
    }

    pub fn times(mut self, times: usize) -> Rule {
        self.times = times;
        self
    }

    fn matches(&self, request: &Request) -> bool {
        self.times > 0
            && self.method.as_ref().is_none_or(|m| *m == request.method)
            && self
                .path_contains
                .as_ref()
                .is_none_or(|text| request.target.contains(text.as_str()))
    }
}

/// One request as the proxy (or the recorder) received it.
#[derive(Clone, Debug)]
pub struct RequestRecord {
    pub method: String,
    /// Path with query, as sent by the client.
    pub path: String,
    /// As received, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The first [`MAX_RECORDED_BODY_BYTES`] of the body.
    pub body: Vec<u8>,
    /// All body bytes received from the client (de-chunked).
    pub body_bytes: u64,
    /// The status sent back; `None` when the exchange was cut, stalled or reset.
    pub status: Option<u16>,
    /// The fault applied, if a rule matched.
    pub fault: Option<Fault>,
}

impl RequestRecord {
    /// The first header with this (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(header, _)| *header == name)
            .map(|(_, value)| value.as_str())
    }
}

/// A running fault-injecting proxy on 127.0.0.1; it stops when dropped.
pub struct Proxy {
    shared: Arc<ProxyShared>,
    server: Server,
}

struct ProxyShared {
    upstream: String,
    address: SocketAddr,
    stop: Arc<AtomicBool>,
    down: Arc<AtomicBool>,
    rules: Mutex<Vec<Rule>>,
    records: Records,
    body_bytes: AtomicU64,
    forwarded_body_bytes: AtomicU64,
    connections: AtomicU64,
    refused_connections: AtomicU64,
}

impl Proxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `upstream` (`host:port`, plain HTTP).
    pub fn start(upstream: &str) -> io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(ProxyShared {
            upstream: upstream.to_owned(),
            address: listener.local_addr()?,
            stop: Arc::clone(&stop),
            down: Arc::new(AtomicBool::new(false)),
            rules: Mutex::new(Vec::new()),
            records: Records::default(),
            body_bytes: AtomicU64::new(0),
            forwarded_body_bytes: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            refused_connections: AtomicU64::new(0),
        });
        let connection_shared = Arc::clone(&shared);
        let server = Server::start(listener, stop, "proxy", move |stream| {
            serve_client(stream, &connection_shared)
        })?;
        Ok(Proxy { shared, server })
    }

    /// `127.0.0.1:PORT`, to use as the registry host.
    pub fn address(&self) -> String {
        self.shared.address.to_string()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.shared.address)
    }

    /// Rules are tried in the order added; the first that matches and has `times` left applies.
    pub fn add_rule(&self, rule: Rule) {
        lock(&self.shared.rules).push(rule);
    }

    pub fn clear_rules(&self) {
        lock(&self.shared.rules).clear();
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.records.snapshot()
    }

    /// Request body bytes received from clients, all requests together (faulted ones included):
    /// compared with the image size it shows how much was sent again.
    pub fn body_bytes(&self) -> u64 {
        self.shared.body_bytes.load(Ordering::SeqCst)
    }

    /// Request body bytes sent on to the registry.
    pub fn forwarded_body_bytes(&self) -> u64 {
        self.shared.forwarded_body_bytes.load(Ordering::SeqCst)
    }

    /// Client connections accepted while up (keep-alive reuse shows as fewer connections).
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Client connections reset because the registry was down.
    pub fn refused_connections(&self) -> u64 {
        self.shared.refused_connections.load(Ordering::SeqCst)
    }

    /// While down, the registry looks dead: open client connections are reset (within a poll
    /// interval, mid-request too) and new ones are accepted and reset at once. The port stays
    /// bound, so the registry "comes back" at the same address when set up again.
    pub fn set_upstream_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }
}

impl ProxyShared {
    fn cancel(&self) -> Cancel {
        Cancel(vec![Arc::clone(&self.stop), Arc::clone(&self.down)])
    }

    /// The fault for `request`, using up one of the matching rule's `times`.
    fn take_fault(&self, request: &Request) -> Option<Fault> {
        let mut rules = lock(&self.rules);
        let rule = rules.iter_mut().find(|rule| rule.matches(request))?;
        if rule.times != usize::MAX {
            rule.times -= 1;
        }
        Some(rule.fault.clone())
    }

    fn connect_upstream(&self) -> io::Result<Wire> {
        let address = self
            .upstream
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| invalid("upstream address resolves to nothing"))?;
        let stream = TcpStream::connect_timeout(&address, UPSTREAM_CONNECT_TIMEOUT)?;
        Wire::new(stream, self.cancel(), UPSTREAM_IDLE_TIMEOUT)
    }

    /// Points a `Location` at the proxy when it points at the registry, or at `relocate_to`.
    fn rewrite_location(&self, location: &str, relocate_to: Option<&str>) -> String {
        let (origin, rest) = split_origin(location);
        match relocate_to {
            Some(base) => format!("{}{rest}", base.trim_end_matches('/')),
            None if origin.eq_ignore_ascii_case(&format!("http://{}", self.upstream)) => {
                format!("http://{}{rest}", self.address)
            }
            None => location.to_owned(),
        }
    }
}

/// What happens to a client connection after an exchange.
enum Next {
    KeepAlive,
    Close,
    /// Close after reading and dropping what the client still sends (see [`LINGER_TIMEOUT`]).
    LingerClose,
    Reset,
}

fn serve_client(stream: TcpStream, shared: &ProxyShared) {
    if shared.down.load(Ordering::SeqCst) {
        shared.refused_connections.fetch_add(1, Ordering::SeqCst);
        reset(stream);
        return;
    }
    shared.connections.fetch_add(1, Ordering::SeqCst);
    let Ok(mut client) = Wire::new(stream, shared.cancel(), CLIENT_IDLE_TIMEOUT) else {
        return;
    };
    for _ in 0..MAX_REQUESTS_PER_CONNECTION {
        let next = match client.read_head() {
            Ok(None) => Next::Close,
            Ok(Some(head)) => match Request::parse(&head) {
                Ok(request) => exchange(&mut client, &request, shared).unwrap_or(Next::Reset),
                Err(_) => Next::Reset,
            },
            Err(_) => Next::Reset,
        };
        match next {
            Next::KeepAlive => continue,
            Next::Close => return,
            Next::LingerClose => return client.linger_close(),
            Next::Reset => {
                if shared.down.load(Ordering::SeqCst) {
                    shared.refused_connections.fetch_add(1, Ordering::SeqCst);
                }
                return reset(client.stream);
            }
        }
    }
}

fn exchange(client: &mut Wire, request: &Request, shared: &ProxyShared) -> io::Result<Next> {
    let fault = shared.take_fault(request);
    let record = shared.records.start(request, fault.clone());
    let mut exchange = Exchange {
        shared,
        client,
        request,
        record,
        continue_sent: false,
    };
    match fault {
        None => exchange.forward(None, None),
        Some(Fault::Respond {
            status,
            headers,
            body,
        }) => exchange.respond(status, &headers, &body),
        Some(Fault::Reset) => Ok(Next::Reset),
        Some(Fault::ResetAfterBodyBytes(after)) => exchange.forward(Some(Cut::Reset(after)), None),
        Some(Fault::Stall(duration)) => {
            pause(&shared.cancel(), duration)?;
            Ok(Next::Close)
        }
        Some(Fault::StallAfterBodyBytes(after, duration)) => {
            exchange.forward(Some(Cut::Stall(after, duration)), None)
        }
        Some(Fault::Delay(duration)) => {
            pause(&shared.cancel(), duration)?;
            exchange.forward(None, None)
        }
        Some(Fault::BodyLimit(limit)) => exchange.forward_limited(limit),
        Some(Fault::RedirectUploadsTo(base)) => exchange.forward(None, Some(&base)),
    }
}

/// Where a forwarded request is interrupted: after this many body bytes.
#[derive(Clone, Copy)]
enum Cut {
    Reset(u64),
    Stall(u64, Duration),
}

impl Cut {
    fn after_bytes(self) -> u64 {
        match self {
            Cut::Reset(after) | Cut::Stall(after, _) => after,
        }
    }
}

/// One request of a client connection, from its head to the end of its answer.
struct Exchange<'a> {
    shared: &'a ProxyShared,
    client: &'a mut Wire,
    request: &'a Request,
    record: usize,
    continue_sent: bool,
}

impl Exchange<'_> {
    /// The next piece of the request body, counted; sends `100 Continue` first when asked for.
    fn receive(&mut self, body: &mut BodyReader) -> io::Result<Option<Vec<u8>>> {
        if !self.continue_sent && self.request.expects_continue() {
            self.client.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
            self.continue_sent = true;
        }
        let piece = body.next_piece(self.client)?;
        if let Some(piece) = &piece {
            let count = piece.len() as u64;
            self.shared.body_bytes.fetch_add(count, Ordering::SeqCst);
            self.shared.records.add_body(self.record, piece);
        }
        Ok(piece)
    }

    fn drain(&mut self, body: &mut BodyReader) -> io::Result<()> {
        while self.receive(body)?.is_some() {}
        Ok(())
    }

    fn respond(
        &mut self,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> io::Result<Next> {
        // A client waiting for `100 Continue` has not sent its body: answer and close instead.
        if self.request.expects_continue() {
            return self.answer(status, headers, body, true);
        }
        self.drain(&mut self.request.body()?)?;
        self.answer(status, headers, body, self.request.wants_close())
    }

    fn answer(
        &mut self,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
        close: bool,
    ) -> io::Result<Next> {
        let mut head = format!("HTTP/1.1 {status} {}\r\n", reason_phrase(status));
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if !headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        if close {
            head.push_str("Connection: close\r\n");
        }
        head.push_str("\r\n");
        self.shared.records.set_status(self.record, status);
        self.client.write_all(head.as_bytes())?;
        if self.request.method != "HEAD" {
            self.client.write_all(body)?;
        }
        Ok(if close { Next::Close } else { Next::KeepAlive })
    }

    fn refuse_too_large(&mut self) -> io::Result<Next> {
        let headers = [("Content-Type".to_owned(), "text/html".to_owned())];
        self.answer(413, &headers, NGINX_413_PAGE.as_bytes(), true)?;
        Ok(Next::LingerClose)
    }

    /// [`Fault::BodyLimit`]: refuse early on a declared length, else buffer up to the limit.
    fn forward_limited(&mut self, limit: u64) -> io::Result<Next> {
        let mut body = self.request.body()?;
        if body.declared_length().is_some_and(|length| length > limit) {
            return self.refuse_too_large();
        }
        let mut buffered = Vec::new();
        while let Some(piece) = self.receive(&mut body)? {
            buffered.extend_from_slice(&piece);
            if buffered.len() as u64 > limit {
                return self.refuse_too_large();
            }
        }
        let Ok(mut upstream) = self.shared.connect_upstream() else {
            return self.bad_gateway(false);
        };
        let framing = Some(format!("Content-Length: {}", buffered.len()));
        let head = upstream_head(self.request, &self.shared.upstream, framing);
        // A failed write is not the end: the registry may have answered early.
        if upstream
            .write_all(&head)
            .and_then(|()| upstream.write_all(&buffered))
            .is_ok()
        {
            self.note_forwarded(buffered.len());
        }
        self.relay_response(&mut upstream, None, false)
    }

    /// Streams the request to the registry and its answer back, unless `cut` interrupts it.
    fn forward(&mut self, cut: Option<Cut>, relocate_to: Option<&str>) -> io::Result<Next> {
        let mut body = self.request.body()?;
        let mut upstream = match self.shared.connect_upstream() {
            Ok(upstream) => upstream,
            Err(_) => {
                self.drain(&mut body)?;
                return self.bad_gateway(false);
            }
        };
        let (framing_header, framing) = match &body {
            BodyReader::Chunked { .. } => {
                (Some("Transfer-Encoding: chunked".into()), Framing::Chunked)
            }
            _ => (
                self.request
                    .head
                    .header("content-length")
                    .map(|length| format!("Content-Length: {length}")),
                Framing::Raw,
            ),
        };
        upstream.write_all(&upstream_head(
            self.request,
            &self.shared.upstream,
            framing_header,
        ))?;
        match self.stream_body(&mut body, &mut upstream, framing, cut)? {
            Streamed::Complete => match cut {
                Some(cut) => self.interrupt(cut, upstream, false),
                None => self.relay_response(&mut upstream, relocate_to, false),
            },
            Streamed::Cut(cut) => self.interrupt(cut, upstream, true),
            // The registry may have answered early (a 404 for a lost upload) and closed
            // without reading the rest: that answer is the client's, not a reset.
            Streamed::UpstreamClosed => self.relay_response(&mut upstream, relocate_to, true),
        }
    }

    /// Sends the request body on, counting it, until its end or until `cut` says to stop.
    fn stream_body(
        &mut self,
        body: &mut BodyReader,
        upstream: &mut Wire,
        framing: Framing,
        cut: Option<Cut>,
    ) -> io::Result<Streamed> {
        let mut forwarded = 0u64;
        while let Some(piece) = self.receive(body)? {
            let cut_here = cut.filter(|cut| forwarded + piece.len() as u64 > cut.after_bytes());
            let keep = cut_here.map_or(piece.len(), |cut| (cut.after_bytes() - forwarded) as usize);
            if framing.write_piece(upstream, &piece[..keep]).is_err() {
                return Ok(Streamed::UpstreamClosed);
            }
            forwarded += keep as u64;
            self.note_forwarded(keep);
            if let Some(cut) = cut_here {
                return Ok(Streamed::Cut(cut));
            }
        }
        if framing.finish(upstream).is_err() {
            return Ok(Streamed::UpstreamClosed);
        }
        Ok(Streamed::Complete)
    }

    fn note_forwarded(&self, count: usize) {
        let count = count as u64;
        self.shared
            .forwarded_body_bytes
            .fetch_add(count, Ordering::SeqCst);
    }

    fn interrupt(&mut self, cut: Cut, upstream: Wire, mid_body: bool) -> io::Result<Next> {
        match cut {
            Cut::Reset(_) => {
                if mid_body {
                    let _ = upstream.stream.shutdown(Shutdown::Write);
                }
                upstream.settle();
                Ok(Next::Reset)
            }
            Cut::Stall(_, duration) => {
                pause(&self.shared.cancel(), duration)?;
                Ok(Next::Close)
            }
        }
    }

    /// `unread_body`: part of the request body is still on its way, so the connection must close.
    fn bad_gateway(&mut self, unread_body: bool) -> io::Result<Next> {
        let message = format!("proxy: no answer from upstream {}\n", self.shared.upstream);
        let close = unread_body || self.request.wants_close();
        let next = self.answer(502, &[], message.as_bytes(), close)?;
        Ok(if unread_body { Next::LingerClose } else { next })
    }

    /// Relays the registry's answer; `unread_body` as for [`Exchange::bad_gateway`].
    fn relay_response(
        &mut self,
        upstream: &mut Wire,
        relocate_to: Option<&str>,
        unread_body: bool,
    ) -> io::Result<Next> {
        let Ok(response) = read_final_response(upstream) else {
            return self.bad_gateway(unread_body);
        };
        let mut body = response.body(&self.request.method)?;
        let until_close = matches!(body, BodyReader::UntilClose { .. });
        let close = unread_body || until_close || self.request.wants_close();
        let mut head = format!("{}\r\n", response.head.first_line);
        for (name, value) in &response.head.headers {
            if is_hop_by_hop(name) {
                continue;
            }
            let value = if name.eq_ignore_ascii_case("location") {
                self.shared.rewrite_location(value, relocate_to)
            } else {
                value.clone()
            };
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        let framing = match body {
            BodyReader::Chunked { .. } => {
                head.push_str("Transfer-Encoding: chunked\r\n");
                Framing::Chunked
            }
            _ => Framing::Raw,
        };
        if close {
            head.push_str("Connection: close\r\n");
        }
        head.push_str("\r\n");
        self.shared.records.set_status(self.record, response.status);
        self.client.write_all(head.as_bytes())?;
        while let Some(piece) = body.next_piece(upstream)? {
            framing.write_piece(self.client, &piece)?;
        }
        framing.finish(self.client)?;
        Ok(match (unread_body, close) {
            (true, _) => Next::LingerClose,
            (false, true) => Next::Close,
            (false, false) => Next::KeepAlive,
        })
    }
}

/// How far [`Exchange::stream_body`] got.
enum Streamed {
    Complete,
    /// Stopped at the cut's byte count.
    Cut(Cut),
    /// The registry stopped taking the body.
    UpstreamClosed,
}

/// The request head sent upstream: `Host` is the registry's, hop-by-hop headers are dropped,
/// `framing_header` says how the body follows, and the connection closes after one answer.
fn upstream_head(request: &Request, upstream: &str, framing_header: Option<String>) -> Vec<u8> {
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {upstream}\r\n",
        request.method, request.target
    );
    for (name, value) in &request.head.headers {
        let skipped = ["host", "content-length", "expect"];
        if is_hop_by_hop(name) || skipped.iter().any(|s| name.eq_ignore_ascii_case(s)) {
            continue;
        }
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(line) = framing_header {
        head.push_str(&line);
        head.push_str("\r\n");
    }
    head.push_str("Connection: close\r\n\r\n");
    head.into_bytes()
}

fn read_final_response(upstream: &mut Wire) -> io::Result<Response> {
    for _ in 0..MAX_INTERIM_RESPONSES {
        let head = upstream
            .read_head()?
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "no answer"))?;
        let response = Response::parse(&head)?;
        if !(100..200).contains(&response.status) {
            return Ok(response);
        }
    }
    Err(invalid("too many interim responses"))
}

fn is_hop_by_hop(name: &str) -> bool {
    [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
        "transfer-encoding",
    ]
    .iter()
    .any(|hop| name.eq_ignore_ascii_case(hop))
}

/// `("http://host:port", "/path?query")`; a relative reference has an empty origin.
fn split_origin(url: &str) -> (&str, &str) {
    let Some(scheme_end) = url.find("://") else {
        return ("", url);
    };
    let authority_start = scheme_end + 3;
    let end = url[authority_start..]
        .find('/')
        .map_or(url.len(), |index| authority_start + index);
    url.split_at(end)
}

/// Another origin (127.0.0.2) that answers like a registry's blob upload endpoint and records
/// every request: where a client that follows a cross-host `Location` ends up. Stops when dropped.
pub struct Recorder {
    shared: Arc<RecorderShared>,
    server: Server,
}

struct RecorderShared {
    base_url: String,
    stop: Arc<AtomicBool>,
    records: Records,
    /// Bytes received per upload path.
    uploads: Mutex<HashMap<String, u64>>,
    next_upload: AtomicU64,
}

impl Recorder {
    /// Listens on a free port of 127.0.0.2 (every 127/8 address is loopback on Linux).
    pub fn start() -> io::Result<Recorder> {
        let listener = TcpListener::bind("127.0.0.2:0")?;
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(RecorderShared {
            base_url: format!("http://{}", listener.local_addr()?),
            stop: Arc::clone(&stop),
            records: Records::default(),
            uploads: Mutex::new(HashMap::new()),
            next_upload: AtomicU64::new(1),
        });
        let connection_shared = Arc::clone(&shared);
        let server = Server::start(listener, stop, "recorder", move |stream| {
            serve_recorded(stream, &connection_shared)
        })?;
        Ok(Recorder { shared, server })
    }

    /// `127.0.0.2:PORT`.
    pub fn address(&self) -> String {
        self.server.address.to_string()
    }

    /// `http://127.0.0.2:PORT`, for [`Rule::redirect_uploads_to`].
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.records.snapshot()
    }
}

fn serve_recorded(stream: TcpStream, shared: &RecorderShared) {
    let cancel = Cancel(vec![Arc::clone(&shared.stop)]);
    let Ok(mut wire) = Wire::new(stream, cancel, CLIENT_IDLE_TIMEOUT) else {
        return;
    };
    for _ in 0..MAX_REQUESTS_PER_CONNECTION {
        let Ok(Some(head)) = wire.read_head() else {
            return;
        };
        let Ok(request) = Request::parse(&head) else {
            return;
        };
        if record_and_answer(&mut wire, &request, shared).is_err() || request.wants_close() {
            return;
        }
    }
}

fn record_and_answer(
    wire: &mut Wire,
    request: &Request,
    shared: &RecorderShared,
) -> io::Result<()> {
    let record = shared.records.start(request, None);
    if request.expects_continue() {
        wire.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    let mut body = request.body()?;
    let mut received = 0u64;
    while let Some(piece) = body.next_piece(wire)? {
        received += piece.len() as u64;
        shared.records.add_body(record, &piece);
    }
    let (status, headers) = upload_answer(request, received, shared);
    shared.records.set_status(record, status);
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason_phrase(status));
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("Content-Length: 0\r\n\r\n");
    wire.write_all(head.as_bytes())
}

/// What a registry's blob upload endpoint would answer, enough for a client to carry on.
fn upload_answer(
    request: &Request,
    received: u64,
    shared: &RecorderShared,
) -> (u16, Vec<(String, String)>) {
    let (path, query) = request
        .target
        .split_once('?')
        .unwrap_or((&request.target, ""));
    let Some(name) = path
        .strip_prefix("/v2/")
        .and_then(|rest| rest.split_once("/blobs/"))
        .map(|(name, _)| name.to_owned())
    else {
        return (404, Vec::new());
    };
    let digest = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("digest="))
        .map(|digest| digest.replace("%3A", ":").replace("%3a", ":"));
    let base = &shared.base_url;
    let mut uploads = lock(&shared.uploads);
    let blob_created = |digest: String| {
        let location = format!("{base}/v2/{name}/blobs/{digest}");
        let headers = vec![
            ("Location".into(), location),
            ("Docker-Content-Digest".into(), digest),
        ];
        (201, headers)
    };
    match request.method.as_str() {
        "POST" if path.ends_with("/blobs/uploads/") => match digest {
            Some(digest) => blob_created(digest),
            None => {
                let id = format!(
                    "upload-{}",
                    shared.next_upload.fetch_add(1, Ordering::SeqCst)
                );
                let upload_path = format!("{path}{id}");
                uploads.insert(upload_path.clone(), 0);
                (202, upload_headers(base, &upload_path, &id, 0))
            }
        },
        "PATCH" | "GET" | "PUT" | "DELETE" if path.contains("/blobs/uploads/") => {
            let id = path.rsplit('/').next().unwrap_or_default().to_owned();
            let size = uploads.entry(path.to_owned()).or_insert(0);
            *size += received;
            match (request.method.as_str(), digest) {
                ("PUT", Some(digest)) => blob_created(digest),
                ("PUT", None) => (400, Vec::new()),
                ("DELETE", _) => (204, Vec::new()),
                ("GET", _) => (204, upload_headers(base, path, &id, *size)),
                _ => (202, upload_headers(base, path, &id, *size)),
            }
        }
        _ => (404, Vec::new()),
    }
}

fn upload_headers(base: &str, upload_path: &str, id: &str, size: u64) -> Vec<(String, String)> {
    vec![
        ("Location".into(), format!("{base}{upload_path}")),
        ("Range".into(), format!("0-{}", size.saturating_sub(1))),
        ("Docker-Upload-UUID".into(), id.to_owned()),
    ]
}

/// The requests a server saw, each filled in as its exchange goes on.
#[derive(Default)]
struct Records(Mutex<Vec<RequestRecord>>);

impl Records {
    fn start(&self, request: &Request, fault: Option<Fault>) -> usize {
        let headers = request
            .head
            .headers
            .iter()
            .map(|(name, value)| (name.to_ascii_lowercase(), value.clone()))
            .collect();
        let mut records = lock(&self.0);
        records.push(RequestRecord {
            method: request.method.clone(),
            path: request.target.clone(),
            headers,
            body: Vec::new(),
            body_bytes: 0,
            status: None,
            fault,
        });
        records.len() - 1
    }

    fn add_body(&self, index: usize, piece: &[u8]) {
        let mut records = lock(&self.0);
        let record = &mut records[index];
        record.body_bytes += piece.len() as u64;
        let room = MAX_RECORDED_BODY_BYTES.saturating_sub(record.body.len());
        record
            .body
            .extend_from_slice(&piece[..room.min(piece.len())]);
    }

    fn set_status(&self, index: usize, status: u16) {
        lock(&self.0)[index].status = Some(status);
    }

    fn snapshot(&self) -> Vec<RequestRecord> {
        lock(&self.0).clone()
    }
}

/// An accept loop on its own thread with a thread per connection; stops and joins when dropped.
struct Server {
    address: SocketAddr,
    stop: Arc<AtomicBool>,
    accept_thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start(
        listener: TcpListener,
        stop: Arc<AtomicBool>,
        name: &str,
        serve: impl Fn(TcpStream) + Send + Sync + 'static,
    ) -> io::Result<Server> {
        // Non-blocking accept lets the loop notice the stop flag without a wake-up connection.
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;
        let loop_stop = Arc::clone(&stop);
        let thread_name = format!("{name}-connection");
        let accept_thread = thread::Builder::new()
            .name(format!("{name}-accept"))
            .spawn(move || accept_loop(&listener, &loop_stop, &thread_name, Arc::new(serve)))?;
        Ok(Server {
            address,
            stop,
            accept_thread: Some(accept_thread),
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(handle) = self.accept_thread.take() {
            // A panicking connection thread already failed its exchange; nothing more to report.
            let _ = handle.join();
        }
    }
}

fn accept_loop(
    listener: &TcpListener,
    stop: &AtomicBool,
    thread_name: &str,
    serve: Arc<dyn Fn(TcpStream) + Send + Sync>,
) {
    let mut connections: Vec<JoinHandle<()>> = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        let Ok((stream, _peer)) = listener.accept() else {
            thread::sleep(POLL_INTERVAL);
            continue;
        };
        connections.retain(|handle| !handle.is_finished());
        if connections.len() >= MAX_OPEN_CONNECTIONS {
            reset(stream);
            continue;
        }
        let serve = Arc::clone(&serve);
        let spawned = thread::Builder::new()
            .name(thread_name.to_owned())
            .spawn(move || serve(stream));
        // Failing to spawn drops the stream, which the client sees as a closed connection.
        if let Ok(handle) = spawned {
            connections.push(handle);
        }
    }
    for handle in connections {
        let _ = handle.join();
    }
}

/// Flags that abort blocked socket operations: the stop flag, and the proxy's "down" switch.
#[derive(Clone)]
struct Cancel(Vec<Arc<AtomicBool>>);

impl Cancel {
    fn check(&self) -> io::Result<()> {
        if self.0.iter().any(|flag| flag.load(Ordering::SeqCst)) {
            return Err(io::Error::new(io::ErrorKind::Interrupted, "cancelled"));
        }
        Ok(())
    }
}

/// Sleeps for `duration` unless cancelled first.
fn pause(cancel: &Cancel, duration: Duration) -> io::Result<()> {
    let deadline = Instant::now() + duration;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        cancel.check()?;
        thread::sleep(left.min(POLL_INTERVAL));
    }
    Ok(())
}

/// A socket with a read-ahead buffer. Reads and writes wait in [`POLL_INTERVAL`] slices, fail
/// when cancelled, and time out after `idle` without progress.
struct Wire {
    stream: TcpStream,
    buffer: Vec<u8>,
    position: usize,
    cancel: Cancel,
    idle: Duration,
}

impl Wire {
    fn new(stream: TcpStream, cancel: Cancel, idle: Duration) -> io::Result<Wire> {
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(POLL_INTERVAL))?;
        stream.set_write_timeout(Some(POLL_INTERVAL))?;
        stream.set_nodelay(true)?;
        Ok(Wire {
            stream,
            buffer: Vec::new(),
            position: 0,
            cancel,
            idle,
        })
    }

    fn buffered(&self) -> &[u8] {
        &self.buffer[self.position..]
    }

    fn consume(&mut self, count: usize) -> Vec<u8> {
        let taken = self.buffer[self.position..self.position + count].to_vec();
        self.position += count;
        taken
    }

    /// Reads what the peer has sent; 0 means end of stream.
    fn fill(&mut self) -> io::Result<usize> {
        self.buffer.drain(..self.position);
        self.position = 0;
        let deadline = Instant::now() + self.idle;
        let mut chunk = vec![0; IO_CHUNK];
        loop {
            self.cancel.check()?;
            match self.stream.read(&mut chunk) {
                Ok(count) => {
                    self.buffer.extend_from_slice(&chunk[..count]);
                    return Ok(count);
                }
                Err(error) if is_timeout(&error) && Instant::now() < deadline => {}
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
    }

    /// A message head up to and without its blank line; `None` on a clean end of stream.
    fn read_head(&mut self) -> io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(end) = find(self.buffered(), b"\r\n\r\n") {
                let head = self.consume(end);
                self.consume(4);
                return Ok(Some(head));
            }
            if self.buffered().len() > MAX_HEAD_BYTES {
                return Err(invalid("message head too large"));
            }
            if self.fill()? == 0 {
                return match self.buffered().is_empty() {
                    true => Ok(None),
                    false => Err(io::ErrorKind::UnexpectedEof.into()),
                };
            }
        }
    }

    /// One CRLF-terminated line, without the CRLF.
    fn read_line(&mut self) -> io::Result<Vec<u8>> {
        loop {
            if let Some(end) = find(self.buffered(), b"\r\n") {
                let line = self.consume(end);
                self.consume(2);
                return Ok(line);
            }
            if self.buffered().len() > MAX_HEAD_BYTES {
                return Err(invalid("line too long"));
            }
            if self.fill()? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// Up to `max` bytes; empty only at end of stream.
    fn read_some(&mut self, max: usize) -> io::Result<Vec<u8>> {
        if self.buffered().is_empty() && self.fill()? == 0 {
            return Ok(Vec::new());
        }
        let count = self.buffered().len().min(max);
        Ok(self.consume(count))
    }

    fn write_all(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        let mut deadline = Instant::now() + self.idle;
        while !bytes.is_empty() {
            self.cancel.check()?;
            match self.stream.write(bytes) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(count) => {
                    bytes = &bytes[count..];
                    deadline = Instant::now() + self.idle;
                }
                Err(error) if is_timeout(&error) && Instant::now() < deadline => {}
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    /// Waits (bounded) until the registry has answered and closed, dropping what it says.
    fn settle(mut self) {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        self.idle = SETTLE_TIMEOUT;
        while Instant::now() < deadline {
            match self.read_some(IO_CHUNK) {
                Ok(piece) if !piece.is_empty() => {}
                _ => return,
            }
        }
    }

    /// Closes after the client has seen an early answer: stop writing, then read and drop what
    /// it still sends (bounded), so closing with unread data does not reset the connection
    /// before the client has read the answer.
    fn linger_close(mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
        let deadline = Instant::now() + LINGER_TIMEOUT;
        self.idle = LINGER_TIMEOUT;
        let mut dropped = 0u64;
        while Instant::now() < deadline && dropped < MAX_LINGER_BYTES {
            match self.read_some(IO_CHUNK) {
                Ok(piece) if !piece.is_empty() => dropped += piece.len() as u64,
                _ => return,
            }
        }
    }
}

fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// Closes with RST instead of FIN, like a crashed peer or a middlebox dropping the connection.
fn reset(stream: TcpStream) {
    set_linger_zero(&stream);
    drop(stream);
}

/// SO_LINGER with a zero timeout; std's `TcpStream::set_linger` is unstable. The constants are
/// Linux's generic ones (x86, Arm, RISC-V).
#[cfg(all(
    target_os = "linux",
    any(
        target_arch = "x86_64",
        target_arch = "x86",
        target_arch = "aarch64",
        target_arch = "arm",
        target_arch = "riscv64"
    )
))]
fn set_linger_zero(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    use std::os::raw::{c_int, c_void};

    #[repr(C)]
    struct Linger {
        onoff: c_int,
        seconds: c_int,
    }
    extern "C" {
        fn setsockopt(
            socket: c_int,
            level: c_int,
            name: c_int,
            value: *const c_void,
            length: u32,
        ) -> c_int;
    }
    const SOL_SOCKET: c_int = 1;
    const SO_LINGER: c_int = 13;
    let linger = Linger {
        onoff: 1,
        seconds: 0,
    };
    // SAFETY: the descriptor stays open for the call (we borrow its stream), and the pointer and
    // length describe a live `struct linger`, which is all setsockopt reads.
    unsafe {
        setsockopt(
            stream.as_raw_fd(),
            SOL_SOCKET,
            SO_LINGER,
            std::ptr::from_ref(&linger).cast(),
            std::mem::size_of::<Linger>() as u32,
        );
    }
}

/// Elsewhere a close still resets when unread data is pending, which is the usual case here.
#[cfg(not(all(
    target_os = "linux",
    any(
        target_arch = "x86_64",
        target_arch = "x86",
        target_arch = "aarch64",
        target_arch = "arm",
        target_arch = "riscv64"
    )
)))]
fn set_linger_zero(_stream: &TcpStream) {}

/// A message head: its first line and headers in order, names as sent.
struct Head {
    first_line: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn parse(bytes: &[u8]) -> io::Result<Head> {
        let text = String::from_utf8_lossy(bytes);
        let mut lines = text.split("\r\n");
        let first_line = lines.next().unwrap_or_default().to_owned();
        let headers = lines
            .map(|line| {
                let (name, value) = line.split_once(':').ok_or_else(|| invalid("bad header"))?;
                Ok((name.trim().to_owned(), value.trim().to_owned()))
            })
            .collect::<io::Result<_>>()?;
        Ok(Head {
            first_line,
            headers,
        })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(header, _)| header.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// Whether any `name` header lists `token` (comma-separated, case-insensitive).
    fn lists(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(header, _)| header.eq_ignore_ascii_case(name))
            .flat_map(|(_, value)| value.split(','))
            .any(|item| item.trim().eq_ignore_ascii_case(token))
    }

    /// How the body that follows this head is framed (requests and most answers).
    fn body(&self) -> io::Result<BodyReader> {
        if self.lists("transfer-encoding", "chunked") {
            return Ok(BodyReader::Chunked {
                left_in_chunk: 0,
                finished: false,
            });
        }
        match self.header("content-length") {
            Some(length) => length
                .parse()
                .map(BodyReader::Length)
                .map_err(|_| invalid("bad Content-Length")),
            None => Ok(BodyReader::Length(0)),
        }
    }
}

struct Request {
    method: String,
    /// Path and query.
    target: String,
    http_1_0: bool,
    head: Head,
}

impl Request {
    fn parse(bytes: &[u8]) -> io::Result<Request> {
        let head = Head::parse(bytes)?;
        let mut parts = head.first_line.split(' ');
        let (Some(method), Some(target), Some(version), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid("bad request line"));
        };
        if !version.starts_with("HTTP/1.") {
            return Err(invalid("not HTTP/1.x"));
        }
        Ok(Request {
            method: method.to_owned(),
            target: target.to_owned(),
            http_1_0: version == "HTTP/1.0",
            head,
        })
    }

    fn wants_close(&self) -> bool {
        self.head.lists("connection", "close")
            || (self.http_1_0 && !self.head.lists("connection", "keep-alive"))
    }

    fn expects_continue(&self) -> bool {
        self.head.lists("expect", "100-continue")
    }

    fn body(&self) -> io::Result<BodyReader> {
        self.head.body()
    }
}

struct Response {
    status: u16,
    head: Head,
}

impl Response {
    fn parse(bytes: &[u8]) -> io::Result<Response> {
        let head = Head::parse(bytes)?;
        let status = head
            .first_line
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| invalid("bad status line"))?;
        Ok(Response { status, head })
    }

    /// The body framing of an answer to `method` (RFC 9112 section 6.3).
    fn body(&self, method: &str) -> io::Result<BodyReader> {
        if method == "HEAD" || self.status < 200 || self.status == 204 || self.status == 304 {
            return Ok(BodyReader::Length(0));
        }
        if self.head.lists("transfer-encoding", "chunked")
            || self.head.header("content-length").is_some()
        {
            return self.head.body();
        }
        Ok(BodyReader::UntilClose { finished: false })
    }
}

/// Reads a body in pieces, undoing chunked encoding.
enum BodyReader {
    /// Bytes left.
    Length(u64),
    Chunked {
        left_in_chunk: u64,
        finished: bool,
    },
    UntilClose {
        finished: bool,
    },
}

impl BodyReader {
    fn declared_length(&self) -> Option<u64> {
        match self {
            BodyReader::Length(length) => Some(*length),
            _ => None,
        }
    }

    /// The next piece of data; `None` at the end of the body.
    fn next_piece(&mut self, wire: &mut Wire) -> io::Result<Option<Vec<u8>>> {
        match self {
            BodyReader::Length(0) => Ok(None),
            BodyReader::Length(left) => {
                let piece = read_piece(wire, *left)?;
                *left -= piece.len() as u64;
                Ok(Some(piece))
            }
            BodyReader::Chunked { finished: true, .. } => Ok(None),
            BodyReader::Chunked {
                left_in_chunk,
                finished,
            } => {
                if *left_in_chunk == 0 {
                    *left_in_chunk = parse_chunk_size(&wire.read_line()?)?;
                    if *left_in_chunk == 0 {
                        skip_trailers(wire)?;
                        *finished = true;
                        return Ok(None);
                    }
                }
                let piece = read_piece(wire, *left_in_chunk)?;
                *left_in_chunk -= piece.len() as u64;
                if *left_in_chunk == 0 && !wire.read_line()?.is_empty() {
                    return Err(invalid("chunk data not followed by CRLF"));
                }
                Ok(Some(piece))
            }
            BodyReader::UntilClose { finished: true } => Ok(None),
            BodyReader::UntilClose { finished } => {
                let piece = wire.read_some(IO_CHUNK)?;
                *finished = piece.is_empty();
                Ok((!piece.is_empty()).then_some(piece))
            }
        }
    }
}

/// Up to `left` (and [`IO_CHUNK`]) bytes of a body that must not end yet.
fn read_piece(wire: &mut Wire, left: u64) -> io::Result<Vec<u8>> {
    let piece = wire.read_some(left.min(IO_CHUNK as u64) as usize)?;
    if piece.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "body ended early",
        ));
    }
    Ok(piece)
}

fn parse_chunk_size(line: &[u8]) -> io::Result<u64> {
    let text = String::from_utf8_lossy(line);
    let size = text.split(';').next().unwrap_or_default().trim();
    u64::from_str_radix(size, 16).map_err(|_| invalid("bad chunk size"))
}

fn skip_trailers(wire: &mut Wire) -> io::Result<()> {
    for _ in 0..MAX_TRAILER_LINES {
        if wire.read_line()?.is_empty() {
            return Ok(());
        }
    }
    Err(invalid("too many trailer lines"))
}

/// How a body is written: as is (its length is in the head, or it runs until close), or chunked.
#[derive(Clone, Copy)]
enum Framing {
    Raw,
    Chunked,
}

impl Framing {
    fn write_piece(self, wire: &mut Wire, piece: &[u8]) -> io::Result<()> {
        match self {
            Framing::Raw => wire.write_all(piece),
            // An empty chunk would end the body.
            Framing::Chunked if piece.is_empty() => Ok(()),
            Framing::Chunked => {
                let mut chunk = format!("{:x}\r\n", piece.len()).into_bytes();
                chunk.extend_from_slice(piece);
                chunk.extend_from_slice(b"\r\n");
                wire.write_all(&chunk)
            }
        }
    }

    fn finish(self, wire: &mut Wire) -> io::Result<()> {
        match self {
            Framing::Raw => Ok(()),
            Framing::Chunked => wire.write_all(b"0\r\n\r\n"),
        }
    }
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        307 => "Temporary Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        413 => "Request Entity Too Large",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_owned())
}

/// A poisoned lock only means another test thread panicked; the data is still usable.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::support::noise;
    use std::process::Command;

    /// A registry stand-in answering fixed responses by path, recording what arrives.
    struct FakeUpstream {
        shared: Arc<FakeShared>,
        server: Server,
    }

    struct FakeShared {
        address: String,
        stop: Arc<AtomicBool>,
        received: Mutex<Vec<Received>>,
    }

    #[derive(Clone, Debug)]
    struct Received {
        head: String,
        body: Vec<u8>,
        complete: bool,
    }

    impl FakeUpstream {
        fn start() -> FakeUpstream {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            let shared = Arc::new(FakeShared {
                address: listener.local_addr().unwrap().to_string(),
                stop: Arc::clone(&stop),
                received: Mutex::new(Vec::new()),
            });
            let connection_shared = Arc::clone(&shared);
            let server = Server::start(listener, stop, "fake-upstream", move |stream| {
                fake_answer(stream, &connection_shared)
            })
            .unwrap();
            FakeUpstream { shared, server }
        }

        fn address(&self) -> String {
            self.shared.address.clone()
        }

        fn received(&self) -> Vec<Received> {
            lock(&self.shared.received).clone()
        }
    }

    /// One request per connection, as the proxy sends them.
    fn fake_answer(stream: TcpStream, shared: &FakeShared) {
        let cancel = Cancel(vec![Arc::clone(&shared.stop)]);
        let mut wire = Wire::new(stream, cancel, Duration::from_secs(10)).unwrap();
        let Ok(Some(head)) = wire.read_head() else {
            return;
        };
        let request = Request::parse(&head).unwrap();
        let index = {
            let mut received = lock(&shared.received);
            received.push(Received {
                head: String::from_utf8_lossy(&head).into_owned(),
                body: Vec::new(),
                complete: false,
            });
            received.len() - 1
        };
        if request.target == "/early" {
            let answer = "HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\ngone";
            let _ = wire.write_all(answer.as_bytes());
            return;
        }
        let mut body = request.body().unwrap();
        loop {
            match body.next_piece(&mut wire) {
                Ok(Some(piece)) => lock(&shared.received)[index].body.extend(piece),
                Ok(None) => break,
                Err(_) => return,
            }
        }
        let length = lock(&shared.received)[index].body.len();
        lock(&shared.received)[index].complete = true;
        let answer = match (request.method.as_str(), request.target.as_str()) {
            ("POST", target) if target.ends_with("/blobs/uploads/") => format!(
                "HTTP/1.1 202 Accepted\r\nLocation: http://{}/v2/r/blobs/uploads/u1?_state=x\r\nContent-Length: 0\r\n\r\n",
                shared.address
            ),
            ("HEAD", _) => "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nDocker-Content-Digest: sha256:ab\r\n\r\n".into(),
            (_, "/chunked") => "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n".into(),
            (_, "/no-content") => "HTTP/1.1 204 No Content\r\n\r\n".into(),
            (_, "/until-close") => "HTTP/1.1 200 OK\r\n\r\nuntil close".into(),
            (method, target) => {
                let text = format!("{method} {target} {length}");
                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{text}", text.len())
            }
        };
        let _ = wire.write_all(answer.as_bytes());
    }

    /// A raw HTTP client on one connection.
    struct Client(Wire);

    struct Answer {
        status: u16,
        head: Head,
        body: Vec<u8>,
    }

    impl Client {
        fn connect(address: &str) -> Client {
            let stream = TcpStream::connect(address).unwrap();
            Client(Wire::new(stream, Cancel(Vec::new()), Duration::from_secs(10)).unwrap())
        }

        fn send(&mut self, bytes: &[u8]) {
            self.0.write_all(bytes).unwrap();
        }

        fn answer(&mut self, method: &str) -> Answer {
            let head = self.0.read_head().unwrap().expect("an answer");
            let response = Response::parse(&head).unwrap();
            let mut reader = response.body(method).unwrap();
            let mut body = Vec::new();
            while let Some(piece) = reader.next_piece(&mut self.0).unwrap() {
                body.extend(piece);
            }
            Answer {
                status: response.status,
                head: response.head,
                body,
            }
        }

        fn get(&mut self, path: &str) -> Answer {
            self.send(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
            self.answer("GET")
        }

        /// True when the proxy closed or reset the connection instead of answering.
        fn is_cut(&mut self) -> bool {
            self.0.idle = Duration::from_secs(5);
            match self.0.read_some(1) {
                Ok(bytes) => bytes.is_empty(),
                Err(error) => error.kind() == io::ErrorKind::ConnectionReset,
            }
        }
    }

    fn started() -> (FakeUpstream, Proxy) {
        let upstream = FakeUpstream::start();
        let proxy = Proxy::start(&upstream.address()).unwrap();
        (upstream, proxy)
    }

    #[test]
    fn forwards_length_and_chunked_bodies_on_one_kept_alive_connection() {
        let (upstream, proxy) = started();
        let mut client = Client::connect(&proxy.address());
        client.send(b"POST /echo?x=1 HTTP/1.1\r\nHost: example\r\nX-Test: kept\r\nContent-Length: 11\r\n\r\nhello world");
        let answer = client.answer("POST");
        assert_eq!(
            (answer.status, answer.body.as_slice()),
            (200, &b"POST /echo?x=1 11"[..])
        );

        client.send(b"PATCH /echo HTTP/1.1\r\nHost: example\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nabcd\r\n3\r\nefg\r\n0\r\nX-Trailer: t\r\n\r\n");
        assert_eq!(client.answer("PATCH").body, b"PATCH /echo 7");

        let large = noise(7, 1_000_003);
        let mut chunked =
            b"PATCH /large HTTP/1.1\r\nHost: example\r\nTransfer-Encoding: chunked\r\n\r\n"
                .to_vec();
        for part in large.chunks(300_001) {
            chunked.extend(format!("{:x}\r\n", part.len()).bytes());
            chunked.extend(part);
            chunked.extend(b"\r\n");
        }
        chunked.extend(b"0\r\n\r\n");
        client.send(&chunked);
        assert_eq!(client.answer("PATCH").body, b"PATCH /large 1000003");

        let received = upstream.received();
        assert_eq!(received[0].body, b"hello world");
        let host = format!("Host: {}\r\n", upstream.address());
        assert!(received[0].head.contains(&host), "{}", received[0].head);
        assert!(
            received[0]
                .head
                .contains("X-Test: kept\r\nContent-Length: 11\r\n"),
            "{}",
            received[0].head
        );
        assert!(
            received[1].head.contains("Transfer-Encoding: chunked"),
            "{}",
            received[1].head
        );
        assert_eq!(received[1].body, b"abcdefg");
        assert!(received[2].body == large);
        assert_eq!(proxy.connections(), 1);
        assert_eq!(proxy.body_bytes(), 11 + 7 + 1_000_003);
        assert_eq!(proxy.forwarded_body_bytes(), proxy.body_bytes());
        let records = proxy.requests();
        assert_eq!(records.len(), 3);
        assert_eq!(
            (records[0].method.as_str(), records[0].path.as_str()),
            ("POST", "/echo?x=1")
        );
        assert_eq!(records[0].header("X-TEST"), Some("kept"));
        assert_eq!(
            (records[0].body.as_slice(), records[0].status),
            (&b"hello world"[..], Some(200))
        );
        assert_eq!(records[2].body_bytes, 1_000_003);
        assert_eq!(records[2].body.len(), MAX_RECORDED_BODY_BYTES);
    }

    #[test]
    fn relays_chunked_head_no_content_and_close_delimited_answers() {
        let (_upstream, proxy) = started();
        let mut client = Client::connect(&proxy.address());
        let chunked = client.get("/chunked");
        assert_eq!(chunked.head.header("transfer-encoding"), Some("chunked"));
        assert_eq!(chunked.body, b"hello world");

        client.send(b"HEAD /v2/r/blobs/sha256:ab HTTP/1.1\r\nHost: x\r\n\r\n");
        let head = client.answer("HEAD");
        assert_eq!(head.status, 200);
        assert_eq!(head.head.header("content-length"), Some("1234"));
        assert_eq!(head.head.header("docker-content-digest"), Some("sha256:ab"));

        assert_eq!(client.get("/no-content").status, 204);
        let until_close = client.get("/until-close");
        assert_eq!(until_close.body, b"until close");
        assert_eq!(until_close.head.header("connection"), Some("close"));
        assert!(client.is_cut());
        assert_eq!(proxy.connections(), 1);
    }

    #[test]
    fn expect_continue_is_answered_by_the_proxy() {
        let (upstream, proxy) = started();
        let mut client = Client::connect(&proxy.address());
        client.send(
            b"PUT /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
        );
        assert_eq!(client.answer("PUT").status, 100);
        client.send(b"abc");
        assert_eq!(client.answer("PUT").body, b"PUT /echo 3");
        assert!(!upstream.received()[0].head.contains("Expect"));
    }

    #[test]
    fn respond_rule_applies_its_times_then_passes_through() {
        let (upstream, proxy) = started();
        proxy.add_rule(
            Rule::new(Fault::retry_after(503, 2))
                .method("GET")
                .path_contains("/v2/")
                .times(2),
        );
        let mut client = Client::connect(&proxy.address());
        let first = client.get("/v2/");
        assert_eq!(first.status, 503);
        assert_eq!(first.head.header("retry-after"), Some("2"));
        assert_eq!(client.get("/other").status, 200, "other paths pass");
        assert_eq!(client.get("/v2/").status, 503);
        assert_eq!(client.get("/v2/").status, 200);
        assert_eq!(upstream.received().len(), 2);
        let statuses: Vec<_> = proxy.requests().iter().map(|r| r.status).collect();
        assert_eq!(statuses, [Some(503), Some(200), Some(503), Some(200)]);
        assert_eq!(proxy.requests()[0].fault, Some(Fault::retry_after(503, 2)));
        assert_eq!(proxy.requests()[1].fault, None);

        // A refused body is read to its end, so the connection stays usable.
        proxy.add_rule(Rule::new(Fault::status(500)).method("PUT").times(1));
        client.send(b"PUT /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
        assert_eq!(client.answer("PUT").status, 500);
        assert_eq!(client.get("/v2/").status, 200);
        assert_eq!(proxy.connections(), 1);
        assert_eq!(proxy.body_bytes(), 3);
        assert_eq!(proxy.forwarded_body_bytes(), 0);
        proxy.clear_rules();
    }

    #[test]
    fn reset_after_body_bytes_cuts_the_client_and_forwards_exactly_that_much() {
        let (upstream, proxy) = started();
        proxy.add_rule(
            Rule::new(Fault::ResetAfterBodyBytes(100_000))
                .method("PATCH")
                .times(1),
        );
        let body = noise(3, 4 * 1024 * 1024);
        let mut stream = TcpStream::connect(proxy.address()).unwrap();
        stream
            .set_write_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let head = format!(
            "PATCH /blob HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).unwrap();
        let written = stream.write_all(&body);
        let read = stream.read(&mut [0; 64]);
        let reset_kinds = [io::ErrorKind::ConnectionReset, io::ErrorKind::BrokenPipe];
        assert!(
            written
                .as_ref()
                .is_err_and(|error| reset_kinds.contains(&error.kind()))
                || read
                    .as_ref()
                    .is_err_and(|error| error.kind() == io::ErrorKind::ConnectionReset),
            "expected a reset, got write {written:?}, read {read:?}"
        );
        let received = upstream.received();
        assert_eq!(received[0].body.len(), 100_000);
        assert!(!received[0].complete);
        assert_eq!(received[0].body, body[..100_000]);
        assert_eq!(proxy.forwarded_body_bytes(), 100_000);
        assert!(proxy.body_bytes() >= 100_000);
        assert_eq!(proxy.requests()[0].status, None);

        // Once used up, the rule no longer applies.
        let mut client = Client::connect(&proxy.address());
        client.send(b"PATCH /blob HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc");
        assert_eq!(client.answer("PATCH").body, b"PATCH /blob 3");
    }

    #[test]
    fn reset_on_a_short_body_loses_the_answer_after_the_registry_acted() {
        let (upstream, proxy) = started();
        proxy.add_rule(Rule::new(Fault::ResetAfterBodyBytes(10)));
        let mut client = Client::connect(&proxy.address());
        client.send(b"PUT /short HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc");
        assert!(client.is_cut());
        assert!(upstream.received()[0].complete);

        proxy.clear_rules();
        proxy.add_rule(Rule::new(Fault::Reset).method("GET"));
        let mut client = Client::connect(&proxy.address());
        client.send(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(client.is_cut());
        assert_eq!(upstream.received().len(), 1, "Reset forwards nothing");
    }

    #[test]
    fn body_limit_answers_413_like_ingress_nginx() {
        let (upstream, proxy) = started();
        proxy.add_rule(Rule::new(Fault::BodyLimit(1000)));

        let mut client = Client::connect(&proxy.address());
        let mut request =
            b"PATCH /big HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n".to_vec();
        request.extend(noise(1, 5000));
        client.send(&request);
        let answer = client.answer("PATCH");
        assert_eq!(answer.status, 413);
        assert_eq!(
            answer.head.first_line,
            "HTTP/1.1 413 Request Entity Too Large"
        );
        assert_eq!(answer.head.header("content-type"), Some("text/html"));
        assert_eq!(answer.body, NGINX_413_PAGE.as_bytes());
        assert!(client.is_cut());

        let mut client = Client::connect(&proxy.address());
        let part = noise(2, 600);
        let mut chunked =
            b"PATCH /big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for _ in 0..3 {
            chunked.extend(b"258\r\n");
            chunked.extend(&part);
            chunked.extend(b"\r\n");
        }
        chunked.extend(b"0\r\n\r\n");
        client.send(&chunked);
        assert_eq!(client.answer("PATCH").status, 413);
        assert!(upstream.received().is_empty());

        let mut client = Client::connect(&proxy.address());
        client.send(b"PATCH /small HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n");
        assert_eq!(client.answer("PATCH").body, b"PATCH /small 5");
        let received = upstream.received();
        assert!(
            received[0].head.contains("Content-Length: 5\r\n"),
            "{}",
            received[0].head
        );
        assert!(!received[0].head.contains("chunked"));
    }

    #[test]
    fn locations_point_back_at_the_proxy_or_at_the_other_origin() {
        let (_upstream, proxy) = started();
        let recorder = Recorder::start().expect("127.0.0.2 is bindable (all of 127/8 is loopback)");
        let mut client = Client::connect(&proxy.address());
        let post = b"POST /v2/r/blobs/uploads/ HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n";
        client.send(post);
        let answer = client.answer("POST");
        let expected = format!("{}/v2/r/blobs/uploads/u1?_state=x", proxy.url());
        assert_eq!(
            (answer.status, answer.head.header("location")),
            (202, Some(expected.as_str()))
        );

        proxy.add_rule(Rule::redirect_uploads_to(&recorder.base_url()));
        client.send(post);
        let location = client
            .answer("POST")
            .head
            .header("location")
            .unwrap()
            .to_owned();
        assert_eq!(
            location,
            format!("{}/v2/r/blobs/uploads/u1?_state=x", recorder.base_url())
        );
        assert!(location.starts_with("http://127.0.0.2:"));

        // A client following it lands on the recorder, which plays along and keeps the headers.
        let path = location.strip_prefix(&recorder.base_url()).unwrap();
        let mut other = Client::connect(&recorder.address());
        other.send(format!("PATCH {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sentinel\r\nContent-Length: 5\r\n\r\nhello").as_bytes());
        let patched = other.answer("PATCH");
        assert_eq!(patched.status, 202);
        assert_eq!(patched.head.header("range"), Some("0-4"));
        let upload = patched.head.header("location").unwrap().to_owned();
        let upload_path = upload.strip_prefix(&recorder.base_url()).unwrap();
        other.send(format!("PUT {upload_path}?digest=sha256%3Aab HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n").as_bytes());
        let put = other.answer("PUT");
        assert_eq!(put.status, 201);
        assert_eq!(put.head.header("docker-content-digest"), Some("sha256:ab"));
        other.send(b"POST /v2/r/blobs/uploads/ HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
        let created = other.answer("POST");
        assert_eq!(created.status, 202);
        assert!(created
            .head
            .header("location")
            .unwrap()
            .starts_with(&recorder.base_url()));
        let recorded = recorder.requests();
        assert_eq!(recorded.len(), 3);
        assert_eq!(recorded[0].header("authorization"), Some("Bearer sentinel"));
        assert_eq!(
            (recorded[0].body.as_slice(), recorded[0].status),
            (&b"hello"[..], Some(202))
        );
    }

    #[test]
    fn stall_holds_the_request_then_closes() {
        let (upstream, proxy) = started();
        proxy.add_rule(Rule::new(Fault::Stall(Duration::from_millis(500))).times(1));
        let mut stream = TcpStream::connect(proxy.address()).unwrap();
        let started = Instant::now();
        stream
            .write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let early = stream.read(&mut [0; 64]);
        assert!(
            early.as_ref().is_err_and(is_timeout),
            "no answer during the stall: {early:?}"
        );
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let late = stream.read(&mut [0; 64]);
        assert!(
            matches!(late, Ok(0)) || late.is_err(),
            "closed after it: {late:?}"
        );
        assert!(started.elapsed() >= Duration::from_millis(500));
        assert!(upstream.received().is_empty());
        assert_eq!(proxy.requests()[0].status, None);

        // StallAfterBodyBytes forwards its share first.
        proxy.add_rule(Rule::new(Fault::StallAfterBodyBytes(
            4,
            Duration::from_millis(200),
        )));
        let mut client = Client::connect(&proxy.address());
        client.send(b"PATCH /x HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789");
        assert!(client.is_cut());
        assert_eq!(upstream.received()[0].body, b"0123");
    }

    #[test]
    fn a_down_registry_resets_connections_until_it_comes_back() {
        let (_upstream, proxy) = started();
        let mut kept = Client::connect(&proxy.address());
        assert_eq!(kept.get("/v2/").status, 200);

        proxy.set_upstream_down(true);
        assert!(kept.is_cut(), "open connections are cut");
        let mut fresh = Client::connect(&proxy.address());
        let _ = fresh.0.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(fresh.is_cut(), "new connections are reset");
        assert!(proxy.refused_connections() >= 2);

        proxy.set_upstream_down(false);
        assert_eq!(Client::connect(&proxy.address()).get("/v2/").status, 200);
        assert_eq!(proxy.connections(), 2);
    }

    #[test]
    fn an_unreachable_upstream_is_a_502() {
        let unused = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = unused.local_addr().unwrap().to_string();
        drop(unused);
        let proxy = Proxy::start(&address).unwrap();
        let mut client = Client::connect(&proxy.address());
        let answer = client.get("/v2/");
        assert_eq!(answer.status, 502);
        assert_eq!(
            client.get("/v2/").status,
            502,
            "the connection stays usable"
        );
    }

    #[test]
    fn an_early_answer_of_the_registry_reaches_the_client() {
        let (_upstream, proxy) = started();
        let body = noise(5, 16 * 1024 * 1024);
        let mut client = Client::connect(&proxy.address());
        let head = format!(
            "PATCH /early HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        client.send(head.as_bytes());
        // The proxy may stop reading at any point; what it has not taken is for the kernel.
        let _ = client.0.write_all(&body);
        let answer = client.answer("PATCH");
        assert_eq!((answer.status, answer.body.as_slice()), (404, &b"gone"[..]));
        assert_eq!(proxy.requests()[0].status, Some(404));
        assert!(
            proxy.forwarded_body_bytes() < body.len() as u64,
            "the registry stopped reading"
        );
    }

    #[test]
    fn dropping_the_proxy_stops_it_promptly() {
        let (_upstream, proxy) = started();
        proxy.add_rule(Rule::new(Fault::Stall(Duration::from_secs(600))));
        let address = proxy.address();
        let mut client = Client::connect(&address);
        client.send(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n");
        let idle = Client::connect(&address);
        thread::sleep(Duration::from_millis(100));
        let started = Instant::now();
        drop(proxy);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert!(client.is_cut());
        drop(idle);
        assert!(TcpStream::connect(&address).is_err(), "the port is closed");
    }

    /// The plain registry of the test services, when they run; with IDPB_TEST_SERVICES=1 its
    /// absence is a failure.
    fn plain_registry() -> Option<String> {
        match std::env::var("IDPB_TEST_REGISTRY_PLAIN") {
            Ok(address) => Some(address),
            Err(_) => {
                assert_ne!(
                    std::env::var("IDPB_TEST_SERVICES").as_deref(),
                    Ok("1"),
                    "IDPB_TEST_SERVICES=1 but IDPB_TEST_REGISTRY_PLAIN is not set"
                );
                eprintln!(
                    "IDPB_TEST_REGISTRY_PLAIN is not set: skipping the real-registry proxy test"
                );
                None
            }
        }
    }

    /// `curl` through nothing but the given URL (CI machines may export http_proxy).
    fn curl(args: &[&str]) -> (u16, String) {
        let output = Command::new("curl")
            .args([
                "-sS",
                "--noproxy",
                "*",
                "--max-time",
                "30",
                "-o",
                "/dev/null",
                "-D",
                "-",
            ])
            .args(args)
            .output()
            .expect("curl runs");
        let headers = String::from_utf8_lossy(&output.stdout).into_owned();
        let status = headers
            .lines()
            .rev()
            .find(|line| line.starts_with("HTTP/"))
            .and_then(|line| line.split(' ').nth(1))
            .and_then(|code| code.parse().ok())
            .unwrap_or(0);
        (status, headers)
    }

    fn header_of(headers: &str, name: &str) -> Option<String> {
        headers.lines().find_map(|line| {
            let (header, value) = line.split_once(':')?;
            header
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
    }

    #[test]
    fn the_real_registry_works_through_the_proxy_and_survives_a_cut_upload() {
        let Some(registry) = plain_registry() else {
            return;
        };
        let proxy = Proxy::start(&registry).unwrap();
        let (status, headers) = curl(&[&format!("{}/v2/", proxy.url())]);
        assert_eq!(
            status, 200,
            "the proxy could not reach the registry at {registry}:\n{headers}"
        );

        let repository = crate::support::unique("proxy");
        let uploads = format!("{}/v2/{repository}/blobs/uploads/", proxy.url());
        let (status, headers) = curl(&["-X", "POST", &uploads]);
        assert_eq!(status, 202, "{headers}");
        let location = header_of(&headers, "location").expect("a Location");
        assert!(
            location.starts_with(&proxy.url()),
            "Location points at the proxy: {location}"
        );

        // A PATCH cut after 300 000 bytes fails on the client side.
        let blob = noise(11, 1024 * 1024);
        let file = crate::support::TempDir::new("proxy-blob");
        let blob_path = file.path().join("blob");
        std::fs::write(&blob_path, &blob).unwrap();
        let data = format!("@{}", blob_path.display());
        proxy.add_rule(
            Rule::new(Fault::ResetAfterBodyBytes(300_000))
                .method("PATCH")
                .times(1),
        );
        let (status, headers) = curl(&[
            "-X",
            "PATCH",
            "-H",
            "Content-Type: application/octet-stream",
            "--data-binary",
            &data,
            &location,
        ]);
        assert_eq!(status, 0, "the client sees no answer: {headers}");
        // distribution 2.8 keeps the 300 000 bytes it got, so the upload no longer matches its
        // `_state` offset: it cancels the upload ("upload resumed at wrong offset") and answers
        // 404 BLOB_UPLOAD_INVALID. A client can only start that blob over.
        let (status, headers) = curl(&[&location]);
        assert_eq!(status, 404, "the cut upload is gone: {headers}");

        // A fresh upload of the whole blob goes through.
        let (status, headers) = curl(&["-X", "POST", &uploads]);
        assert_eq!(status, 202, "{headers}");
        let location = header_of(&headers, "location").unwrap();
        let (status, headers) = curl(&[
            "-X",
            "PATCH",
            "-H",
            "Content-Type: application/octet-stream",
            "-H",
            "Transfer-Encoding: chunked",
            "--data-binary",
            &data,
            &location,
        ]);
        assert_eq!(status, 202, "{headers}");
        let location = header_of(&headers, "location").unwrap();
        let digest = format!(
            "sha256:{}",
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&blob))
        );
        let separator = if location.contains('?') { '&' } else { '?' };
        let (status, headers) = curl(&[
            "-X",
            "PUT",
            &format!("{location}{separator}digest={digest}"),
        ]);
        assert_eq!(status, 201, "{headers}");
        let (status, headers) = curl(&[
            "-I",
            &format!("{}/v2/{repository}/blobs/{digest}", proxy.url()),
        ]);
        assert_eq!(status, 200, "{headers}");
        assert_eq!(
            header_of(&headers, "content-length"),
            Some(blob.len().to_string())
        );
        assert_eq!(proxy.forwarded_body_bytes(), 300_000 + blob.len() as u64);
    }
}
