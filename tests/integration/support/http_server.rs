//! The request side of HTTP/1.1 shared by the test servers (fake daemon,
//! token issuer): keep-alive connections, request heads, small bodies read and
//! dropped, every wait bounded.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How often blocked reads wake up to check the stop flag.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// A connection idle this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// A socket the servers accept: blocking, with read and write timeouts.
pub trait TimedStream: Read + Write {
    fn set_timeouts(&self) -> io::Result<()>;
}

impl TimedStream for UnixStream {
    fn set_timeouts(&self) -> io::Result<()> {
        // Accepted sockets must block (with a timeout) even though the listener does not.
        self.set_nonblocking(false)?;
        self.set_read_timeout(Some(POLL_INTERVAL))?;
        self.set_write_timeout(Some(IDLE_TIMEOUT))
    }
}

impl TimedStream for TcpStream {
    fn set_timeouts(&self) -> io::Result<()> {
        self.set_nonblocking(false)?;
        self.set_read_timeout(Some(POLL_INTERVAL))?;
        self.set_write_timeout(Some(IDLE_TIMEOUT))
    }
}

/// A parsed HTTP/1.1 request head (bodies are read and dropped).
pub struct HttpRequest {
    pub method: String,
    pub target: String,
    pub version: String,
    pub headers: Vec<(String, String)>,
}

impl HttpRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    pub fn wants_close(&self) -> bool {
        let connection = self.header("connection").map(str::to_ascii_lowercase);
        match connection.as_deref() {
            Some(value) if value.contains("close") => true,
            Some(value) if value.contains("keep-alive") => false,
            // HTTP/1.0 closes by default, HTTP/1.1 keeps the connection open.
            _ => self.version == "HTTP/1.0",
        }
    }
}

/// One client connection with the bytes read past the current request (pipelining).
pub struct HttpConnection<S> {
    pub stream: S,
    pending: Vec<u8>,
}

impl<S: TimedStream> HttpConnection<S> {
    pub fn new(stream: S) -> io::Result<HttpConnection<S>> {
        // Accepted sockets must block (with a timeout) even though the listener does not.
        stream.set_timeouts()?;
        Ok(HttpConnection {
            stream,
            pending: Vec::new(),
        })
    }

    /// Next request, or `None` when the peer closed, went idle, or the server is stopping.
    pub fn read_request(&mut self, stop: &AtomicBool) -> io::Result<Option<HttpRequest>> {
        let Some(head_end) = self.fill_until(stop, find_head_end)? else {
            return Ok(None);
        };
        let head: Vec<u8> = self.pending.drain(..head_end).collect();
        let request = parse_head(&head)?;
        let body_length = match request.header("content-length") {
            Some(value) => value
                .trim()
                .parse::<usize>()
                .map_err(|_| invalid("bad Content-Length"))?,
            None => 0,
        };
        if body_length > MAX_BODY_BYTES || request.header("transfer-encoding").is_some() {
            return Err(invalid("request bodies are not supported"));
        }
        if self
            .fill_until(stop, |pending| {
                (pending.len() >= body_length).then_some(body_length)
            })?
            .is_none()
        {
            return Ok(None);
        }
        self.pending.drain(..body_length);
        Ok(Some(request))
    }

    /// Reads until `complete` finds what it needs in the pending bytes; `None` on close/idle/stop.
    fn fill_until(
        &mut self,
        stop: &AtomicBool,
        complete: impl Fn(&[u8]) -> Option<usize>,
    ) -> io::Result<Option<usize>> {
        let idle_deadline = Instant::now() + IDLE_TIMEOUT;
        let mut chunk = [0u8; 8192];
        loop {
            if let Some(found) = complete(&self.pending) {
                return Ok(Some(found));
            }
            if stop.load(Ordering::SeqCst)
                || Instant::now() > idle_deadline
                || self.pending.len() > MAX_HEAD_BYTES + MAX_BODY_BYTES
            {
                return Ok(None);
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return Ok(None),
                Ok(count) => self.pending.extend_from_slice(&chunk[..count]),
                Err(error)
                    if matches!(
                        error.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(error) => return Err(error),
            }
        }
    }
}

/// Index just past the blank line ending a request head, if it has arrived.
pub fn find_head_end(bytes: &[u8]) -> Option<usize> {
    bytes
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .map(|position| position + 4)
}

pub fn parse_head(head: &[u8]) -> io::Result<HttpRequest> {
    let text = std::str::from_utf8(head).map_err(|_| invalid("request head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let request_line = lines.next().ok_or_else(|| invalid("empty request"))?;
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid("malformed request line"));
    };
    let headers = lines
        .filter(|line| !line.is_empty())
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_string(), value.trim().to_string()))
        .collect();
    Ok(HttpRequest {
        method: method.into(),
        target: target.into(),
        version: version.into(),
        headers,
    })
}

pub fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_string())
}

pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let hex_pair = bytes
            .get(index + 1..index + 3)
            .and_then(|pair| std::str::from_utf8(pair).ok());
        match (
            bytes[index],
            hex_pair.and_then(|pair| u8::from_str_radix(pair, 16).ok()),
        ) {
            (b'%', Some(value)) => {
                decoded.push(value);
                index += 3;
            }
            (b'+', _) => {
                decoded.push(b' ');
                index += 1;
            }
            (other, _) => {
                decoded.push(other);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}
