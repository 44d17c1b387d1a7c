use std::{
    io::{Read, Write},
    net::TcpStream,
    process::ExitCode,
    time::Duration,
};

#[tokio::main]
async fn main() -> ExitCode {
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
    match jarvis_backend::serve(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
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
