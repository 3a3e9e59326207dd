//! The proxy's pieces as processes of their own, for measuring the proxy from
//! outside (open-file limits, RSS) with each process under its own limits:
//!
//! - `shakedown-proxy-harness link LISTEN UPSTREAM`: one `Link`;
//! - `shakedown-proxy-harness echo LISTEN`: an upstream that echoes every byte.
//!
//! Each prints the address it listens on, one line on stdout, and serves
//! until its stdin closes.

use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use shakedown_proxy::{Link, LinkConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const USAGE: &str = "usage: shakedown-proxy-harness (link LISTEN UPSTREAM | echo LISTEN), loopback ip:port each";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("shakedown-proxy-harness: {message}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("start the async runtime: {e}"))?;
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["link", listen, upstream] => {
            let config = LinkConfig::new("link", parse("LISTEN", listen)?, parse("UPSTREAM", upstream)?);
            let link = runtime.block_on(async { Link::start(config) }).map_err(|e| e.to_string())?;
            serve_until_stdin_closes(link.listen_addr())?;
            runtime.block_on(link.stop());
        }
        ["echo", listen] => {
            let addr = parse("LISTEN", listen)?;
            shakedown_proxy::raise_nofile_limit().map_err(|e| format!("raise the open-file limit: {e}"))?;
            let listener = runtime.block_on(TcpListener::bind(addr)).map_err(|e| format!("listen on {addr}: {e}"))?;
            let addr = listener.local_addr().map_err(|e| format!("read the listen address: {e}"))?;
            runtime.spawn(echo(listener));
            serve_until_stdin_closes(addr)?;
        }
        _ => return Err(USAGE.to_string()),
    }
    Ok(())
}

fn parse(what: &str, text: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = text.parse().map_err(|e| format!("read {what} {text:?}: {e}; {USAGE}"))?;
    if !addr.ip().is_loopback() {
        return Err(format!("{what} {addr} is not loopback; {USAGE}"));
    }
    Ok(addr)
}

/// Prints `addr`, then blocks this thread until the parent closes stdin (or
/// dies, which closes it too); the runtime's workers serve meanwhile.
fn serve_until_stdin_closes(addr: SocketAddr) -> Result<(), String> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{addr}").and_then(|()| stdout.flush()).map_err(|e| format!("write stdout: {e}"))?;
    let mut line = String::new();
    while std::io::stdin().lock().read_line(&mut line).map_err(|e| format!("read stdin: {e}"))? > 0 {
        line.clear();
    }
    Ok(())
}

/// Echoes every connection's bytes back until it closes.
async fn echo(listener: TcpListener) {
    loop {
        let mut conn = match listener.accept().await {
            Ok((conn, _)) => conn,
            Err(err) => {
                // Out of descriptors: wait for some to close rather than spin.
                eprintln!("shakedown-proxy-harness: accept: {err}");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            while let Ok(n @ 1..) = conn.read(&mut buf).await {
                if conn.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        });
    }
}
