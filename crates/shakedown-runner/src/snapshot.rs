//! Takes state snapshots for the state checks: an SQLite, PostgreSQL or
//! DuckDB query's rows, a command's JSON output, or a directory tree's files
//! with their SHA-256.
//!
//! Every read is bounded (a timeout, a row, byte and file cap); a state that
//! cannot be read becomes a snapshot with an error, never a panic or a hang.

use crate::context::{ActorCtx, Context, Scope};
use crate::plan::{resolve_program, search_path};
use crate::supervisor::{spawn_tracked, ProcSpec};
use serde_json::Value;
use sha2::{Digest, Sha256};
use shakedown_history::state::{Snapshot, StateContent, TreeEntry};
use shakedown_spec::{CheckSpec, StateSource};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

mod duckdb;
mod postgres;

/// How long reading one state may take unless the source says otherwise.
pub const DEFAULT_STATE_TIMEOUT: Duration = Duration::from_secs(10);
/// The most rows a query may return.
pub const MAX_ROWS: usize = 200_000;
/// The most files a tree may hold.
pub const MAX_FILES: usize = 100_000;
/// The most bytes of standard output a state command may print.
pub const MAX_JSON_BYTES: usize = 64 * 1024 * 1024;
/// The owner of a state that belongs to no actor.
pub const NO_OWNER: &str = "-";

/// Why a state could not be read; kept as the snapshot's error.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{0}")]
    Render(#[from] crate::context::RenderError),
    #[error("actor `{0}` is not part of this run")]
    NoActor(String),
    #[error("open {path}: {message}")]
    Open { path: String, message: String },
    #[error("query {path}: {message}")]
    Query { path: String, message: String },
    #[error("the query returned more than {MAX_ROWS} rows")]
    TooManyRows,
    #[error("run {program}: {message}")]
    Command { program: String, message: String },
    #[error("read the tree {path}: {message}")]
    Tree { path: String, message: String },
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Unsupported(String),
}

/// Takes the state of `check` for every owner it covers, `taken` naming
/// the moment ("final", "before", "after"). Empty when the check has no
/// `state`. With `taken = "final"`, an own-writes check's `created` source
/// and a field-merge check's `edit_log` are read too, for the same owners,
/// as `created` and `edits` snapshots.
pub async fn take(ctx: &Context, check: &CheckSpec, taken: &str) -> Vec<Snapshot> {
    let Some(source) = check.state.as_ref().map(|s| s.get_ref()) else { return Vec::new() };
    let owners = owners(ctx, check, source);
    let mut out = take_from(ctx, check.label(), source, &owners, taken).await;
    if let Some(created) = check.created.as_ref().filter(|_| taken == "final") {
        out.extend(take_from(ctx, check.label(), created.get_ref(), &owners, "created").await);
    }
    if let Some(log) = check.edit_log.as_ref().filter(|_| taken == "final") {
        out.extend(take_from(ctx, check.label(), log.get_ref(), &owners, "edits").await);
    }
    out
}

/// Whose state a check reads: its `actors`, else every actor when the
/// source names `{actor.*}`, else no one in particular (`None`). An actor
/// not in the run is an `Err` with its name.
fn owners<'c>(ctx: &'c Context, check: &CheckSpec, source: &StateSource) -> Vec<Result<Option<&'c ActorCtx>, String>> {
    match &check.actors {
        Some(names) => names
            .get_ref()
            .iter()
            .map(|n| ctx.actors.iter().find(|a| &a.name == n).map(Some).ok_or_else(|| n.clone()))
            .collect(),
        None if source.per_actor() => ctx.actors.iter().map(|a| Ok(Some(a))).collect(),
        None => vec![Ok(None)],
    }
}

