//! The sync testbed: field-level merge across offline actors, idempotent retried pushes, convergence; and their bugs.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use shakedown_testbed::sync::{self, client, ClientError, ClientOptions, Command, Config, Merge, ServerBug};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::{self, run, temp_dir, Server};

async fn start(dir: &Path, bug: Option<ServerBug>) -> Server {
    let config = bug.into_iter().fold(Config::new(dir), |c, bug| c.with_bug(bug));
    support::start(move |listener, log, shutdown| sync::serve(listener, config.with_log(log), shutdown)).await
}

fn actor(dir: &Path, server: SocketAddr, name: &str, merge: Merge) -> ClientOptions {
    let mut options = ClientOptions::new(dir.join(format!("{name}.db")), &format!("http://{server}"), name);
    options.merge = merge;
    options.retry_pause = Duration::from_millis(10);
    options.timeout = Duration::from_secs(2);
    options
}

async fn try_client(options: &ClientOptions, command: Command) -> Result<Value, ClientError> {
    let options = options.clone();
    tokio::task::spawn_blocking(move || client::run(&options, &command)).await.expect("client thread")
}

async fn client(options: &ClientOptions, command: Command) -> Value {
    let shown = format!("{command:?}");
    try_client(options, command).await.unwrap_or_else(|e| panic!("{} {shown}: {e}", options.actor))
}

fn fields(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn update(id: &str, pairs: &[(&str, &str)]) -> Command {
    Command::Update { id: id.to_string(), fields: fields(pairs) }
}

/// Alice and Bob both see one entity, go offline, edit different fields, sync.
async fn edit_different_fields_offline(merge: Merge) -> (Value, Value) {
    let (data, home) = (temp_dir(), temp_dir());
    let server = start(data.path(), None).await;
    let alice = actor(home.path(), server.addr, "alice", merge);
    let bob = actor(home.path(), server.addr, "bob", merge);
    let created = client(&alice, Command::Create { title: "t".into(), fields: fields(&[("status", "open")]) }).await;
    let id = created["id"].as_str().unwrap().to_string();
    client(&alice, Command::Sync).await;
    client(&bob, Command::Sync).await;
    client(&alice, update(&id, &[("status", "done")])).await;
    client(&bob, update(&id, &[("priority", "P0")])).await;
    for options in [&alice, &bob, &alice] {
        client(options, Command::Sync).await;
    }
    let lists = (client(&alice, Command::List).await, client(&bob, Command::List).await);
    server.stop().await;
    lists
}

#[test]
fn edits_to_different_fields_offline_both_survive() {
    run(async {
        let (alice, bob) = edit_different_fields_offline(Merge::FieldLevel).await;
        assert_eq!(alice, bob);
        assert_eq!((alice[0]["status"].clone(), alice[0]["priority"].clone()), (json!("done"), json!("P0")));
    });
}

#[test]
fn whole_row_merge_loses_one_edit() {
    run(async {
        let (alice, bob) = edit_different_fields_offline(Merge::WholeRow).await;
        assert_eq!(alice, bob, "the bug still converges");
        let both = alice[0]["status"] == "done" && alice[0]["priority"] == "P0";
        assert!(!both, "one of the two edits must be lost: {alice}");
    });
}

/// A proxy to `upstream` that, for the first `drops` pushes, forwards the
/// request and reads the server's reply but closes the client's connection
/// instead of answering: a reply lost on the way back.
async fn losing_push_replies(upstream: SocketAddr, drops: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    let addr = listener.local_addr().expect("proxy addr");
    let left = Arc::new(AtomicUsize::new(drops));
    tokio::spawn(async move {
        while let Ok((downstream, _)) = listener.accept().await {
            tokio::spawn(relay(downstream, upstream, Arc::clone(&left)));
        }
    });
    addr
}

async fn relay(mut downstream: TcpStream, upstream: SocketAddr, left: Arc<AtomicUsize>) {
    let request = read_request(&mut downstream).await;
    let mut server = TcpStream::connect(upstream).await.expect("connect upstream");
    server.write_all(&request).await.expect("forward request");
    let mut reply = Vec::new();
    server.read_to_end(&mut reply).await.expect("read reply");
    let is_push = request.starts_with(b"POST /push");
    let lose = is_push && left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
    if !lose {
        let _ = downstream.write_all(&reply).await;
    }
}

/// Reads one request: the head, then `Content-Length` bytes of body.
async fn read_request(stream: &mut TcpStream) -> Vec<u8> {
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await.expect("read request");
        assert!(n > 0, "client closed mid-request");
        request.extend_from_slice(&buf[..n]);
        let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
        let head = String::from_utf8_lossy(&request[..end]).to_ascii_lowercase();
        let len =
            head.lines().find_map(|line| line.strip_prefix("content-length:")).map_or(0, |v| v.trim().parse().unwrap());
        if request.len() >= end + 4 + len {
            return request;
        }
    }
}

/// Alice pushes three events through a proxy that loses the first push's
/// reply; returns the pushes' summary and the log as Bob pulls it.
async fn retried_push(bug: Option<ServerBug>) -> (Value, Vec<Value>) {
    let (data, home) = (temp_dir(), temp_dir());
    let server = start(data.path(), bug).await;
    let proxy = losing_push_replies(server.addr, 1).await;
    let alice = actor(home.path(), proxy, "alice", Merge::FieldLevel);
    for title in ["a", "b", "c"] {
        client(&alice, Command::Create { title: title.into(), fields: vec![] }).await;
    }
    let pushed = client(&alice, Command::Push).await;
    let bob = actor(home.path(), server.addr, "bob", Merge::FieldLevel);
    client(&bob, Command::Pull).await;
    let events = client(&bob, Command::Events).await.as_array().unwrap().clone();
    server.stop().await;
    (pushed, events)
}

