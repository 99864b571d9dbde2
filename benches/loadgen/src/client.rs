//! A minimal HTTP/1.1 client over one keep-alive connection.
//!
//! Why not a client library: the load generator must cost the servers nothing it does
//! not have to, and be easy to account for. Each request is one `write` of the head,
//! the body straight from the caller's buffers, and reads into one reusable buffer;
//! response bodies are read and dropped unless the caller asks to keep them.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// What went wrong with one request.
#[derive(Debug)]
pub enum ClientError {
    Io(io::Error),
    /// The server sent something that is not HTTP/1.1 as this client reads it.
    Protocol(String),
    /// A request that the scenario expected to succeed did not.
    Status {
        expected: u16,
        got: u16,
        what: String,
    },
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Io(e) => write!(f, "i/o: {e}"),
            ClientError::Protocol(m) => write!(f, "bad response: {m}"),
            ClientError::Status {
                expected,
                got,
                what,
            } => write!(f, "{what}: expected status {expected}, got {got}"),
        }
    }
}

impl From<io::Error> for ClientError {
    fn from(e: io::Error) -> Self {
        ClientError::Io(e)
    }
}

pub type Result<T> = std::result::Result<T, ClientError>;

/// A response: status, headers, and the body's length (its bytes only when kept).
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body_len: u64,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Fails unless the status is `expected`; `what` names the request in the error.
    pub fn expect(self, expected: u16, what: &str) -> Result<Response> {
        if self.status == expected {
            Ok(self)
        } else {
            Err(ClientError::Status {
                expected,
                got: self.status,
                what: format!("{what} ({})", String::from_utf8_lossy(&self.body)),
            })
        }
    }
}

/// A request about to be sent.
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    /// Sent one after another as the body; their total is the Content-Length.
    pub body: &'a [&'a [u8]],
    /// Keep the response body (JSON, small blobs to check); otherwise it is discarded.
    pub keep_body: bool,
}

const READ_BUFFER: usize = 256 * 1024;
/// Bodies at least this long that the caller does not keep are spliced away.
const SPLICE_AT_LEAST: u64 = 1 << 20;
const PIPE_BYTES: usize = 1 << 20;

/// A pipe and /dev/null: where discarded body bytes go without entering user space.
struct Drain {
    read: libc::c_int,
    write: libc::c_int,
    null: libc::c_int,
}

impl Drain {
    fn new() -> io::Result<Drain> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: fds has room for the two descriptors pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the path is a NUL-terminated literal.
        let null = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
        let drain = Drain {
            read: fds[0],
            write: fds[1],
            null,
        };
        if null < 0 {
            return Err(io::Error::last_os_error());
        }
        // A larger pipe moves more per call; failing that, the default one still works.
        // SAFETY: fcntl on a descriptor we own.
        unsafe { libc::fcntl(drain.write, libc::F_SETPIPE_SZ, PIPE_BYTES as libc::c_int) };
        Ok(drain)
    }
}

impl Drop for Drain {
    fn drop(&mut self) {
        for fd in [self.read, self.write, self.null] {
            if fd >= 0 {
                // SAFETY: each descriptor is owned by this Drain and closed once.
                unsafe { libc::close(fd) };
            }
        }
    }
}

/// One connection, reopened when the server closes it.
pub struct Conn {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    drain: Option<Drain>,
}

impl Conn {
    pub fn new(addr: SocketAddr) -> Conn {
        Conn {
            addr,
            stream: None,
            buf: vec![0; READ_BUFFER],
            start: 0,
            end: 0,
            drain: None,
        }
    }

    fn connect(&mut self) -> Result<&mut TcpStream> {
        if self.stream.is_none() {
            let stream = TcpStream::connect_timeout(&self.addr, Duration::from_secs(10))?;
            stream.set_nodelay(true)?;
            stream.set_read_timeout(Some(Duration::from_secs(300)))?;
            self.stream = Some(stream);
            self.start = 0;
            self.end = 0;
        }
        match self.stream.as_mut() {
            Some(s) => Ok(s),
            None => Err(ClientError::Protocol("no connection".into())),
        }
    }

