//! Resume scenarios: run a job once uninterrupted (the golden run), then for
//! each interruption point run it again in a case directory of its own,
//! interrupt it (a signal drawn from the seed, at a fraction of the golden
//! run's duration or at the Nth matching output line), optionally damage a
//! file, and resume it until done. Every attempt is an operation in the
//! history and every interruption a fault window; the golden and final
//! states, the state files and the schema are snapshots the `resume` check
//! compares. Nothing here judges: the check does.

use crate::context::{Context, Scope};
use crate::logs::{pump_keep, LogSink};
use crate::plan::resolve_program;
use crate::recorder::{Outcome, Recorder};
use crate::supervisor::{spawn_tracked, ProcSpec};
use crate::triggers::log_match;
use crate::workload::stream_rng;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use shakedown_history::logs::{parse_line, LogFormat};
use shakedown_history::metrics::{Better, Metrics};
use shakedown_history::state::{Snapshot, StateContent};
use shakedown_history::ProcessId;
use shakedown_spec::{CorruptHow, ResumeSpec, Scenario, StateSource, Template};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The check name resume snapshots are filed under.
pub const RESUME: &str = "resume";
const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long an interrupted job may take to exit before SIGKILL.
const EXIT_GRACE: Duration = Duration::from_secs(30);
const RESUME_STREAM: u64 = 6 << 32;
/// Fresh starts of a case whose job finished before its interruption point.
const MAX_RETRIES: u32 = 3;

/// How one attempt of the job ended.
struct Attempt {
    outcome: Outcome,
    /// Whether the signal was sent before the job ended.
    interrupted: bool,
    elapsed: Duration,
    /// Output lines matching the `at.log` trigger.
    matches: u64,
    /// Peak memory and CPU of the attempt's process group.
    usage: crate::metrics::Usage,
}

impl Attempt {
    /// An attempt that never got its process running.
    fn failed(outcome: Outcome) -> Attempt {
        Attempt { outcome, interrupted: false, elapsed: Duration::ZERO, matches: 0, usage: Default::default() }
    }
}

/// When to interrupt an attempt.
#[derive(Clone, Copy)]
enum Moment {
    After(Duration),
    NthMatch(u64),
    Never,
}

pub struct ResumeRun<'a> {
    pub s: &'a Scenario,
    pub spec: &'a ResumeSpec,
    pub ctx: Arc<Context>,
    pub recorder: Arc<Recorder>,
    pub logs_dir: PathBuf,
}

