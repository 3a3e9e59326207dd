//! Side by side on Porcupine's own test files: shakedown against the
//! `porcupine-rs` port, checking only (import and conversion excluded).
//!
//! `cargo bench -p shakedown-check --bench porcupine_files` reads every file of
//! `<workspace>/testdata/porcupine/` (the etcd logs with the
//! cas-register model, the kv files with the kv model), checks each with both
//! checkers, interleaved, `REPS` times, and prints per-file medians, the
//! totals, and Porcupine's Go times from `PORCUPINE_TIMES.tsv` for reference.
//! Both checkers' verdicts must equal `VERDICTS.tsv`. `SHAKEDOWN_PORCUPINE_DIR`
//! names another folder laid out the same way.

use shakedown_check::linear::{check, model_by_name, Budget};
use shakedown_check::Verdict;
use shakedown_history::import::read_any;
use std::collections::HashMap;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Repetitions per file per checker; the medians are reported.
const REPS: usize = 15;

/// About how long one repetition of a fast check runs: it checks the file
/// this long in a row and reports the time per check.
const BATCH_TIME: Duration = Duration::from_micros(300);

// ---- the checks through porcupine-rs, with shakedown's semantics ----

#[path = "peer/mod.rs"]
mod peer;

use peer::{pcas_op, pkv_op, to_porcupine, PCas, PKv};

// ---- the comparison ----