    /// Sends `req` and reads the whole response. A request on a reused connection that
    /// the server had already closed is sent once more on a new one.
    pub fn send(&mut self, req: &Request) -> Result<Response> {
        let reused = self.stream.is_some();
        match self.try_send(req) {
            Err(ClientError::Io(_)) if reused => {
                self.stream = None;
                self.try_send(req)
            }
            other => other,
        }
    }

    fn try_send(&mut self, req: &Request) -> Result<Response> {
        let result = self.exchange(req);
        if result.is_err() {
            self.stream = None;
        }
        result
    }

    fn exchange(&mut self, req: &Request) -> Result<Response> {
        let length: usize = req.body.iter().map(|part| part.len()).sum();
        let mut head = format!(
            "{} {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: lain-loadgen\r\n",
            req.method, req.path, self.addr
        );
        for (name, value) in req.headers {
            head.push_str(name);
            head.push_str(": ");
            head.push_str(value);
            head.push_str("\r\n");
        }
        if length > 0 || matches!(req.method, "PUT" | "POST" | "PATCH") {
            head.push_str(&format!("Content-Length: {length}\r\n"));
        }
        head.push_str("\r\n");
        let stream = self.connect()?;
        if length > 0 && length < 64 * 1024 {
            // Small requests in one segment: one write, one packet.
            let mut whole = head.into_bytes();
            for part in req.body {
                whole.extend_from_slice(part);
            }
            stream.write_all(&whole)?;
        } else {
            stream.write_all(head.as_bytes())?;
            for part in req.body {
                stream.write_all(part)?;
            }
        }
        self.read_response(req.method == "HEAD", req.keep_body)
    }

