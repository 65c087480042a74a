//! A small blocking HTTP/1.1 client for loopback use (the conformance runner drives the
//! emulator from synchronous code; one request per connection, JSON in and out).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use serde_json::Value;

/// An HTTP failure (connection, or a response that is not HTTP).
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("malformed response: {0}")]
    Malformed(String),
    #[error("bad base URL `{0}` (want http://host:port)")]
    BaseUrl(String),
}

/// A response.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub status: u16,
    /// The body as JSON (`Null` when empty, a string when not JSON).
    pub body: Value,
}

/// A client for one `http://host:port`.
#[derive(Debug, Clone)]
pub struct Client {
    addr: SocketAddr,
    host: String,
    timeout: Duration,
}

/// Percent-encodes what may not appear in a request target (spaces, quotes, non-ASCII);
/// existing `%XX` escapes, `/`, `?`, `&`, `=` and brackets are kept.
pub fn encode_target(target: &str) -> String {
    let mut out = String::new();
    for b in target.bytes() {
        let keep = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'/' | b'?'
                    | b'&'
                    | b'='
                    | b'%'
                    | b'-'
                    | b'_'
                    | b'.'
                    | b'~'
                    | b'['
                    | b']'
                    | b','
                    | b':'
                    | b'@'
                    | b'!'
                    | b'$'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b';'
            );
        if keep {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Client {
    /// `base` is `http://host:port`.
    pub fn new(base: &str) -> Result<Self, HttpError> {
        let hostport = base
            .strip_prefix("http://")
            .ok_or_else(|| HttpError::BaseUrl(base.to_owned()))?
            .trim_end_matches('/');
        let addr = hostport
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| HttpError::BaseUrl(base.to_owned()))?;
        Ok(Self {
            addr,
            host: hostport.to_owned(),
            timeout: Duration::from_secs(60),
        })
    }

    /// Sends one request; `target` is the path and query.
    pub fn request(
        &self,
        method: &str,
        target: &str,
        bearer: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Response, HttpError> {
        let mut stream = TcpStream::connect_timeout(&self.addr, self.timeout)?;
        stream.set_read_timeout(Some(self.timeout))?;
        stream.set_write_timeout(Some(self.timeout))?;
        let payload = body.map(Value::to_string).unwrap_or_default();
        let mut head = format!(
            "{method} {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAccept: application/json\r\n",
            encode_target(target),
            self.host
        );
        if let Some(t) = bearer {
            head.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        if body.is_some() {
            head.push_str("Content-Type: application/json\r\n");
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", payload.len()));
        stream.write_all(head.as_bytes())?;
        stream.write_all(payload.as_bytes())?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw)?;
        parse_response(&raw)
    }
}

fn parse_response(raw: &[u8]) -> Result<Response, HttpError> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| HttpError::Malformed("no header end".into()))?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| HttpError::Malformed(status_line.to_owned()))?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let mut body = raw[end + 4..].to_vec();
    if chunked {
        body = dechunk(&body)?;
    }
    let text = String::from_utf8_lossy(&body);
    let value = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.into_owned()))
    };
    Ok(Response {
        status,
        body: value,
    })
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, HttpError> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| HttpError::Malformed("chunk size".into()))?;
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| HttpError::Malformed(format!("chunk size `{size_text}`")))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 {
            return Err(HttpError::Malformed("short chunk".into()));
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_keep_query_syntax_and_escape_the_rest() {
        assert_eq!(
            encode_target("/V1/x?skus%5B0%5D=A B&q[0]=\"é\""),
            "/V1/x?skus%5B0%5D=A%20B&q[0]=%22%C3%A9%22"
        );
    }

    #[test]
    fn responses_parse_plain_and_chunked() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]");
        assert_eq!(
            r.ok(),
            Some(Response {
                status: 200,
                body: serde_json::json!([])
            })
        );
        let r = parse_response(
            b"HTTP/1.1 400 Bad\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n",
        );
        assert_eq!(
            r.ok(),
            Some(Response {
                status: 400,
                body: serde_json::json!({"a": 1})
            })
        );
    }
}
