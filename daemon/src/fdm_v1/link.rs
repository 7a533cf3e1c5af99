//! The byte link to an FDM v1 box and one request/response exchange on it (reference §1.1,
//! §1.2): a TCP connection (ser2net, a virtual COM port) or a serial device set to 19200 8N1
//! raw. Blocking, with bounded waits: it runs on a blocking thread, one exchange at a time.

use super::codec::{ACK, ETX, MAX_RESPONSE, NAK, STX, frame, lrc};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use thiserror::Error;

/// Where the box is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `host:port` (ser2net in raw mode).
    Tcp(String),
    /// A serial device, e.g. `/dev/ttyUSB0`.
    Serial(PathBuf),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Tcp(a) => write!(f, "tcp {a}"),
            Target::Serial(p) => write!(f, "serial {}", p.display()),
        }
    }
}

/// Why an exchange got no response.
#[derive(Debug, Error)]
pub enum LinkError {
    /// The link could not be opened or broke.
    #[error("the FDM v1 link ({target}) failed: {message}")]
    Io {
        /// Where.
        target: String,
        /// What the system said.
        message: String,
    },
    /// No ACK (nor NAK) to the request frame in time: the box did not take the request.
    #[error("the FDM v1 box did not acknowledge the request within {0} ms")]
    NoAck(u128),
    /// The box answered NAK to every send of the frame.
    #[error("the FDM v1 box refused the frame {0} times (NAK)")]
    Naks(u32),
    /// The box took the request (ACK) but no good response came in time.
    #[error("the FDM v1 box acknowledged the request but sent no readable response within {0} ms")]
    NoResponse(u128),
}

/// The open byte stream.
enum Stream {
    Tcp(TcpStream),
    Serial(std::fs::File),
}

/// A link that opens itself when needed and closes itself after a failure.
pub struct Link {
    target: Target,
    timeout: Duration,
    stream: Option<Stream>,
    /// Whether the box acknowledged the last request frame.
    acked: bool,
}

/// How many times a frame is sent again after a NAK, and a response asked again with NAK.
const NAK_LIMIT: u32 = 3;

impl Link {
    /// A link to `target`; `timeout` bounds every wait for a byte (reference: 3 s).
    pub fn new(target: Target, timeout: Duration) -> Link {
        Link {
            target,
            timeout,
            stream: None,
            acked: false,
        }
    }

    /// Where the box is.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Whether the box acknowledged the request frame of the last exchange.
    pub fn acked(&self) -> bool {
        self.acked
    }

    fn io(&self, e: impl std::fmt::Display) -> LinkError {
        LinkError::Io {
            target: self.target.to_string(),
            message: e.to_string(),
        }
    }

    fn open(&mut self) -> Result<(), LinkError> {
        if self.stream.is_some() {
            return Ok(());
        }
        let stream = match &self.target {
            Target::Tcp(address) => {
                let addr = address
                    .to_socket_addrs()
                    .map_err(|e| self.io(e))?
                    .next()
                    .ok_or_else(|| self.io("the address resolves to nothing"))?;
                let s = TcpStream::connect_timeout(&addr, self.timeout).map_err(|e| self.io(e))?;
                s.set_nodelay(true).map_err(|e| self.io(e))?;
                s.set_read_timeout(Some(Duration::from_millis(100)))
                    .map_err(|e| self.io(e))?;
                s.set_write_timeout(Some(self.timeout))
                    .map_err(|e| self.io(e))?;
                Stream::Tcp(s)
            }
            Target::Serial(path) => Stream::Serial(
                crate::plugins::transport::open_serial(path, 19200).map_err(|e| self.io(e))?,
            ),
        };
        self.stream = Some(stream);
        Ok(())
    }