async fn take_from(
    ctx: &Context,
    label: &str,
    source: &StateSource,
    owners: &[Result<Option<&ActorCtx>, String>],
    taken: &str,
) -> Vec<Snapshot> {
    let mut out = Vec::new();
    for owner in owners {
        let snapshot = match owner {
            Err(name) => Snapshot::failed(label, name, taken, StateError::NoActor(name.clone()).to_string()),
            Ok(actor) => {
                let name = actor.map_or(NO_OWNER, |a| a.name.as_str());
                match read(ctx, source, *actor).await {
                    Ok(content) => Snapshot::ok(label, name, taken, content),
                    Err(e) => Snapshot::failed(label, name, taken, e.to_string()),
                }
            }
        };
        out.push(snapshot);
    }
    out
}

/// Reads one owner's state.
pub async fn read(ctx: &Context, source: &StateSource, actor: Option<&ActorCtx>) -> Result<StateContent, StateError> {
    let timeout = source.timeout.map_or(DEFAULT_STATE_TIMEOUT, |d| d.0);
    let mut scope = Scope { actor, ..Scope::default() };
    if let (Some(db), Some(query)) = (&source.sqlite, &source.query) {
        let path = resolve(&ctx.scenario_dir, &ctx.render(db, &mut scope)?);
        let query = ctx.render(query, &mut scope)?;
        return blocking(timeout, move |deadline| read_sqlite(&path, &query, deadline)).await;
    }
    if let (Some(conninfo), Some(query)) = (&source.postgres, &source.query) {
        let conninfo = ctx.render(conninfo, &mut scope)?;
        let query = ctx.render(query, &mut scope)?;
        return postgres::read(&conninfo, &query, timeout).await;
    }
    if let (Some(db), Some(query)) = (&source.duckdb, &source.query) {
        let path = resolve(&ctx.scenario_dir, &ctx.render(db, &mut scope)?);
        let query = ctx.render(query, &mut scope)?;
        return blocking(timeout, move |deadline| duckdb::read(&path, &query, deadline)).await;
    }
    if let Some(dir) = &source.tree {
        let root = resolve(&ctx.scenario_dir, &ctx.render(dir, &mut scope)?);
        return blocking(timeout, move |deadline| read_tree(&root, deadline)).await;
    }
    let argv = ctx.render_all(source.command.iter().flatten(), &mut scope)?;
    run_json(ctx, argv, actor, timeout).await
}

fn resolve(base: &Path, path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Runs `f` on the blocking pool with a deadline it checks as it goes; the
/// await is bounded by the same timeout (plus a second of slack).
async fn blocking<T: Send + 'static>(
    timeout: Duration,
    f: impl FnOnce(Instant) -> Result<T, StateError> + Send + 'static,
) -> Result<T, StateError> {
    let deadline = Instant::now() + timeout;
    let task = tokio::task::spawn_blocking(move || f(deadline));
    match tokio::time::timeout(timeout + Duration::from_secs(1), task).await {
        Ok(Ok(result)) => result,
        Ok(Err(join)) => Err(StateError::Open { path: String::new(), message: format!("the reader failed: {join}") }),
        Err(_) => Err(StateError::Timeout(timeout)),
    }
}

/// A process killed inside a transaction leaves a hot rollback journal, which
/// a read-only connection cannot roll back ("attempt to write a readonly
/// database"). Opening the database for writing once lets SQLite recover it,
/// as its next writer would; with a live writer holding the lock, the journal
/// is not hot and nothing changes.
fn recover_hot_journal(path: &Path) {
    let journal = PathBuf::from(format!("{}-journal", path.display()));
    if journal.metadata().is_ok_and(|m| m.len() > 0) {
        if let Ok(conn) = rusqlite::Connection::open(path) {
            let _ = conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get::<_, i64>(0));
        }
    }
}

