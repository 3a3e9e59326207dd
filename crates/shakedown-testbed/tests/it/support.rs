//! The harness every service's tests share: a runtime with a deadline, an in-process server, raw HTTP.

use std::fmt::Display;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use shakedown_testbed::Logger;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const TEST_TIMEOUT: Duration = Duration::from_secs(30);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs one test body on its own runtime, failing it if it takes too long.
/// Dropping the runtime afterwards ends every task the test left behind.
pub fn run(body: impl Future<Output = ()>) {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("build runtime");
    runtime.block_on(async {
        tokio::time::timeout(TEST_TIMEOUT, body).await.expect("test timed out");
    });
}

/// The future a service's `serve` stops on.
pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A server running in-process; stop it gracefully or kill it.
pub struct Server {
    pub addr: SocketAddr,
    pub log: Logger,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), String>>,
}

/// Starts a service in-process: `serve` gets a listener on 127.0.0.1:0, an
/// in-memory logger for its config and the shutdown future. Waits for `listening`.
pub async fn start<S, F, E>(serve: S) -> Server
where
    S: FnOnce(TcpListener, Logger, Shutdown) -> F,
    F: Future<Output = Result<(), E>> + Send + 'static,
    E: Display,
{
    let log = Logger::memory();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let (stop, stopped) = oneshot::channel::<()>();
    let shutdown: Shutdown = Box::pin(async move {
        let _ = stopped.await;
    });
    let serving = serve(listener, log.clone(), shutdown);
    let task = tokio::spawn(async move { serving.await.map_err(|e| e.to_string()) });
    let server = Server { addr, log, stop, task };
    server.wait_listening().await;
    server
}

impl Server {
    async fn wait_listening(&self) {
        while !self.logged("listening") {
            assert!(!self.task.is_finished(), "server exited: {:?}", self.log.lines());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub fn logged(&self, msg: &str) -> bool {
        let needle = format!(r#""msg":"{msg}""#);
        self.log.lines().iter().any(|line| line.contains(&needle))
    }

    /// The SIGTERM path: stop accepting, drain, flush, return.
    pub async fn stop(self) -> Logger {
        let _ = self.stop.send(());
        let result = self.task.await.expect("server task panicked");
        result.expect("server failed");
        self.log
    }

    /// The in-process stand-in for SIGKILL: drop the server without a shutdown.
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }

    pub async fn call(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        self.call_with(method, path, &[], body).await
    }

    pub async fn call_with(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
        let call = request_with(self.addr, method, path, headers, body);
        tokio::time::timeout(REQUEST_TIMEOUT, call).await.expect("request timed out")
    }
}

/// One HTTP/1.1 request on a fresh connection; returns status and body.
pub async fn request(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    request_with(addr, method, path, &[], body).await
}

/// [`request`] with extra headers.
pub async fn request_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let extra: String = headers.iter().map(|(name, value)| format!("{name}: {value}\r\n")).collect();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{extra}Content-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("write head");
    stream.write_all(body.as_bytes()).await.expect("write body");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read response");
    let (head, body) = response.split_once("\r\n\r\n").expect("response head");
    let status = head.split(' ').nth(1).expect("status code");
    (status.parse().expect("numeric status"), body.to_string())
}

/// Runs futures concurrently on the runtime and collects their outputs in order.
pub async fn futures_join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut outputs = Vec::new();
    for handle in handles {
        outputs.push(handle.await.expect("request task panicked"));
    }
    outputs
}

pub fn ok(body: &str) -> (u16, String) {
    (200, body.to_string())
}

pub fn status(code: u16, body: &str) -> (u16, String) {
    (code, body.to_string())
}

pub fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("create temp dir")
}