impl ResumeRun<'_> {
    /// Runs the golden case and every interruption case; returns the
    /// snapshots and the golden run's metrics: the job's items per second
    /// (items in its final state over its wall time), peak RSS and CPU.
    pub async fn run(&self) -> (Vec<Snapshot>, Metrics) {
        let mut snaps = self.schema_snapshot();
        let golden_dir = self.case_dir("golden");
        let golden = self.attempt("golden", 0, &golden_dir, false, Moment::Never, Signal::SIGINT).await;
        let finished = golden.outcome.op_type == shakedown_history::OpType::Ok;
        let golden_state = self.final_state("golden", &golden_dir).await;
        let mut metrics = Metrics::default();
        if finished {
            metrics.add_service("job", golden.usage.rss_bytes, golden.usage.cpu_ms);
            let items = match &golden_state.content {
                Some(StateContent::Rows { rows, .. }) => Some(rows.len()),
                Some(StateContent::Tree { entries }) => Some(entries.len()),
                _ => None,
            };
            let secs = golden.elapsed.as_secs_f64();
            if let (Some(items), true) = (items, secs > 0.0) {
                metrics.insert("job.items_per_s", items as f64 / secs, "items/s", Better::Higher);
                metrics.insert("job.wall_ms", secs * 1000.0, "ms", Better::Lower);
            }
        }
        snaps.push(golden_state);
        if !finished {
            return (snaps, metrics);
        }
        // Run times drift (caches warm, disks settle): points are placed on the
        // golden run's length, which a case that finished too soon shortens
        // before it tries again.
        for i in 0..self.spec.n_points() {
            if self.spec.only_point.is_some_and(|p| p != i + 1) {
                continue;
            }
            let case = format!("point-{:02}", i + 1);
            // A case depends on the seed, its number and the golden run only,
            // so `--point N` replays it alone.
            let mut rng = stream_rng(self.ctx.seed, RESUME_STREAM + u64::from(i));
            let mut typical = golden.elapsed;
            snaps.extend(self.case(&case, i, &golden, &mut typical, &mut rng).await);
        }
        (snaps, metrics)
    }

    /// One interruption case: interrupted runs, damage, then resumes until done.
    async fn case(
        &self,
        case: &str,
        i: u32,
        golden: &Attempt,
        typical: &mut Duration,
        rng: &mut ChaCha8Rng,
    ) -> Vec<Snapshot> {
        let dir = self.case_dir(case);
        let mut snaps = Vec::new();
        let mut attempt_no = 0;
        let mut retries = 0;
        let mut k = 0;
        while k < self.spec.n_interruptions() {
            let signal = self.draw_signal(rng);
            let moment = self.draw_moment(i, k, golden, *typical, rng);
            let a = self.attempt(case, attempt_no, &dir, attempt_no > 0, moment, signal).await;
            attempt_no += 1;
            let ran_through = !a.interrupted && a.outcome.op_type == shakedown_history::OpType::Ok;
            if ran_through && k == 0 && retries < MAX_RETRIES {
                // Finished before its point: start the case afresh on the new length.
                retries += 1;
                *typical = a.elapsed;
                let _ = std::fs::remove_dir_all(&dir);
                let _ = std::fs::create_dir_all(&dir);
                self.recorder.service(
                    case,
                    "retried",
                    true,
                    Some(format!("finished in {:?}, before its point", a.elapsed)),
                );
                continue;
            }
            k += 1;
            if !a.interrupted {
                // It finished (or failed) before the moment came: nothing to resume.
                snaps.push(self.final_state(case, &dir).await);
                return snaps;
            }
            if self.spec.state_file.is_some() {
                snaps.push(self.state_file(case, &dir, &format!("state-{k}")).await);
            }
            for c in &self.spec.corrupt {
                self.corrupt(case, &dir, c.how, &c.file, rng);
            }
        }
        for n in 0..self.spec.n_attempts() {
            let a = self.attempt(case, attempt_no, &dir, true, Moment::Never, Signal::SIGINT).await;
            attempt_no += 1;
            let done = a.outcome.op_type == shakedown_history::OpType::Ok;
            // A job expected to refuse a damaged state gets one chance to say so.
            if done || !self.spec.corrupt.is_empty() {
                break;
            }
            if self.spec.state_file.is_some() {
                snaps.push(self.state_file(case, &dir, &format!("state-resume-{}", n + 1)).await);
            }
        }
        snaps.push(self.final_state(case, &dir).await);
        snaps
    }

    fn case_dir(&self, case: &str) -> PathBuf {
        let dir = self.ctx.run_dir.join("cases").join(case);
        let _ = std::fs::create_dir_all(&dir);
        dir
    }

    fn draw_signal(&self, rng: &mut ChaCha8Rng) -> Signal {
        let names = self.spec.signal_names();
        match names[rng.gen_range(0..names.len())].as_str() {
            "KILL" => Signal::SIGKILL,
            "TERM" => Signal::SIGTERM,
            _ => Signal::SIGINT,
        }
    }

    /// Point i of n lands in the i-th n-th of the golden run, at a place
    /// drawn from the seed; a later interruption of the same case, later.
    fn draw_moment(&self, i: u32, k: u32, golden: &Attempt, typical: Duration, rng: &mut ChaCha8Rng) -> Moment {
        let n = f64::from(self.spec.n_points());
        let fraction = ((f64::from(i) + rng.gen_range(0.05..0.95)) / n).clamp(0.0, 1.0);
        let fraction = fraction / f64::from(k + 1);
        match self.spec.at.as_ref().and_then(|a| a.log.as_ref()) {
            Some(_) => {
                Moment::NthMatch((((golden.matches as f64) * fraction).floor() as u64 + 1).min(golden.matches.max(1)))
            }
            None => Moment::After(typical.mul_f64(fraction)),
        }
    }

    /// Runs the job (or its resume command) in `dir` once, interrupting it at
    /// `moment` with `signal`; recorded as an operation and, when the signal
    /// went out, a fault window.
    async fn attempt(&self, case: &str, no: u32, dir: &Path, resume: bool, moment: Moment, signal: Signal) -> Attempt {
        let f = if resume { "resume" } else { "job" };
        let template = match (&self.spec.resume, resume) {
            (Some(r), true) => r.as_slice(),
            _ => self.spec.job.get_ref().as_slice(),
        };
        let process = ProcessId(u64::from(no) + 1000 * case_number(case));
        let value = json!({ "case": case, "attempt": no });
        self.recorder.invoke(process, case, f, &value);
        let spec = match self.proc_spec(template, dir) {
            Ok(s) => s,
            Err(e) => {
                self.recorder.complete(process, case, f, &value, Outcome::fail(e));
                return Attempt::failed(Outcome::fail(""));
            }
        };
        let sink = match LogSink::create(case, &self.logs_dir.join(format!("{case}.log")), self.recorder.start()) {
            Ok(s) => Arc::new(s),
            Err(e) => {
                self.recorder.complete(process, case, f, &value, Outcome::fail(format!("create the case log: {e}")));
                return Attempt::failed(Outcome::fail(""));
            }
        };
        sink.push("sys", &format!("[shakedown] {f} attempt {no}: {}", spec.argv.join(" ")));
        let a = self.run_attempt(&spec, sink, moment, signal, case).await;
        self.recorder.complete(process, case, f, &value, a.outcome.clone());
        a
    }

    fn proc_spec(&self, template: &[Template], dir: &Path) -> Result<ProcSpec, String> {
        let mut scope = Scope { case_dir: Some(dir), ..Scope::default() };
        let mut argv = self.ctx.render_all(template, &mut scope).map_err(|e| e.to_string())?;
        resolve_program(&mut argv, &self.ctx.scenario_dir);
        let env = vec![
            ("PATH".to_string(), crate::plan::search_path()),
            ("SHAKEDOWN_SEED".to_string(), self.ctx.seed.to_string()),
            (crate::supervisor::RUN_DIR_VAR.to_string(), self.ctx.run_dir.display().to_string()),
        ];
        Ok(ProcSpec { argv, env, cwd: dir.to_path_buf(), namespaces: Vec::new() })
    }

    async fn run_attempt(
        &self,
        spec: &ProcSpec,
        sink: Arc<LogSink>,
        moment: Moment,
        signal: Signal,
        case: &str,
    ) -> Attempt {
        let started = Instant::now();
        let mut cmd = spec.command();
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let (mut child, _group) = match spawn_tracked(&mut cmd) {
            Ok(c) => c,
            Err(e) => {
                let o = Outcome::fail(format!("run {}: {e}", spec.argv[0]));
                return Attempt::failed(o);
            }
        };
        let pgid = child.id().map_or(0, |id| id as i32);
        let out = tokio::spawn(pump_keep(sink.clone(), "out", child.stdout.take().expect("piped"), 64 * 1024));
        let err = tokio::spawn(pump_keep(sink.clone(), "err", child.stderr.take().expect("piped"), 64 * 1024));
        let timeout = self.spec.timeout.map_or(DEFAULT_ATTEMPT_TIMEOUT, |d| d.0);
        let mut interrupted = false;
        let mut window = None;
        let (status, usage) = crate::metrics::while_sampling(pgid, async {
            tokio::select! {
                s = tokio::time::timeout(timeout, child.wait()) => s,
                () = self.moment_reached(moment, &sink, started) => {
                    interrupted = true;
                    let at_ms = started.elapsed().as_millis();
                    let id = self.recorder.fault_start("interrupt", case, Some(format!("{signal} at {at_ms}ms")));
                    window = Some(id);
                    let _ = killpg(Pid::from_raw(pgid), signal);
                    match tokio::time::timeout(EXIT_GRACE, child.wait()).await {
                        Ok(s) => Ok(s),
                        Err(e) => {
                            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
                            Err(e)
                        }
                    }
                }
            }
        })
        .await;
        let elapsed = started.elapsed();
        if !matches!(status, Ok(Ok(_))) {
            // Timed out (or not reaped): the group goes now, so its pipes close.
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
        let drain = Duration::from_secs(5);
        let out = tokio::time::timeout(drain, out).await.ok().and_then(Result::ok).unwrap_or_default();
        let err = tokio::time::timeout(drain, err).await.ok().and_then(Result::ok).unwrap_or_default();
        let matches = self.count_matches(&sink);
        let outcome = match status {
            Err(_) => Outcome::info(format!("no exit within {timeout:?}; killed")),
            Ok(Err(e)) => Outcome::info(format!("wait: {e}")),
            Ok(Ok(status)) => {
                let reply = crate::client::Reply { exit: status.code(), out, err, status: None };
                let described = crate::supervisor::describe_exit(status);
                let done =
                    shakedown_spec::ActionSpec { f: "job".into(), ok: self.spec.done.clone(), ..Default::default() };
                let o = crate::client::classify(&done, &reply);
                match (interrupted, o.op_type) {
                    (true, shakedown_history::OpType::Ok) => o,
                    (true, _) => Outcome::info(format!("interrupted by {signal}: {described}")),
                    (false, shakedown_history::OpType::Ok) => o,
                    (false, _) => Outcome::fail(format!("{described}; {}", tail(&reply.err, &reply.out))),
                }
            }
        };
        if let Some(id) = window {
            self.recorder.fault_end(id, "interrupt", case, None);
        }
        Attempt { outcome, interrupted, elapsed, matches, usage }
    }

    async fn moment_reached(&self, moment: Moment, sink: &LogSink, started: Instant) {
        match moment {
            Moment::Never => std::future::pending().await,
            Moment::After(d) => tokio::time::sleep_until((started + d).into()).await,
            Moment::NthMatch(n) => {
                while self.count_matches(sink) < n {
                    let _ = tokio::time::timeout(Duration::from_millis(20), sink.notify.notified()).await;
                }
            }
        }
    }

    /// Output lines so far that match `at.log`.
    fn count_matches(&self, sink: &LogSink) -> u64 {
        let Some(mut m) = self.spec.at.as_ref().and_then(|a| a.log.as_ref()).map(log_match) else { return 0 };
        // The job's output is the only source here, whatever the match names.
        m.source = None;
        let lines = sink.lines_from(0);
        let entries =
            lines.iter().filter(|l| l.stream != "sys").map(|l| parse_line(&LogFormat::Json, "job", &l.text, 0, None));
        entries.filter(|e| m.matches(e)).count() as u64
    }

    /// Damages `file` and records the damage as a fault window.
    fn corrupt(&self, case: &str, dir: &Path, how: CorruptHow, file: &Template, rng: &mut ChaCha8Rng) {
        let path = match render_in(&self.ctx, file, dir) {
            Ok(p) => dir.join(p),
            Err(e) => {
                self.recorder.service(case, "corrupt failed", false, Some(e));
                return;
            }
        };
        let detail = format!("{} {}", how.as_str(), path.display());
        if !path.exists() {
            // Interrupted before the job wrote it: nothing to damage, and the
            // case is judged as an undamaged one.
            self.recorder.service(case, "corrupt skipped", true, Some(format!("{detail}: no such file yet")));
            return;
        }
        let id = self.recorder.fault_start("corrupt", case, Some(detail));
        let problem = damage(&path, how, rng).err();
        self.recorder.fault_end(id, "corrupt", case, problem);
    }

    async fn final_state(&self, case: &str, dir: &Path) -> Snapshot {
        let source = match literal_source(&self.ctx, &self.spec.compare, dir) {
            Ok(s) => s,
            Err(e) => return Snapshot::failed(RESUME, case, "final", e),
        };
        match crate::snapshot::read(&self.ctx, &source, None).await {
            Ok(content) => Snapshot::ok(RESUME, case, "final", content),
            Err(e) => Snapshot::failed(RESUME, case, "final", e.to_string()),
        }
    }

    /// The state file as JSON (or its raw text when it does not parse).
    async fn state_file(&self, case: &str, dir: &Path, taken: &str) -> Snapshot {
        let Some(t) = &self.spec.state_file else { return Snapshot::failed(RESUME, case, taken, "no state_file") };
        let path = match render_in(&self.ctx, t, dir) {
            Ok(p) => dir.join(p),
            Err(e) => return Snapshot::failed(RESUME, case, taken, e),
        };
        match std::fs::read(&path) {
            // Interrupted before it first wrote one: nothing to look at, nothing wrong.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Snapshot::failed(RESUME, case, taken, format!("absent: {} does not exist", path.display()))
            }
            Err(e) => Snapshot::failed(RESUME, case, taken, format!("read {}: {e}", path.display())),
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes).into_owned();
                let value = serde_json::from_str::<Value>(&text).unwrap_or(json!({ "unparsed": text }));
                Snapshot::ok(RESUME, case, taken, StateContent::json(value))
            }
        }
    }

    /// The state schema, read once, for the check to validate state files with.
    fn schema_snapshot(&self) -> Vec<Snapshot> {
        let Some(t) = &self.spec.state_schema else { return Vec::new() };
        let path = match self.ctx.render(t, &mut Scope::default()) {
            Ok(p) => self.ctx.scenario_dir.join(p),
            Err(e) => return vec![Snapshot::failed(RESUME, "schema", "schema", e.to_string())],
        };
        let snap = std::fs::read_to_string(&path)
            .map_err(|e| format!("read {}: {e}", path.display()))
            .and_then(|t| serde_json::from_str::<Value>(&t).map_err(|e| format!("{}: not JSON: {e}", path.display())));
        vec![match snap {
            Ok(v) => Snapshot::ok(RESUME, "schema", "schema", StateContent::json(v)),
            Err(e) => Snapshot::failed(RESUME, "schema", "schema", e),
        }]
    }
}

