//! A real 3-node etcd cluster (Debian's etcd-server, installed by
//! scripts/install-deps), each node in its own network namespace, under
//! partitions, a kill and a pause: linearizable reads pass, serializable
//! reads are caught with a counterexample, and many keys with appends are
//! linearizable per key.

use crate::common::{example, report, run_in_tmp};

/// Runs `examples/etcd/<name>.toml` in place (it includes `_cluster.toml` and
/// names the driver beside it); returns the exit code, the report and stderr.
fn run_example(name: &str) -> (Option<i32>, serde_json::Value, String) {
    assert!(
        std::process::Command::new("etcd").arg("--version").output().is_ok_and(|o| o.status.success()),
        "etcd is not installed: run scripts/install-deps (the test suite's scripts/test does)"
    );
    let (code, err, tmp) = run_in_tmp(&example(&format!("etcd/{name}.toml")), &[]);
    (code, report(&tmp.path().join("out")), err)
}

fn partitions(report: &serde_json::Value) -> usize {
    report["faults"].as_array().map_or(0, |f| f.iter().filter(|f| f["kind"] == "partition").count())
}

#[test]
fn etcd_with_linearizable_reads_passes_under_partitions() {
    let (code, r, err) = run_example("register");
    assert_eq!(code, Some(0), "{err}\n{}", r["checks"]);
    assert_eq!(r["checks"][0]["verdict"], "valid");
    assert!(partitions(&r) >= 2, "partitions were applied: {}", r["faults"]);
    let ok = r["ops"]["by_result"]["ok"].as_u64().unwrap_or_default();
    assert!(ok > 100, "the cluster served the workload: {}", r["ops"]);
}

#[test]
fn etcd_with_serializable_reads_is_caught_with_a_counterexample() {
    let (code, r, err) = run_example("register-serializable");
    assert_eq!(code, Some(1), "{err}\n{}", r["checks"]);
    let check = &r["checks"][0];
    assert_eq!(check["verdict"], "invalid");
    // The search blocks at the first op no order can place: the stale read, or
    // a compare-and-set whose success only a stale value explains.
    let blocked = check["details"]["blocked"]["f"].as_str().unwrap_or("");
    assert!(["read", "cas"].contains(&blocked), "an op is named as unplaceable: {}", check["details"]);
    assert!(check["details"]["blocked"]["index"].is_u64(), "{}", check["details"]);
    assert!(partitions(&r) >= 1, "{}", r["faults"]);
}

#[test]
fn etcd_kv_with_appends_is_linearizable_per_key_under_partitions() {
    let (code, r, err) = run_example("kv");
    assert_eq!(code, Some(0), "{err}\n{}", r["checks"]);
    let check = &r["checks"][0];
    assert_eq!(check["verdict"], "valid");
    assert!(check["details"]["n_partitions"].as_u64() > Some(1), "split per key: {}", check["details"]);
    assert!(partitions(&r) >= 2, "partitions were applied: {}", r["faults"]);
    let appends = r["ops"]["by_action"]["append"]["ok"].as_u64().unwrap_or_default();
    assert!(appends > 50, "appends went through: {}", r["ops"]);
}