#[test]
fn a_retried_push_lands_once() {
    run(async {
        let (pushed, events) = retried_push(None).await;
        assert_eq!(pushed["duplicates"], 3, "the retry resent the same ids: {pushed}");
        let ids: BTreeSet<&str> = events.iter().map(|e| e["event_id"].as_str().unwrap()).collect();
        assert_eq!((events.len(), ids.len()), (3, 3), "{events:#?}");
    });
}

#[test]
fn the_duplicate_bug_appends_a_retried_push_twice() {
    run(async {
        let (pushed, events) = retried_push(Some(ServerBug::DuplicateEventOnRetry)).await;
        assert_eq!(pushed["duplicates"], 0, "{pushed}");
        let ids: BTreeSet<&str> = events.iter().map(|e| e["event_id"].as_str().unwrap()).collect();
        assert_eq!((events.len(), ids.len()), (6, 3), "{events:#?}");
    });
}

/// xorshift64: enough randomness for picking operations, reproducible by seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// One random operation by `options`'s actor on an entity it knows.
async fn random_op(options: &ClientOptions, rng: &mut Rng) {
    let list = client(options, Command::List).await;
    let ids: Vec<String> = list.as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_string()).collect();
    let choice = if ids.is_empty() { 0 } else { rng.below(7) };
    let pick = |rng: &mut Rng| ids[rng.below(ids.len())].clone();
    let field = ["title", "status", "priority", "assignee"][rng.below(4)];
    let value = format!("v{}", rng.below(100));
    let command = match choice {
        0 => Command::Create { title: value, fields: vec![] },
        1 | 2 => update(&pick(rng), &[(field, &value)]),
        3 => Command::Delete { id: pick(rng) },
        4 => Command::Restore { id: pick(rng) },
        5 => Command::Undo,
        _ => Command::Sync,
    };
    match try_client(options, command).await {
        Ok(_) | Err(ClientError::NothingToUndo) => {}
        Err(e) => panic!("{}: {e}", options.actor),
    }
}

#[test]
fn actors_converge_after_random_operations() {
    for seed in [7_u64, 1234] {
        run(async move {
            let (data, home) = (temp_dir(), temp_dir());
            let server = start(data.path(), None).await;
            let actors: Vec<ClientOptions> = ["alice", "bob", "carol"]
                .iter()
                .map(|name| actor(home.path(), server.addr, name, Merge::FieldLevel))
                .collect();
            let mut rng = Rng(seed);
            for _ in 0..60 {
                let who = rng.below(actors.len());
                random_op(&actors[who], &mut rng).await;
            }
            for _ in 0..2 {
                for options in &actors {
                    client(options, Command::Sync).await;
                }
            }
            let mut lists = Vec::new();
            let mut logs = Vec::new();
            for options in &actors {
                lists.push(client(options, Command::List).await);
                logs.push(client(options, Command::Events).await);
            }
            assert!(lists.windows(2).all(|w| w[0] == w[1]), "seed {seed}: diverged: {lists:#?}");
            assert!(logs.windows(2).all(|w| w[0] == w[1]), "seed {seed}: action logs differ");
            check_action_log(logs[0].as_array().unwrap(), seed);
            server.stop().await;
        });
    }
}

/// Strictly increasing `server_seq`, unique event ids, a create before every other event of an entity.
fn check_action_log(events: &[Value], seed: u64) {
    assert!(events.len() >= 20, "seed {seed}: only {} events", events.len());
    let seqs: Vec<u64> = events.iter().map(|e| e["server_seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "seed {seed}: {seqs:?}");
    let ids: BTreeSet<&str> = events.iter().map(|e| e["event_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), events.len(), "seed {seed}: duplicate event ids");
    let mut created = BTreeMap::new();
    for event in events {
        let entity = event["entity_id"].as_str().unwrap();
        if event["action"] == "create" {
            created.insert(entity, ());
        } else {
            assert!(created.contains_key(entity), "seed {seed}: {event} before its create");
        }
    }
}

#[test]
fn queued_changes_survive_a_server_restart_and_undo_syncs() {
    run(async {
        let (data, home) = (temp_dir(), temp_dir());
        let server = start(data.path(), None).await;
        let addr = server.addr;
        let alice = actor(home.path(), addr, "alice", Merge::FieldLevel);
        let bob = actor(home.path(), addr, "bob", Merge::FieldLevel);
        let id = client(&alice, Command::Create { title: "t".into(), fields: vec![] }).await["id"]
            .as_str()
            .unwrap()
            .to_string();
        client(&alice, Command::Sync).await;
        client(&bob, Command::Sync).await;
        server.stop().await;
        client(&bob, update(&id, &[("assignee", "bob")])).await;
        let mut offline = alice.clone();
        offline.retries = 1;
        assert!(matches!(try_client(&offline, Command::Sync).await, Err(ClientError::Unreachable { .. })));
        client(&alice, Command::Undo).await;
        // The same data dir on the same port: a restart.
        let listener = TcpListener::bind(addr).await.expect("rebind the server's port");
        let config = Config::new(data.path());
        let restarted =
            support::start(move |_, log, shutdown| sync::serve(listener, config.with_log(log), shutdown)).await;
        for options in [&alice, &bob, &alice] {
            client(options, Command::Sync).await;
        }
        let (a, b) = (client(&alice, Command::List).await, client(&bob, Command::List).await);
        assert_eq!(a, b);
        assert_eq!((a[0]["deleted"].clone(), a[0]["assignee"].clone()), (json!(1), json!("bob")), "{a}");
        assert_eq!(client(&bob, Command::Events).await.as_array().unwrap().len(), 3);
        restarted.stop().await;
    });
}
