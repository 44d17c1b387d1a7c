//! HTTP, two ways. A plain HTTP/1.0 GET for what answers on this machine (readiness, the
//! local LLM): no client library, no proxy. And the one configuration of the client for
//! everything else (ureq): the voice downloads, the registry, doctor's probes.

use std::{
    io::{Read, Write},
    net::{TcpStream, ToSocketAddrs},
    time::Duration,
};

/// The status and body of `GET path`, or `None` when nothing answers. `host` may be a
/// name (`localhost`); each of its addresses is tried.
pub fn get(host: &str, port: u16, path: &str) -> Option<(u16, String)> {
    get_or_why(host, port, path).ok()
}

/// `get`, or why nothing answered (the connection's error).
fn get_or_why(host: &str, port: u16, path: &str) -> Result<(u16, String), String> {
    let mut last = format!("{host} has no address");
    let mut stream = None;
    for addr in (host, port).to_socket_addrs().map_err(|e| e.to_string())? {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = e.to_string(),
        }
    }
    let mut stream = stream.ok_or(last)?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\n\r\n").map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream.read_to_string(&mut response).map_err(|e| e.to_string())?;
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or("not an HTTP answer")?;
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}

/// Whether an OpenAI-compatible server answers at `base`: `llm_models` succeeds.
pub fn llm_answers(base: &str) -> bool {
    llm_models(base).is_ok()
}

/// The one LLM probe (dev-fast, dev-local and doctor ask the same): `GET <base>/models` of
/// an OpenAI-compatible server at `base` (`http://host:port/v1`), answering 200, and the
/// model ids it lists; or why not. Only plain HTTP: a local LLM server has no TLS.
pub fn llm_models(base: &str) -> Result<Vec<String>, String> {
    let rest =
        base.strip_prefix("http://").ok_or("not an http:// address (a local LLM server has no TLS)")?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => (host, port.parse().map_err(|_| format!("{port:?} is not a port"))?),
        None => (authority, 80),
    };
    let models = format!("/{}/models", path.trim_end_matches('/')).replace("//", "/");
    match get_or_why(host, port, &models) {
        Err(why) => Err(format!("nothing answers ({why})")),
        Ok((200, body)) => {
            let doc: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            Ok(doc["data"]
                .as_array()
                .map(|d| d.iter().filter_map(|m| m["id"].as_str().map(String::from)).collect())
                .unwrap_or_default())
        }
        Ok((status, _)) => Err(format!("GET {base}/models answered HTTP {status}")),
    }
}

/// How long a client waits: for the connection (and name), for the response to begin, and
/// in all (`None`: no limit, for a long download that is still progressing).
#[derive(Clone, Copy, Debug, Default)]
pub struct Timeouts {
    pub connect: Option<Duration>,
    pub response: Option<Duration>,
    pub total: Option<Duration>,
}

/// The HTTP client (ureq): statuses as values, our user agent, and over TLS the system's
/// CA store (so a proxy's CA that the host trusts works); `tls: false` is for loopback
/// only, and never goes through a proxy.
pub fn client(timeouts: Timeouts, tls: bool) -> ureq::Agent {
    let mut config = ureq::Agent::config_builder()
        .timeout_resolve(timeouts.connect)
        .timeout_connect(timeouts.connect)
        .timeout_recv_response(timeouts.response)
        .timeout_global(timeouts.total)
        .http_status_as_error(false)
        .user_agent(concat!("jarvis-xtask/", env!("CARGO_PKG_VERSION")));
    config = if tls {
        config.tls_config(
            ureq::tls::TlsConfig::builder().root_certs(ureq::tls::RootCerts::PlatformVerifier).build(),
        )
    } else {
        config.proxy(None)
    };
    config.build().into()
}