fn tsv(path: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines().skip(1).filter(|l| !l.trim().is_empty()).map(|l| l.split('\t').map(String::from).collect()).collect()
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn time<T>(f: impl FnOnce() -> T) -> (Duration, T) {
    let start = Instant::now();
    let out = black_box(f());
    (start.elapsed(), out)
}

struct Row {
    file: String,
    ops: usize,
    ours: Duration,
    theirs: Duration,
    go: Option<f64>,
}

/// Checks one file `REPS` times with each checker, interleaved; asserts both verdicts.
fn compare(dir: &Path, file: &str, expected: bool, go: Option<f64>) -> Row {
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (h, _) = read_any(&text, None, file).unwrap_or_else(|e| panic!("{file}: {e}"));
    let kv = file.starts_with("kv/");
    let model = model_by_name(if kv { "kv" } else { "cas-register" }).unwrap();
    let pcas = (!kv).then(|| to_porcupine::<PCas>(&h, pcas_op));
    let pkv = kv.then(|| to_porcupine::<PKv>(&h, pkv_op));
    let porcupine = || match (&pcas, &pkv) {
        (Some(ops), _) => porcupine_rs::check_operations(ops),
        (_, Some(ops)) => porcupine_rs::check_operations(ops),
        _ => unreachable!(),
    };
    let want = if expected { Verdict::Valid } else { Verdict::Invalid };
    let ours_once = || {
        let r = check(&h, model.as_ref(), &Budget::default());
        let summary = &r.summary;
        assert_eq!(r.verdict, want, "{file}: shakedown says {} ({summary}); VERDICTS.tsv says {expected}", r.verdict);
    };
    let theirs_once = || {
        let ok = porcupine();
        assert_eq!(ok, expected, "{file}: porcupine-rs says {ok}; VERDICTS.tsv says {expected}");
    };
    // One untimed run each (warm caches), which also sets the batch size: a
    // repetition times `batch` checks in a row, so that checks of a few
    // microseconds are not lost in timer and scheduler noise.
    let (warm_ours, ()) = time(ours_once);
    let (warm_theirs, ()) = time(theirs_once);
    let slowest = warm_ours.max(warm_theirs).max(Duration::from_nanos(100));
    let batch = (BATCH_TIME.as_nanos() / slowest.as_nanos()).clamp(1, 1000) as u32;
    let timed = |f: &dyn Fn()| {
        let (t, ()) = time(|| (0..batch).for_each(|_| f()));
        t / batch
    };
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for rep in 0..REPS {
        // Alternate which goes first, so neither always runs on a warm cache.
        if rep % 2 == 0 {
            ours.push(timed(&ours_once));
            theirs.push(timed(&theirs_once));
        } else {
            theirs.push(timed(&theirs_once));
            ours.push(timed(&ours_once));
        }
    }
    Row { file: file.to_string(), ops: h.ops().len(), ours: median(ours), theirs: median(theirs), go }
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    // SHAKEDOWN_PORCUPINE_DIR points elsewhere, e.g. at further histories of the same kinds.
    let dir: PathBuf =
        std::env::var_os("SHAKEDOWN_PORCUPINE_DIR").map_or_else(|| workspace.join("testdata/porcupine"), PathBuf::from);
    assert!(dir.join("VERDICTS.tsv").is_file(), "no Porcupine test histories at {}", dir.display());
    // Porcupine's Go times, for reference only; a folder may lack them.
    let times = dir.join("PORCUPINE_TIMES.tsv");
    let go: HashMap<String, f64> = if times.is_file() {
        tsv(&times).into_iter().filter_map(|r| Some((r[0].clone(), r.get(2)?.parse().ok()?))).collect()
    } else {
        HashMap::new()
    };
    let verdicts = tsv(&dir.join("VERDICTS.tsv"));
    println!(
        "checking only (import excluded); median of {REPS} interleaved repetitions per file per checker \
         (a repetition of a fast check runs it ~{BATCH_TIME:?} in a row)"
    );
    println!(
        "{:<20} {:>5} {:>14} {:>16} {:>8} {:>10}  verdicts",
        "file", "ops", "shakedown µs", "porcupine-rs µs", "rs/ours", "Go µs"
    );
    let mut rows = Vec::new();
    for v in &verdicts {
        let expected = match v[1].as_str() {
            "true" => true,
            "false" => false,
            other => panic!("{}: verdict {other:?} is neither true nor false", v[0]),
        };
        let row = compare(&dir, &v[0], expected, go.get(&v[0]).copied());
        println!(
            "{:<20} {:>5} {:>14.1} {:>16.1} {:>7.2}x {:>10}  agree ({})",
            row.file,
            row.ops,
            us(row.ours),
            us(row.theirs),
            row.theirs.as_secs_f64() / row.ours.as_secs_f64(),
            row.go.map_or("-".to_string(), |ms| format!("{:.1}", ms * 1000.0)),
            if expected { "linearizable" } else { "not linearizable" },
        );
        rows.push(row);
    }
    let ours: Duration = rows.iter().map(|r| r.ours).sum();
    let theirs: Duration = rows.iter().map(|r| r.theirs).sum();
    let go_ms: f64 = rows.iter().filter_map(|r| r.go).sum();
    let worst = rows
        .iter()
        .min_by(|a, b| {
            let ra = a.theirs.as_secs_f64() / a.ours.as_secs_f64();
            let rb = b.theirs.as_secs_f64() / b.ours.as_secs_f64();
            ra.total_cmp(&rb)
        })
        .expect("at least one file");
    let all_go = rows.iter().all(|r| r.go.is_some());
    println!(
        "total ({} files): shakedown {:.2} ms, porcupine-rs {:.2} ms, Porcupine (Go) {}",
        rows.len(),
        ours.as_secs_f64() * 1e3,
        theirs.as_secs_f64() * 1e3,
        if all_go { format!("{go_ms:.2} ms") } else { "not known for every file".to_string() }
    );
    println!(
        "ratio porcupine-rs/shakedown {:.2}x{}; worst file {} at {:.2}x (porcupine-rs/shakedown)",
        theirs.as_secs_f64() / ours.as_secs_f64(),
        if all_go { format!(", Go/shakedown {:.2}x", go_ms / 1e3 / ours.as_secs_f64()) } else { String::new() },
        worst.file,
        worst.theirs.as_secs_f64() / worst.ours.as_secs_f64()
    );
}