    /// Closes the link (it is opened again by the next exchange).
    pub fn close(&mut self) {
        self.stream = None;
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), LinkError> {
        let r = match &mut self.stream {
            Some(Stream::Tcp(s)) => s.write_all(bytes).and_then(|()| s.flush()),
            Some(Stream::Serial(f)) => f.write_all(bytes).and_then(|()| f.flush()),
            None => return Err(self.io("not open")),
        };
        r.map_err(|e| self.io(e))
    }

    /// One byte, or `None` when nothing came before `deadline`.
    fn byte(&mut self, deadline: Instant) -> Result<Option<u8>, LinkError> {
        let mut b = [0u8; 1];
        while Instant::now() < deadline {
            let r = match &mut self.stream {
                Some(Stream::Tcp(s)) => s.read(&mut b),
                Some(Stream::Serial(f)) => f.read(&mut b),
                None => return Err(self.io("not open")),
            };
            match r {
                Ok(1) => return Ok(Some(b[0])),
                // A closed TCP connection reads 0 at once: the box (or ser2net) went away.
                Ok(_) if matches!(self.stream, Some(Stream::Tcp(_))) => {
                    return Err(self.io("connection closed"));
                }
                Ok(_) => {} // serial: VTIME elapsed with no byte
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(self.io(e)),
            }
        }
        Ok(None)
    }

    /// Sends `message` and answers the box's response message (checked, acknowledged). A
    /// failure closes the link, so the next exchange starts on a fresh connection.
    pub fn exchange(&mut self, message: &[u8]) -> Result<Vec<u8>, LinkError> {
        self.acked = false;
        let r = self.open().and_then(|()| self.exchange_open(message));
        if r.is_err() {
            self.close();
        }
        r
    }

    fn exchange_open(&mut self, message: &[u8]) -> Result<Vec<u8>, LinkError> {
        let request = frame(message);
        // 1. The frame, until the box answers ACK (NAK: send it again).
        let mut naks = 0;
        loop {
            self.write(&request)?;
            let deadline = Instant::now() + self.timeout;
            let answer = loop {
                match self.byte(deadline)? {
                    None => break None,
                    Some(b @ (ACK | NAK)) => break Some(b),
                    Some(_) => {} // a late response to an earlier request, or noise
                }
            };
            match answer {
                Some(ACK) => break,
                Some(_) => {
                    naks += 1;
                    if naks >= NAK_LIMIT {
                        return Err(LinkError::Naks(naks));
                    }
                }
                None => return Err(LinkError::NoAck(self.timeout.as_millis())),
            }
        }
        self.acked = true;
        // 2. The response frame: STX … ETX LRC, for this request's identifier and sequence.
        let mut bad = 0;
        loop {
            let deadline = Instant::now() + self.timeout;
            let millis = self.timeout.as_millis();
            let no_response = || LinkError::NoResponse(millis);
            loop {
                match self.byte(deadline)? {
                    None => return Err(no_response()),
                    Some(STX) => break,
                    Some(_) => {}
                }
            }
            let mut msg = Vec::new();
            let complete = loop {
                match self.byte(deadline)? {
                    None => return Err(no_response()),
                    Some(ETX) => break true,
                    Some(STX) => msg.clear(),
                    Some(b) if msg.len() < MAX_RESPONSE => msg.push(b),
                    Some(_) => break false,
                }
            };
            let check = match self.byte(deadline)? {
                None => return Err(no_response()),
                Some(c) => c,
            };
            if complete && check == lrc(&msg) {
                if msg.get(..3) == message.get(..3) {
                    self.write(&[ACK])?;
                    return Ok(msg);
                }
                // Another request's response (sent late): acknowledge it and wait on (a
                // bounded number of times, like bad frames).
                self.write(&[ACK])?;
                bad += 1;
                if bad > NAK_LIMIT {
                    return Err(no_response());
                }
                continue;
            }
            bad += 1;
            if bad > NAK_LIMIT {
                return Err(no_response());
            }
            self.write(&[NAK])?;
        }
    }
}
