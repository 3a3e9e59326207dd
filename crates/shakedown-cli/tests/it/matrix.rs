//! Matrices: a scenario runs once per cell with `{matrix.KEY}` filled in,
//! `--matrix KEY=VALUE` picks cells, and guards print a one-line skip in the
//! cells they keep a part out of.

use crate::common::{run_text, stderr};

const SCENARIO: &str = r#"
name = "mx"
duration = "1s"
clients = 1
rate = 20

[matrix]
flavour = ["plain", "salted"]

[service.kv]
command = ["shakedown-testbed", "kv", "--listen", "127.0.0.1:{port}", "--data", "{dir}/data-{matrix.flavour}"]
ready = { log = "listening" }

[client]
kind = "http"
base = "http://127.0.0.1:{service.kv.port}"

[[action]]
f = "add"
value = "{seq}"
request = { method = "POST", path = "/set/{matrix.flavour}/{value}" }

[[check]]
kind = "stats"

[[check]]
kind = "unexpected"
name = "salted-only"
only = { flavour = "salted" }
"#;

#[test]
fn every_cell_runs_with_its_values_and_guards_print_their_skip() {
    let (o, _) = run_text(SCENARIO, &[]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("VALID        mx[flavour=plain]") && err.contains("VALID        mx[flavour=salted]"), "{err}");
    assert!(
        err.contains(
            "SKIP         mx[flavour=plain]: check `salted-only` skipped in flavour=plain: only flavour=salted"
        ),
        "{err}"
    );
    assert!(!err.contains("skipped in flavour=salted"), "{err}");
}

#[test]
fn one_cell_is_chosen_from_the_command_line() {
    let (o, r) = run_text(SCENARIO, &["--matrix", "flavour=salted"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert_eq!(r["matrix"]["flavour"], "salted", "a single cell runs as a single scenario: {}", r["matrix"]);
    assert_eq!(r["checks"].as_array().unwrap().len(), 2, "the guarded check runs in its cell");
    assert!(err.contains("--matrix flavour=salted"), "the replay line names the cell: {err}");
    let (o, r) = run_text(SCENARIO, &["--matrix", "flavour=plain"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(r["checks"].as_array().unwrap().len(), 1);
    assert!(stderr(&o).contains("check `salted-only` skipped in flavour=plain"), "{}", stderr(&o));
}

#[test]
fn bad_cells_and_guards_are_usage_errors() {
    let (o, _) = run_text(SCENARIO, &["--matrix", "flavour=peppered"]);
    assert_eq!(o.status.code(), Some(3));
    assert!(
        stderr(&o).contains("no scenario has a matrix dimension `flavour` with the value `peppered`"),
        "{}",
        stderr(&o)
    );
    let (o, _) = run_text(SCENARIO, &["--matrix", "flavour"]);
    assert_eq!(o.status.code(), Some(3));
    let bad_guard = SCENARIO.replace("only = { flavour = \"salted\" }", "only = { flavour = \"peppered\" }");
    let (o, _) = run_text(&bad_guard, &[]);
    assert_eq!(o.status.code(), Some(3));
    assert!(
        stderr(&o)
            .contains("`only` names flavour = `peppered`, which is not one of the matrix's values: plain, salted"),
        "{}",
        stderr(&o)
    );
    let bad_var = SCENARIO.replace("{matrix.flavour}/{value}", "{matrix.colour}/{value}");
    let (o, _) = run_text(&bad_var, &[]);
    assert_eq!(o.status.code(), Some(3));
    assert!(stderr(&o).contains("matrix dimension `colour` is not defined"), "{}", stderr(&o));
}
