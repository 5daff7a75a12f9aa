//! The enter benchmark's load generator: keep-alive HTTP/1.1 connections that send
//! pre-built requests and read `Content-Length`-framed responses, nothing else.
//!
//! It sits on the same two cores as queue-api and Redis, so whatever the client
//! spends is taken from the server: a general client (reqwest: pool, redirects,
//! header maps) cost about as much CPU per request as queue-api itself and capped the
//! figure. This is to HTTP what `redis-benchmark` is to Redis: the least a client
//! can do, so the figure measures the server.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Where requests go: `host:port` and the request path.
#[derive(Debug, Clone)]
pub(super) struct Target {
    /// `127.0.0.1:8080`.
    pub(super) authority: String,
    /// `/v1/events/e/queue`.
    pub(super) path: String,
}

impl Target {
    /// Splits `http://host:port/path`; only plain `http` on an explicit port.
    pub(super) fn parse(url: &str) -> Result<Self> {
        let rest = url
            .strip_prefix("http://")
            .with_context(|| format!("{url}: the load generator speaks plain http only"))?;
        let (authority, path) = match rest.find('/') {
            Some(slash) => (&rest[..slash], &rest[slash..]),
            None => (rest, "/"),
        };
        if !authority.contains(':') {
            bail!("{url}: name the port");
        }
        Ok(Self {
            authority: authority.to_owned(),
            path: path.to_owned(),
        })
    }

    /// `POST <path>` with a bearer token and an empty body.
    pub(super) fn post_with_token(&self, token: &str) -> Vec<u8> {
        format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\nContent-Length: 0\r\n\r\n",
            self.path, self.authority
        )
        .into_bytes()
    }
}

/// A response's status and how long it took from the first byte sent.
#[derive(Debug, Clone, Copy)]
pub(super) struct Answer {
    pub(super) status: u16,
    pub(super) latency: Duration,
}

/// One keep-alive connection.
pub(super) struct Connection {
    target: Target,
    stream: Option<TcpStream>,
    buffer: Vec<u8>,
}

impl Connection {
    pub(super) fn new(target: Target) -> Self {
        Self {
            target,
            stream: None,
            buffer: Vec::with_capacity(4096),
        }
    }

    /// A connection already open, so that timed requests do not include the TCP
    /// handshake (256 clients connecting at once overflow a default listen backlog,
    /// and a dropped SYN is retried after a whole second).
    pub(super) async fn open(target: Target) -> Result<Self> {
        let mut connection = Self::new(target);
        connection.connect().await?;
        Ok(connection)
    }

    async fn connect(&mut self) -> Result<()> {
        let stream = TcpStream::connect(&self.target.authority)
            .await
            .with_context(|| format!("connecting to {}", self.target.authority))?;
        stream.set_nodelay(true)?;
        self.stream = Some(stream);
        self.buffer.clear();
        Ok(())
    }

    /// Sends `request` and reads its response; a broken or closed connection is
    /// reopened for the next request.
    pub(super) async fn send(&mut self, request: &[u8]) -> Result<Answer> {
        let started = Instant::now();
        let outcome = self.exchange(request).await;
        match outcome {
            Ok((status, keep_alive)) => {
                if !keep_alive {
                    self.stream = None;
                }
                Ok(Answer {
                    status,
                    latency: started.elapsed(),
                })
            }
            Err(error) => {
                self.stream = None;
                Err(error)
            }
        }
    }

    async fn exchange(&mut self, request: &[u8]) -> Result<(u16, bool)> {
        if self.stream.is_none() {
            self.connect().await?;
        }
        let stream = self.stream.as_mut().context("no connection")?;
        stream.write_all(request).await?;
        let head_end = loop {
            if let Some(end) = find(&self.buffer, b"\r\n\r\n") {
                break end + 4;
            }
            read_more(stream, &mut self.buffer).await?;
        };
        let head = Head::parse(&self.buffer[..head_end])?;
        while self.buffer.len() < head_end + head.content_length {
            read_more(stream, &mut self.buffer).await?;
        }
        self.buffer.drain(..head_end + head.content_length);
        Ok((head.status, head.keep_alive))
    }
}

