//! Benchmarks of the linearizability checker, alone and side by side with the `porcupine-rs` port.
//!
//! `cargo bench -p shakedown-check --bench linear` prints a comparison table
//! (median of several runs, with ratios) and then runs the criterion benches.

use criterion::Criterion;
use serde_json::{json, Value};
use shakedown_check::linear::{check, model_by_name, Budget};
use shakedown_check::Verdict;
use shakedown_history::{EventKind, Header, History, HistoryBuilder, OpType, ProcessId};
use std::collections::HashMap;
use std::time::{Duration, Instant};

#[path = "peer/mod.rs"]
mod peer;

use peer::{pcas_op, pkv_op, to_porcupine, PCas, PKv};

/// A small deterministic generator, so every run benchmarks the same histories.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A client's op in flight: invoked, and perhaps already applied to the store
/// (its linearization point), awaiting its completion.
struct InFlight {
    applied: Option<(OpType, Value)>,
}

/// Simulates `n_clients` clients against a linearizable store: each op takes
/// effect at a random moment between its invocation and its completion, so
/// ops overlap. About 1% of updates time out (`info`) after taking effect;
/// the client then continues under a fresh process id.
fn simulate<S>(
    seed: u64,
    lost_timeouts: bool,
    n_ops: usize,
    n_clients: u64,
    mut store: S,
    mut invoke: impl FnMut(&mut Rng) -> (&'static str, Value),
    mut apply: impl FnMut(&mut S, &str, &Value) -> (OpType, Value),
) -> History {
    let mut rng = Rng(seed);
    let mut b = HistoryBuilder::new(Header::new("bench", seed));
    let mut process: Vec<u64> = (0..n_clients).collect();
    let mut flight: HashMap<u64, (String, Value, InFlight)> = HashMap::new();
    let (mut invoked, mut t) = (0, 0u64);
    while invoked < n_ops || !flight.is_empty() {
        t += 1;
        let c = rng.below(n_clients);
        let p = process[c as usize];
        match flight.remove(&c) {
            None if invoked < n_ops => {
                let (f, v) = invoke(&mut rng);
                b.invoke(t, ProcessId(p), "client", f, v.clone());
                flight.insert(c, (f.to_string(), v, InFlight { applied: None }));
                invoked += 1;
            }
            None => {}
            Some((f, _, InFlight { applied: None })) if lost_timeouts && f != "read" && rng.below(100) == 0 => {
                // Timed out before taking effect: it never happens.
                b.complete(t, ProcessId(p), OpType::Info, json!(null), Some("timeout".into()));
                process[c as usize] += n_clients;
            }
            Some((f, v, InFlight { applied: None })) => {
                let applied = Some(apply(&mut store, &f, &v));
                flight.insert(c, (f, v, InFlight { applied }));
            }
            Some((f, _, InFlight { applied: Some((op_type, out)) })) => {
                if op_type == OpType::Ok && f != "get" && f != "read" && rng.below(100) == 0 {
                    b.complete(t, ProcessId(p), OpType::Info, json!(null), Some("timeout".into()));
                    process[c as usize] += n_clients;
                } else {
                    b.complete(t, ProcessId(p), op_type, out, None);
                }
            }
        }
    }
    b.finish()
}

fn kv_history(n_ops: usize, n_keys: u64, n_clients: u64) -> History {
    let invoke = move |rng: &mut Rng| {
        let key = format!("k{}", rng.below(n_keys));
        match rng.below(3) {
            0 => ("get", json!({"key": key})),
            1 => ("put", json!({"key": key, "value": format!("v{}", rng.below(100))})),
            _ => ("append", json!({"key": key, "value": format!("{}", rng.below(10))})),
        }
    };
    let apply = |store: &mut HashMap<String, String>, f: &str, v: &Value| {
        let key = v["key"].as_str().unwrap().to_string();
        match f {
            "get" => {
                let value = store.get(&key).cloned().unwrap_or_default();
                (OpType::Ok, json!({"key": key, "value": value}))
            }
            "put" => {
                store.insert(key, v["value"].as_str().unwrap().to_string());
                (OpType::Ok, json!(null))
            }
            _ => {
                store.entry(key).or_default().push_str(v["value"].as_str().unwrap());
                (OpType::Ok, json!(null))
            }
        }
    };
    simulate(7, false, n_ops, n_clients, HashMap::new(), invoke, apply)
}

fn cas_history(seed: u64, lost_timeouts: bool, n_ops: usize, n_clients: u64) -> History {
    let invoke = |rng: &mut Rng| match rng.below(3) {
        0 => ("read", json!(null)),
        1 => ("write", json!(rng.below(5))),
        _ => ("cas", json!([rng.below(5), rng.below(5)])),
    };
    let apply = |reg: &mut Option<i64>, f: &str, v: &Value| match f {
        "read" => (OpType::Ok, json!(*reg)),
        "write" => {
            *reg = v.as_i64();
            (OpType::Ok, json!(null))
        }
        _ if *reg == v[0].as_i64() => {
            *reg = v[1].as_i64();
            (OpType::Ok, json!(null))
        }
        _ => (OpType::Fail, json!(null)),
    };
    simulate(seed, lost_timeouts, n_ops, n_clients, None, invoke, apply)
}

// ---- the same checks through porcupine-rs ----

fn median_time<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut times = Vec::with_capacity(runs);
    let mut last = None;
    for _ in 0..runs {
        let start = Instant::now();
        last = Some(f());
        times.push(start.elapsed());
    }
    times.sort();
    (times[runs / 2], last.expect("at least one run"))
}