/// A case template rendered: `{case.dir}` is `dir`.
fn render_in(ctx: &Context, t: &Template, dir: &Path) -> Result<String, String> {
    ctx.render(t, &mut Scope { case_dir: Some(dir), ..Scope::default() }).map_err(|e| e.to_string())
}

/// The compare source with `{case.dir}` filled in, as literal templates;
/// file paths relative to the case directory.
fn literal_source(ctx: &Context, source: &StateSource, dir: &Path) -> Result<StateSource, String> {
    let literal = |text: &str| Template::parse(&text.replace('{', "{{").replace('}', "}}")).map_err(|e| e.to_string());
    let path = |t: &Template| literal(&dir.join(render_in(ctx, t, dir)?).display().to_string());
    let text = |t: &Template| literal(&render_in(ctx, t, dir)?);
    Ok(StateSource {
        sqlite: source.sqlite.as_ref().map(path).transpose()?,
        postgres: source.postgres.as_ref().map(text).transpose()?,
        duckdb: source.duckdb.as_ref().map(path).transpose()?,
        query: source.query.as_ref().map(text).transpose()?,
        command: source.command.as_ref().map(|c| c.iter().map(text).collect::<Result<_, _>>()).transpose()?,
        tree: source.tree.as_ref().map(path).transpose()?,
        timeout: source.timeout,
    })
}

