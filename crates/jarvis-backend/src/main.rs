use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    process::ExitCode,
    time::Duration,
};

fn main() -> ExitCode {
    // The image's HEALTHCHECK and compose's healthcheck: no curl in a slim image needed.
    if std::env::args().nth(1).as_deref() == Some("--health-check") {
        return health_check();
    }
    // `.env` is optional; a malformed one is worth saying, not worth refusing to start.
    if let Err(e) = dotenvy::dotenv()
        && !e.not_found()
    {
        eprintln!("warning: ignoring .env: {e}");
    }
    let config = match jarvis_backend::Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    // Before the runtime starts its threads: taking the socket clears LISTEN_FDS and
    // LISTEN_PID from the environment.
    let inherited = match inherited_listener() {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(jarvis_backend::serve(config, inherited)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The listening socket a supervisor handed over (dev-local, the dev container's
/// entrypoint, systemd, `systemfd`): fd 3 when `LISTEN_FDS` is set (and `LISTEN_PID`, if
/// set, is this process). The socket outlives each backend process, so a connection made
/// during a restart waits in its queue for the next one instead of being refused.
fn inherited_listener() -> Result<Option<TcpListener>, String> {
    let mut fds = listenfd::ListenFd::from_env();
    if fds.len() == 0 {
        return Ok(None);
    }
    match fds.take_tcp_listener(0) {
        Ok(Some(listener)) => Ok(Some(listener)),
        Ok(None) => Err("LISTEN_FDS is set but fd 3 was already taken".into()),
        Err(e) => Err(format!("LISTEN_FDS is set, but fd 3 is not a listening TCP socket: {e}")),
    }
}

/// `GET /health` on this container's own port; exit 0 when it answers 200.
fn health_check() -> ExitCode {
    let port = std::env::var("PORT").ok().and_then(|p| p.parse::<u16>().ok()).unwrap_or(8000);
    let answer = || -> std::io::Result<String> {
        let mut stream = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(3)))?;
        stream.write_all(b"GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head)?;
        Ok(String::from_utf8_lossy(&head).into_owned())
    };
    match answer() {
        Ok(head) if head.starts_with("HTTP/1.") && head.ends_with(" 200") => ExitCode::SUCCESS,
        Ok(head) => {
            eprintln!("unhealthy: /health answered {head:?}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("unhealthy: GET http://127.0.0.1:{port}/health: {e}");
            ExitCode::FAILURE
        }
    }
}
