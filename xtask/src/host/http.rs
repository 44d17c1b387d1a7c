//! A plain HTTP/1.0 GET, for readiness checks: no client library needed.

use std::{
    io::{Read, Write},
    net::{TcpStream, ToSocketAddrs},
    time::Duration,
};

/// The status and body of `GET path`, or `None` when nothing answers. `host` may be a
/// name (`localhost`); each of its addresses is tried.
pub fn get(host: &str, port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = (host, port)
        .to_socket_addrs()
        .ok()?
        .find_map(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok())?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((status, body))
}

/// Whether an OpenAI-compatible server answers at `base` (`http://host:port/v1`): its
/// `GET <base>/models`. Only plain HTTP: a local LLM server has no TLS.
pub fn llm_answers(base: &str) -> bool {
    let Some(rest) = base.strip_prefix("http://") else { return false };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => (host, port.parse().ok()),
        None => (authority, Some(80)),
    };
    let models = format!("/{}/models", path.trim_end_matches('/')).replace("//", "/");
    port.is_some_and(|port| get(host, port, &models).is_some())
}