async fn read_more(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Result<()> {
    let mut chunk = [0u8; 4096];
    let read = stream.read(&mut chunk).await?;
    if read == 0 {
        bail!("the server closed the connection");
    }
    buffer.extend_from_slice(&chunk[..read]);
    Ok(())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// What the load generator reads of a response head.
#[derive(Debug, PartialEq)]
struct Head {
    status: u16,
    content_length: usize,
    keep_alive: bool,
}

impl Head {
    fn parse(head: &[u8]) -> Result<Self> {
        let text = std::str::from_utf8(head).context("a response head that is not UTF-8")?;
        let mut lines = text.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status = status_line
            .strip_prefix("HTTP/1.1 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok())
            .with_context(|| format!("not an HTTP/1.1 status line: {status_line:?}"))?;
        let mut content_length = None;
        let mut keep_alive = true;
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                content_length = Some(value.parse().context("a bad Content-Length")?);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                bail!("a chunked response; the load generator reads Content-Length only");
            } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close")
            {
                keep_alive = false;
            }
        }
        Ok(Self {
            status,
            content_length: content_length.unwrap_or(0),
            keep_alive,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_head() {
        let head =
            b"HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: 17\r\n\r\n";
        assert_eq!(
            Head::parse(head).expect("a head"),
            Head {
                status: 201,
                content_length: 17,
                keep_alive: true
            }
        );
        let closing =
            b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 2\r\n\r\n";
        let parsed = Head::parse(closing).expect("a head");
        assert_eq!((parsed.status, parsed.keep_alive), (503, false));
        assert!(Head::parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").is_err());
        assert!(Head::parse(b"SSH-2.0\r\n\r\n").is_err());
    }

    #[test]
    fn splits_a_url() {
        let target = Target::parse("http://127.0.0.1:8080/v1/events/e/queue").expect("a url");
        assert_eq!(target.authority, "127.0.0.1:8080");
        assert_eq!(target.path, "/v1/events/e/queue");
        assert!(Target::parse("https://127.0.0.1:1/").is_err());
        assert!(Target::parse("http://localhost/").is_err());
        let request = String::from_utf8(target.post_with_token("t")).expect("text");
        assert!(
            request.starts_with("POST /v1/events/e/queue HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n")
        );
        assert!(request.ends_with("Authorization: Bearer t\r\nContent-Length: 0\r\n\r\n"));
    }

    /// Against a real server on a loopback port: two keep-alive exchanges, one of
    /// them split over several writes, then a close.
    #[tokio::test]
    async fn talks_to_a_server() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let port = listener.local_addr().expect("address").port();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("a client");
            let mut seen = Vec::new();
            for answer in [
                &b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nok"[..],
                &b"HTTP/1.1 429 Too Many Requests\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"[..],
            ] {
                let mut request = Vec::new();
                while find(&request, b"\r\n\r\n").is_none() {
                    let mut chunk = [0u8; 1024];
                    let read = socket.read(&mut chunk).await.expect("read");
                    request.extend_from_slice(&chunk[..read]);
                }
                seen.push(String::from_utf8(request).expect("text"));
                let (first, rest) = answer.split_at(10);
                socket.write_all(first).await.expect("write");
                socket.flush().await.expect("flush");
                tokio::time::sleep(Duration::from_millis(5)).await;
                socket.write_all(rest).await.expect("write");
            }
            seen
        });
        let target = Target::parse(&format!("http://127.0.0.1:{port}/q")).expect("url");
        let mut connection = Connection::open(target.clone()).await.expect("connected");
        let first = connection
            .send(&target.post_with_token("a"))
            .await
            .expect("first");
        assert_eq!(first.status, 201);
        let second = connection
            .send(&target.post_with_token("b"))
            .await
            .expect("second");
        assert_eq!(second.status, 429);
        assert!(connection.stream.is_none(), "closed as the server said");
        let seen = server.await.expect("server");
        assert!(seen[0].contains("Bearer a") && seen[1].contains("Bearer b"));
    }
}