fn damage(path: &Path, how: CorruptHow, rng: &mut ChaCha8Rng) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("{}: {e}", path.display());
    match how {
        CorruptHow::Delete => std::fs::remove_file(path).map_err(fail),
        CorruptHow::Empty => std::fs::write(path, b"").map_err(fail),
        CorruptHow::Truncate => {
            let len = std::fs::metadata(path).map_err(fail)?.len();
            let f = std::fs::OpenOptions::new().write(true).open(path).map_err(fail)?;
            f.set_len(len / 2).map_err(fail)
        }
        CorruptHow::Bitflip => {
            let mut bytes = std::fs::read(path).map_err(fail)?;
            if bytes.is_empty() {
                return Err(format!("{}: empty, no bit to flip", path.display()));
            }
            let i = rng.gen_range(0..bytes.len());
            bytes[i] ^= 1 << rng.gen_range(0..8);
            std::fs::write(path, bytes).map_err(fail)
        }
    }
}

fn case_number(case: &str) -> u64 {
    case.rsplit('-').next().and_then(|n| n.parse().ok()).unwrap_or(0)
}

/// The last lines of what a failed attempt printed.
fn tail(err: &str, out: &str) -> String {
    let text = if err.trim().is_empty() { out } else { err };
    let lines: Vec<&str> = text.lines().rev().take(3).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn damage_truncates_empties_flips_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.json");
        let mut rng = stream_rng(1, 1);
        std::fs::write(&p, b"0123456789").unwrap();
        damage(&p, CorruptHow::Truncate, &mut rng).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"01234");
        damage(&p, CorruptHow::Bitflip, &mut rng).unwrap();
        let flipped = std::fs::read(&p).unwrap();
        let diff: u32 = flipped.iter().zip(b"01234").map(|(a, b)| (a ^ b).count_ones()).sum();
        assert_eq!(diff, 1, "exactly one bit");
        damage(&p, CorruptHow::Empty, &mut rng).unwrap();
        assert!(std::fs::read(&p).unwrap().is_empty());
        assert!(damage(&p, CorruptHow::Bitflip, &mut rng).unwrap_err().contains("empty"));
        damage(&p, CorruptHow::Delete, &mut rng).unwrap();
        assert!(!p.exists());
        assert!(damage(&p, CorruptHow::Delete, &mut rng).is_err());
    }
}