/// The query's rows, from the database opened read-only (never created).
fn read_sqlite(path: &Path, query: &str, deadline: Instant) -> Result<StateContent, StateError> {
    use rusqlite::{types::ValueRef, Connection, OpenFlags};
    let shown = path.display().to_string();
    let open_err = |e: rusqlite::Error| StateError::Open { path: shown.clone(), message: e.to_string() };
    let query_err = |e: rusqlite::Error| StateError::Query { path: shown.clone(), message: e.to_string() };
    recover_hot_journal(path);
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(open_err)?;
    // A writer still holding a lock is waited for, up to the deadline.
    conn.busy_timeout(deadline.saturating_duration_since(Instant::now())).map_err(open_err)?;
    // Interrupts a query still running at the deadline.
    conn.progress_handler(10_000, Some(move || Instant::now() > deadline));
    let mut stmt = conn.prepare(query).map_err(query_err)?;
    let columns: Vec<String> = stmt.column_names().into_iter().map(String::from).collect();
    let n = columns.len();
    let mut rows_out = Vec::new();
    let mut rows = stmt.query([]).map_err(query_err)?;
    while let Some(row) = rows.next().map_err(|e| {
        if Instant::now() > deadline {
            StateError::Timeout(Duration::ZERO)
        } else {
            query_err(e)
        }
    })? {
        if rows_out.len() == MAX_ROWS {
            return Err(StateError::TooManyRows);
        }
        let mut values = Vec::with_capacity(n);
        for i in 0..n {
            let v = match row.get_ref(i).map_err(query_err)? {
                ValueRef::Null => Value::Null,
                ValueRef::Integer(i) => Value::from(i),
                ValueRef::Real(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
                ValueRef::Text(t) => Value::String(String::from_utf8_lossy(t).into_owned()),
                ValueRef::Blob(b) => Value::String(hex(b)),
            };
            values.push(v);
        }
        rows_out.push(values);
    }
    Ok(StateContent::Rows { columns, rows: rows_out })
}

/// Every regular file under `root` (symlinks not followed), sorted by path.
fn read_tree(root: &Path, deadline: Instant) -> Result<StateContent, StateError> {
    let shown = root.display().to_string();
    let err = |message: String| StateError::Tree { path: shown.clone(), message };
    if !root.is_dir() {
        return Err(err("not a directory".into()));
    }
    let mut entries = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let listing = std::fs::read_dir(&dir).map_err(|e| err(format!("{}: {e}", dir.display())))?;
        for entry in listing {
            let entry = entry.map_err(|e| err(e.to_string()))?;
            let kind = entry.file_type().map_err(|e| err(e.to_string()))?;
            let path = entry.path();
            if kind.is_dir() {
                dirs.push(path);
            } else if kind.is_file() {
                if entries.len() == MAX_FILES {
                    return Err(err(format!("more than {MAX_FILES} files")));
                }
                if Instant::now() > deadline {
                    return Err(StateError::Timeout(Duration::ZERO));
                }
                entries.push(file_entry(root, &path).map_err(|e| err(format!("{}: {e}", path.display())))?);
            }
        }
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(StateContent::Tree { entries })
}

fn file_entry(root: &Path, path: &Path) -> std::io::Result<TreeEntry> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let size = std::io::copy(&mut file, &mut hasher)?;
    let rel = path.strip_prefix(root).unwrap_or(path);
    let rel: Vec<String> = rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
    Ok(TreeEntry { path: rel.join("/"), size, sha256: hex(&hasher.finalize()) })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs the command (no shell) in the actor's home with the actor's env, and
/// parses its standard output as JSON; a non-zero exit is an error.
async fn run_json(
    ctx: &Context,
    mut argv: Vec<String>,
    actor: Option<&ActorCtx>,
    timeout: Duration,
) -> Result<StateContent, StateError> {
    resolve_program(&mut argv, &ctx.scenario_dir);
    let program = argv.first().cloned().unwrap_or_default();
    let fail = |message: String| StateError::Command { program: program.clone(), message };
    if program.is_empty() {
        return Err(fail("the command is empty".into()));
    }
    let mut env = vec![
        ("PATH".to_string(), search_path()),
        ("SHAKEDOWN_SEED".to_string(), ctx.seed.to_string()),
        // The tag puts the command in the run's containment.
        (crate::supervisor::RUN_DIR_VAR.to_string(), ctx.run_dir.display().to_string()),
    ];
    let cwd = match actor {
        Some(a) => {
            env.extend(a.env.iter().cloned());
            env.push(("HOME".into(), a.home.display().to_string()));
            env.push(("SHAKEDOWN_ACTOR".into(), a.name.clone()));
            a.home.clone()
        }
        None => ctx.run_dir.clone(),
    };
    let spec = ProcSpec { argv, env, cwd, namespaces: Vec::new() };
    let mut cmd = spec.command();
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let (mut child, _group) = spawn_tracked(&mut cmd).map_err(|e| fail(e.to_string()))?;
    let (mut out, mut err) = (child.stdout.take(), child.stderr.take());
    let run = async {
        tokio::join!(read_capped(out.as_mut(), MAX_JSON_BYTES), read_capped(err.as_mut(), 4096), child.wait())
    };
    // On a timeout, dropping the group guard kills the command's whole group.
    let (stdout, stderr, status) =
        tokio::time::timeout(timeout, run).await.map_err(|_| StateError::Timeout(timeout))?;
    let status = status.map_err(|e| fail(e.to_string()))?;
    let (stdout, truncated) = stdout;
    if !status.success() {
        let stderr = String::from_utf8_lossy(&stderr.0).trim().to_string();
        return Err(fail(format!("{}; stderr: {stderr}", crate::supervisor::describe_exit(status))));
    }
    if truncated {
        return Err(fail(format!("its output is over {MAX_JSON_BYTES} bytes")));
    }
    let value: Value = serde_json::from_slice(&stdout).map_err(|e| fail(format!("its output is not JSON ({e})")))?;
    Ok(StateContent::json(value))
}

/// Reads a pipe to its end, keeping at most `cap` bytes; true when more came.
async fn read_capped(pipe: Option<&mut (impl tokio::io::AsyncRead + Unpin)>, cap: usize) -> (Vec<u8>, bool) {
    let Some(pipe) = pipe else { return (Vec::new(), false) };
    let mut kept = Vec::new();
    let mut truncated = false;
    let mut buf = [0u8; 8192];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = cap.saturating_sub(kept.len());
                truncated |= n > room;
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    (kept, truncated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn ctx(dir: &Path) -> Context {
        let home = dir.join("alice");
        std::fs::create_dir_all(&home).unwrap();
        let alice = ActorCtx { name: "alice".into(), home, env: vec![("COLOR".into(), "blue".into())] };
        Context::new(dir.to_path_buf(), dir.to_path_buf(), 7, BTreeMap::new(), vec![alice])
    }

    fn check(state: &str, extra: &str) -> CheckSpec {
        let text = format!("name = \"t\"\n[actor.alice]\n[[check]]\nkind = \"converge\"\nstate = {state}\n{extra}");
        shakedown_spec::parse(&text, "t.toml").unwrap().check.remove(0)
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    #[test]
    fn a_database_left_with_a_hot_journal_by_a_killed_writer_reads_as_committed() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("dest.sqlite");
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY); INSERT INTO t VALUES (1);").unwrap();
        drop(conn);
        // A writer that dies mid-transaction, after its changes reached the file.
        let script = "import os, sqlite3, sys\n\
            c = sqlite3.connect(sys.argv[1], isolation_level=None)\n\
            c.execute('PRAGMA cache_size=1')\n\
            c.execute('BEGIN')\n\
            c.executemany('INSERT INTO t VALUES (?)', [(i,) for i in range(2, 5000)])\n\
            os._exit(9)\n";
        let status = std::process::Command::new("python3").args(["-c", script]).arg(&db).status().unwrap();
        assert_eq!(status.code(), Some(9));
        let journal = dir.path().join("dest.sqlite-journal");
        assert!(journal.metadata().is_ok_and(|m| m.len() > 0), "the killed writer left a hot journal");
        let deadline = Instant::now() + Duration::from_secs(5);
        let rows = read_sqlite(&db, "SELECT id FROM t", deadline).unwrap();
        assert_eq!(rows, StateContent::Rows { columns: vec!["id".into()], rows: vec![vec![json!(1)]] });
    }

    #[test]
    fn sqlite_rows_are_read_and_a_missing_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("alice").join("db.sqlite");
        let ctx = ctx(dir.path());
        let c = check(r#"{ sqlite = "{actor.home}/db.sqlite", query = "SELECT id, t, r, b FROM x ORDER BY id" }"#, "");
        let missing = rt().block_on(take(&ctx, &c, "final"));
        assert_eq!(missing.len(), 1);
        assert!(missing[0].error.as_deref().unwrap().starts_with("open "), "{missing:?}");
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(
            "CREATE TABLE x (id INTEGER, t TEXT, r REAL, b BLOB); INSERT INTO x VALUES (2, 'b', 1.5, x'00ff'), (1, NULL, 0.0, NULL);",
        )
        .unwrap();
        let snaps = rt().block_on(take(&ctx, &c, "final"));
        let want = StateContent::Rows {
            columns: vec!["id".into(), "t".into(), "r".into(), "b".into()],
            rows: vec![
                vec![json!(1), json!(null), json!(0.0), json!(null)],
                vec![json!(2), json!("b"), json!(1.5), json!("00ff")],
            ],
        };
        assert_eq!(snaps[0].content.as_ref(), Some(&want), "{snaps:?}");
        assert_eq!(
            (snaps[0].owner.as_str(), snaps[0].taken.as_str(), snaps[0].check.as_str()),
            ("alice", "final", "converge")
        );
        let bad = check(r#"{ sqlite = "{actor.home}/db.sqlite", query = "SELECT nope FROM x" }"#, "");
        let snaps = rt().block_on(take(&ctx, &bad, "final"));
        assert!(snaps[0].error.as_deref().unwrap().contains("no such column"), "{snaps:?}");
    }

    #[test]
    fn a_slow_query_is_interrupted_at_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = ctx(dir.path());
        rusqlite::Connection::open(dir.path().join("alice").join("db"))
            .unwrap()
            .execute_batch("CREATE TABLE x (a);")
            .unwrap();
        let q = "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c) SELECT count(*) FROM c";
        let c = check(&format!(r#"{{ sqlite = "{{actor.home}}/db", query = "{q}", timeout = "300ms" }}"#), "");
        let start = Instant::now();
        let snaps = rt().block_on(take(&ctx, &c, "final"));
        assert!(start.elapsed() < Duration::from_secs(3), "{:?}", start.elapsed());
        assert!(
            snaps[0].error.as_deref().unwrap().contains("timed out")
                || snaps[0].error.as_deref().unwrap().contains("interrupt"),
            "{snaps:?}"
        );
    }

    #[test]
    fn commands_run_as_the_actor_and_their_json_is_the_state() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = ctx(dir.path());
        // Literal braces are doubled in templates.
        let script = r#"printf '{{"home":"%s","actor":"%s","color":"%s"}}' "$HOME" "$SHAKEDOWN_ACTOR" "$COLOR""#;
        let c = check(&format!(r#"{{ command = ["sh", "-c", '''{script}'''] }}"#), "actors = [\"alice\"]");
        let snaps = rt().block_on(take(&ctx, &c, "final"));
        let home = dir.path().join("alice").display().to_string();
        let want = StateContent::json(json!({"home": home, "actor": "alice", "color": "blue"}));
        assert_eq!(snaps[0].content.as_ref(), Some(&want), "{snaps:?}");
        for (cmd, why) in [
            (r#"["sh", "-c", "echo not json"]"#, "not JSON"),
            (r#"["sh", "-c", "echo oops >&2; exit 3"]"#, "oops"),
            (r#"["no-such-program-xyz"]"#, "no-such-program-xyz"),
        ] {
            let c = check(&format!("{{ command = {cmd} }}"), "actors = [\"alice\"]");
            let snaps = rt().block_on(take(&ctx, &c, "final"));
            assert!(snaps[0].error.as_deref().unwrap().contains(why), "{why}: {snaps:?}");
        }
        let slow = check(r#"{ command = ["sleep", "5"], timeout = "200ms" }"#, "actors = [\"alice\"]");
        let start = Instant::now();
        let snaps = rt().block_on(take(&ctx, &slow, "final"));
        assert!(start.elapsed() < Duration::from_secs(2));
        assert!(snaps[0].error.as_deref().unwrap().contains("timed out"), "{snaps:?}");
    }

    #[test]
    fn trees_list_files_with_sizes_and_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = ctx(dir.path());
        let root = dir.path().join("alice").join("files");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub").join("b.txt"), "abc").unwrap();
        std::fs::write(root.join("a.txt"), "").unwrap();
        let c = check(r#"{ tree = "{actor.home}/files" }"#, "");
        let snaps = rt().block_on(take(&ctx, &c, "before"));
        let Some(StateContent::Tree { entries }) = &snaps[0].content else { panic!("{snaps:?}") };
        let got: Vec<(&str, u64, &str)> = entries.iter().map(|e| (e.path.as_str(), e.size, &e.sha256[..8])).collect();
        assert_eq!(got, [("a.txt", 0, "e3b0c442"), ("sub/b.txt", 3, "ba7816bf")]);
        let missing = check(r#"{ tree = "{actor.home}/nope" }"#, "");
        let snaps = rt().block_on(take(&ctx, &missing, "final"));
        assert!(snaps[0].error.as_deref().unwrap().contains("not a directory"), "{snaps:?}");
    }

    #[test]
    fn own_writes_reads_its_created_source_with_the_final_state() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = ctx(dir.path());
        let text = r#"
name = "t"
[actor.alice]
[[check]]
kind = "own-writes"
state = { command = ["echo", "[1]"] }
actors = ["alice"]
created = { command = ["echo", '["{actor.name}"]'] }
"#;
        let c = shakedown_spec::parse(text, "t.toml").unwrap().check.remove(0);
        let snaps = rt().block_on(take(&ctx, &c, "final"));
        let got: Vec<(&str, &str)> = snaps.iter().map(|s| (s.owner.as_str(), s.taken.as_str())).collect();
        assert_eq!(got, [("alice", "final"), ("alice", "created")]);
        assert_eq!(snaps[1].content, Some(StateContent::json(json!(["alice"]))), "{snaps:?}");
        assert_eq!(rt().block_on(take(&ctx, &c, "before")).len(), 1);
    }

    #[test]
    fn sources_without_actor_placeholders_have_no_owner_and_unknown_actors_fail() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = ctx(dir.path());
        let c = check(r#"{ command = ["echo", "[1]"] }"#, "");
        let snaps = rt().block_on(take(&ctx, &c, "final"));
        assert_eq!(snaps.len(), 1);
        assert_eq!(snaps[0].owner, NO_OWNER);
        assert_eq!(snaps[0].content, Some(StateContent::json(json!([1]))));
        let mut c = check(r#"{ command = ["echo", "[1]"] }"#, "actors = [\"alice\"]");
        c.actors = Some(toml::Spanned::new(0..0, vec!["alice".into(), "zed".into()]));
        let snaps = rt().block_on(take(&ctx, &c, "final"));
        assert_eq!(snaps.len(), 2);
        assert_eq!(snaps[1].error.as_deref(), Some("actor `zed` is not part of this run"));
    }
}