    fn fill(&mut self) -> Result<()> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if self.end == self.buf.len() {
                return Err(ClientError::Protocol("response head too large".into()));
            }
        }
        let Some(stream) = self.stream.as_mut() else {
            return Err(ClientError::Protocol("no connection".into()));
        };
        let n = stream.read(&mut self.buf[self.end..])?;
        if n == 0 {
            return Err(ClientError::Io(io::ErrorKind::UnexpectedEof.into()));
        }
        self.end += n;
        Ok(())
    }

    /// One line (without CRLF) from the buffer.
    fn line(&mut self) -> Result<String> {
        loop {
            if let Some(pos) = self.buf[self.start..self.end]
                .windows(2)
                .position(|w| w == b"\r\n")
            {
                let line =
                    String::from_utf8_lossy(&self.buf[self.start..self.start + pos]).into_owned();
                self.start += pos + 2;
                return Ok(line);
            }
            self.fill()?;
        }
    }

    /// Reads `n` body bytes, appending them to `keep` when given.
    fn body_bytes(&mut self, mut n: u64, mut keep: Option<&mut Vec<u8>>) -> Result<()> {
        while n > 0 {
            if self.start == self.end && keep.is_none() && n >= SPLICE_AT_LEAST {
                // A large body nobody looks at: moved from the socket to /dev/null
                // inside the kernel, so pulls measure the server, not this client's
                // copy of every byte.
                return self.discard(n);
            }
            if self.start == self.end {
                // Large bodies: read straight into the buffer, no compaction.
                self.start = 0;
                self.end = 0;
                self.fill()?;
            }
            let take = (self.end - self.start).min(usize::try_from(n).unwrap_or(usize::MAX));
            if let Some(out) = keep.as_deref_mut() {
                out.extend_from_slice(&self.buf[self.start..self.start + take]);
            }
            self.start += take;
            n -= take as u64;
        }
        Ok(())
    }

    /// Drops the next `n` bytes of the socket with splice(2): socket to a pipe, pipe
    /// to /dev/null.
    fn discard(&mut self, mut n: u64) -> Result<()> {
        use std::os::fd::AsRawFd;
        let Some(stream) = self.stream.as_ref() else {
            return Err(ClientError::Protocol("no connection".into()));
        };
        let sock = stream.as_raw_fd();
        if self.drain.is_none() {
            self.drain = Some(Drain::new()?);
        }
        let Some(drain) = self.drain.as_ref() else {
            return Err(ClientError::Protocol("no pipe".into()));
        };
        while n > 0 {
            let want = usize::try_from(n).unwrap_or(usize::MAX).min(PIPE_BYTES);
            // SAFETY: both descriptors are open for the duration of the call; null
            // offsets mean "use and advance the file position" (none for a socket or
            // pipe).
            let moved = unsafe {
                libc::splice(
                    sock,
                    std::ptr::null_mut(),
                    drain.write,
                    std::ptr::null_mut(),
                    want,
                    libc::SPLICE_F_MOVE,
                )
            };
            if moved < 0 {
                return Err(io::Error::last_os_error().into());
            }
            if moved == 0 {
                return Err(ClientError::Io(io::ErrorKind::UnexpectedEof.into()));
            }
            let mut left = moved as usize;
            while left > 0 {
                // SAFETY: as above.
                let dropped = unsafe {
                    libc::splice(
                        drain.read,
                        std::ptr::null_mut(),
                        drain.null,
                        std::ptr::null_mut(),
                        left,
                        libc::SPLICE_F_MOVE,
                    )
                };
                if dropped <= 0 {
                    return Err(io::Error::last_os_error().into());
                }
                left -= dropped as usize;
            }
            n -= moved as u64;
        }
        Ok(())
    }

    fn read_response(&mut self, head_only: bool, keep_body: bool) -> Result<Response> {
        let status_line = self.line()?;
        let mut parts = status_line.splitn(3, ' ');
        let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
            return Err(ClientError::Protocol(status_line));
        };
        if !version.starts_with("HTTP/1.") {
            return Err(ClientError::Protocol(status_line));
        }
        let status: u16 = code
            .parse()
            .map_err(|_| ClientError::Protocol(status_line.clone()))?;
        let mut headers = Vec::new();
        loop {
            let line = self.line()?;
            if line.is_empty() {
                break;
            }
            let Some((name, value)) = line.split_once(':') else {
                return Err(ClientError::Protocol(line));
            };
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
        let find = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let close = find("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let mut body = Vec::new();
        let mut body_len = 0;
        let no_body = head_only || status == 204 || status == 304 || (100..200).contains(&status);
        if !no_body {
            let keep = keep_body.then_some(&mut body);
            if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
                body_len = self.chunked(keep)?;
            } else if let Some(length) = find("content-length") {
                body_len = length
                    .parse()
                    .map_err(|_| ClientError::Protocol(format!("content-length {length}")))?;
                self.body_bytes(body_len, keep)?;
            } else {
                return Err(ClientError::Protocol(
                    "a body without length or chunking".into(),
                ));
            }
        }
        if close {
            self.stream = None;
        }
        Ok(Response {
            status,
            headers,
            body_len,
            body,
        })
    }

    fn chunked(&mut self, mut keep: Option<&mut Vec<u8>>) -> Result<u64> {
        let mut total = 0;
        loop {
            let size_line = self.line()?;
            let hex = size_line.split(';').next().unwrap_or("").trim();
            let size = u64::from_str_radix(hex, 16)
                .map_err(|_| ClientError::Protocol(format!("chunk size {size_line}")))?;
            if size == 0 {
                // Trailers, then the blank line.
                while !self.line()?.is_empty() {}
                return Ok(total);
            }
            self.body_bytes(size, keep.as_deref_mut())?;
            total += size;
            if !self.line()?.is_empty() {
                return Err(ClientError::Protocol("chunk without CRLF".into()));
            }
        }
    }
}
