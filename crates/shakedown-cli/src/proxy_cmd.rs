//! `shakedown proxy` (a standalone fault proxy behind a toxiproxy-compatible
//! API) and `shakedown doctor` (which fault tiers this machine has).

use shakedown_proxy::{ProxySpec, Registry};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use shakedown::ExitCode;

/// Serves the API on `listen` until SIGINT or SIGTERM, then stops every link.
pub fn proxy_command(listen: SocketAddr, config: Option<PathBuf>, seed: Option<u64>) -> ExitCode {
    if !listen.ip().is_loopback() {
        eprintln!("shakedown proxy: --listen {listen} is not a loopback address; the control API only listens on loopback (127.0.0.0/8 or ::1)");
        return ExitCode::Usage;
    }
    let specs: Vec<ProxySpec> = match config.as_deref().map(read_config).transpose() {
        Ok(specs) => specs.unwrap_or_default(),
        Err(e) => {
            eprintln!("shakedown proxy: {e}");
            return ExitCode::Usage;
        }
    };
    let seed = seed.unwrap_or_else(rand::random);
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("shakedown proxy: cannot start the async runtime: {e}");
            return ExitCode::Harness;
        }
    };
    rt.block_on(async move {
        let registry = Arc::new(Registry::new(seed));
        if let Err(e) = registry.populate(specs).await {
            eprintln!("shakedown proxy: create the proxies of the config file: {e}");
            return ExitCode::Usage;
        }
        let listener = match tokio::net::TcpListener::bind(listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("shakedown proxy: listen on {listen}: {e}");
                return ExitCode::Harness;
            }
        };
        eprintln!(
            "shakedown proxy {}: API on http://{listen} (toxiproxy-compatible), seed {seed}",
            env!("CARGO_PKG_VERSION")
        );
        let served = shakedown_proxy::serve_api(listener, registry.clone(), shutdown_signal()).await;
        registry.shutdown().await;
        match served {
            Ok(()) => ExitCode::Valid,
            Err(e) => {
                eprintln!("shakedown proxy: {e}");
                ExitCode::Harness
            }
        }
    })
}

fn read_config(path: &std::path::Path) -> Result<Vec<ProxySpec>, String> {
    let text = crate::input::read_small(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| {
        format!(
            "{}:{}:{}: {e}; expected a JSON array of {{\"name\", \"listen\", \"upstream\", \"enabled\"}}",
            path.display(),
            e.line(),
            e.column()
        )
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
        return;
    };
    tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
    eprintln!("shakedown proxy: stopping");
}

/// Prints every capability; exits 0 (a missing tier is information, not an error).
/// Processes an earlier, dead shakedown left behind are killed and reported first.
pub fn doctor_command(json: bool) -> ExitCode {
    crate::cli::report_leftovers();
    let caps = shakedown_runner::doctor::doctor();
    if json {
        println!("{}", serde_json::to_string_pretty(&caps).unwrap_or_else(|_| "[]".into()));
    } else {
        print!("{}", shakedown_runner::doctor::render(&caps));
    }
    ExitCode::Valid
}