fn shakedown(model: &str, h: &History) -> Verdict {
    check(h, model_by_name(model).unwrap().as_ref(), &Budget::timeout(Duration::from_secs(60))).verdict
}

fn compare(name: &str, runs: usize, model: &str, h: &History, porcupine: impl FnMut() -> bool) {
    let (ours, verdict) = median_time(runs, || shakedown(model, h));
    let (theirs, ok) = median_time(runs, porcupine);
    println!(
        "{name:<34} {:>7} ops  shakedown {:>9.2?} ({verdict})  porcupine-rs {:>9.2?} ({})  ratio porcupine/shakedown {:.2}x",
        h.ops().len(),
        ours,
        theirs,
        if ok { "valid" } else { "invalid" },
        theirs.as_secs_f64() / ours.as_secs_f64()
    );
}

/// The side-by-side table; runs only under `cargo bench`, not `cargo test`.
fn print_comparison() {
    println!("median of runs; shakedown from History (incl. pairing and parsing), porcupine-rs from its own ops");
    for (seed, n_ops, n_clients) in [(1, 200, 5), (2, 400, 10), (3, 800, 10), (4, 20_000, 10)] {
        let h = cas_history(seed, false, n_ops, n_clients);
        let ops = to_porcupine::<PCas>(&h, pcas_op);
        let name = format!("cas-register {n_ops} ops, {n_clients} clients");
        compare(&name, 11, "cas-register", &h, || porcupine_rs::check_operations(&ops));
    }
    let mut h = cas_history(2, false, 400, 10);
    let last_read = h.events.iter().rposition(|e| matches!(&e.kind, EventKind::Ok(c) if c.f == "read")).unwrap();
    if let EventKind::Ok(c) = &mut h.events[last_read].kind {
        c.value = json!(99); // never written: the search must exhaust every order
    }
    let ops = to_porcupine::<PCas>(&h, pcas_op);
    compare("cas-register 400 ops, bad last read", 11, "cas-register", &h, || porcupine_rs::check_operations(&ops));
    for n_ops in [2_000, 20_000] {
        let h = cas_history(5, true, n_ops, 10);
        let (ours, verdict) = median_time(3, || shakedown("cas-register", &h));
        let name = format!("cas-register {n_ops} ops, lost timeouts");
        println!("{name:<34} {n_ops:>7} ops  shakedown {ours:>9.2?} ({verdict})  (not run on porcupine-rs: it linearizes every op, so a lost write needs a model that encodes it)");
    }
    let h = kv_history(100_000, 1_000, 10);
    let ops = to_porcupine::<PKv>(&h, pkv_op);
    compare("kv 100k ops, 1000 keys, 10 clients", 5, "kv", &h, || porcupine_rs::check_operations(&ops));
}

fn benches(c: &mut Criterion) {
    let kv = kv_history(100_000, 1_000, 10);
    assert_eq!(shakedown("kv", &kv), Verdict::Valid, "the simulated store is linearizable");
    let mut group = c.benchmark_group("linear");
    group.sample_size(10);
    group.bench_function("kv_100k_ops_1000_keys", |b| b.iter(|| shakedown("kv", &kv)));
    let cas = cas_history(2, false, 400, 10);
    group.bench_function("cas_register_400_ops", |b| b.iter(|| shakedown("cas-register", &cas)));
    let ops = to_porcupine::<PCas>(&cas, pcas_op);
    group.bench_function("porcupine_rs_cas_register_400_ops", |b| b.iter(|| porcupine_rs::check_operations(&ops)));
    group.finish();
}

fn main() {
    if std::env::args().any(|a| a == "--bench") {
        print_comparison();
    }
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c);
    c.final_summary();
}
