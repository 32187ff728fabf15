//! A raw HTTP/2 (h2c) peer, frame by frame, for what client libraries never do: answer PINGs
//! and nothing else, read the server's SETTINGS, open more streams than the server allows.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;

const ACK: u8 = 0x1;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

pub const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
pub const REFUSED_STREAM: u32 = 0x7;

#[derive(Debug)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The error code of a RST_STREAM or GOAWAY frame.
    pub fn error_code(&self) -> Option<u32> {
        let at = match self.kind {
            RST_STREAM => 0,
            GOAWAY => 4,
            _ => return None,
        };
        let code = self.payload.get(at..at + 4)?;
        Some(u32::from_be_bytes(code.try_into().unwrap()))
    }
}

/// What a peer that only answered PINGs saw before its connection ended.
#[derive(Debug, Default)]
pub struct Quiet {
    pub pings: usize,
    pub goaway: bool,
}

pub struct RawH2 {
    stream: TcpStream,
}

impl RawH2 {
    /// Connects and sends the preface and an empty SETTINGS frame.
    pub async fn connect(addr: SocketAddr) -> io::Result<RawH2> {
        let mut stream = TcpStream::connect(addr).await?;
        stream.write_all(PREFACE).await?;
        let mut raw = RawH2 { stream };
        raw.write_frame(SETTINGS, 0, 0, &[]).await?;
        Ok(raw)
    }

    pub async fn write_frame(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) -> io::Result<()> {
        let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
        let mut frame = Vec::with_capacity(9 + payload.len());
        frame.extend_from_slice(&len[1..]);
        frame.extend_from_slice(&[kind, flags]);
        frame.extend_from_slice(&stream.to_be_bytes());
        frame.extend_from_slice(payload);
        self.stream.write_all(&frame).await
    }

    /// The next frame; `None` once the server has closed the connection.
    pub async fn read_frame(&mut self) -> Option<Frame> {
        let mut head = [0u8; 9];
        self.stream.read_exact(&mut head).await.ok()?;
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let mut payload = vec![0; len];
        self.stream.read_exact(&mut payload).await.ok()?;
        Some(Frame {
            kind: head[3],
            flags: head[4],
            stream: u32::from_be_bytes(head[5..9].try_into().unwrap()) & 0x7fff_ffff,
            payload,
        })
    }

    /// Answers a SETTINGS or PING frame as the protocol requires; true if `frame` was one.
    pub async fn answer(&mut self, frame: &Frame) -> io::Result<bool> {
        match frame.kind {
            SETTINGS if frame.flags & ACK == 0 => self.write_frame(SETTINGS, ACK, 0, &[]).await?,
            PING if frame.flags & ACK == 0 => self.write_frame(PING, ACK, 0, &frame.payload).await?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Reads up to the server's SETTINGS (so the server is serving this connection),
    /// acknowledges them and returns them as (identifier, value) pairs.
    pub async fn settings(&mut self) -> io::Result<Vec<(u16, u32)>> {
        loop {
            let frame = self
                .read_frame()
                .await
                .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "closed before SETTINGS"))?;
            if frame.kind == SETTINGS && frame.flags & ACK == 0 {
                self.answer(&frame).await?;
                let pairs = frame
                    .payload
                    .chunks_exact(6)
                    .map(|c| {
                        (
                            u16::from_be_bytes([c[0], c[1]]),
                            u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
                        )
                    })
                    .collect();
                return Ok(pairs);
            }
        }
    }

    /// Does nothing but answer SETTINGS and PINGs until the server closes the connection.
    pub async fn answer_pings_until_closed(self) -> Quiet {
        self.quiet_until_closed(false).await
    }

    /// Likewise, but falls silent once told to go away, as a peer would that has hung.
    pub async fn ignore_goaway_until_closed(self) -> Quiet {
        self.quiet_until_closed(true).await
    }

    async fn quiet_until_closed(mut self, mute_at_goaway: bool) -> Quiet {
        let mut quiet = Quiet::default();
        while let Some(frame) = self.read_frame().await {
            quiet.pings += usize::from(frame.kind == PING && frame.flags & ACK == 0);
            quiet.goaway |= frame.kind == GOAWAY;
            if !(mute_at_goaway && quiet.goaway) && self.answer(&frame).await.is_err() {
                break;
            }
        }
        quiet
    }

    /// Opens stream `id` with a bodiless GET of `path` carrying `headers`.
    pub async fn get(&mut self, id: u32, path: &str, headers: &[(&str, &str)]) -> io::Result<()> {
        let mut block = Vec::new();
        let pseudo = [
            (":method", "GET"),
            (":scheme", "http"),
            (":authority", "callout"),
            (":path", path),
        ];
        for (name, value) in pseudo.iter().chain(headers) {
            // A literal field without indexing, with a literal name: no HPACK state to keep.
            block.push(0);
            hpack_string(&mut block, name);
            hpack_string(&mut block, value);
        }
        self.write_frame(HEADERS, END_STREAM | END_HEADERS, id, &block)
            .await
    }
}

/// An HPACK string literal, not Huffman-coded (RFC 7541, sections 5.1 and 5.2).
fn hpack_string(out: &mut Vec<u8>, s: &str) {
    let mut len = s.len();
    if len < 127 {
        out.push(len as u8);
    } else {
        out.push(127);
        len -= 127;
        while len >= 128 {
            out.push((len % 128) as u8 | 0x80);
            len /= 128;
        }
        out.push(len as u8);
    }
    out.extend_from_slice(s.as_bytes());
}
