//! Scenario parsing: valid files load, and every kind of bad input names its place.

const BASE: &str = r#"
name = "t"
clients = 2
duration = "2s"

[service.kv]
command = ["shakedown-testbed", "kv", "--listen", "127.0.0.1:{port}", "--data", "{dir}/data"]
ready = { log = "listening" }

[client]
kind = "http"
base = "http://127.0.0.1:{service.kv.port}"

[[action]]
f = "add"
value = "{seq}"
request = { method = "POST", path = "/set/s/{value}" }

[[action]]
f = "read"
weight = 0
request = { path = "/set/s" }
result = "body:json"

[[fault]]
kind = "kill"
target = "kv"
every = "1s"

[[check]]
kind = "set"
"#;

/// Parses `BASE` with `edit` applied and expects an error at `line:col` containing `want`.
#[track_caller]
fn check_err(edit: impl Fn(&str) -> String, want_at: &str, want: &str) {
    let text = edit(BASE);
    let err = shakedown_spec::parse(&text, "s.toml").expect_err("must be rejected").to_string();
    assert!(err.contains(&format!("s.toml:{want_at}: ")), "want at {want_at}, got:\n{err}");
    assert!(err.contains(want), "want {want:?}, got:\n{err}");
}

#[test]
fn base_scenario_is_valid() {
    let s = shakedown_spec::parse(BASE, "s.toml").unwrap();
    assert_eq!(s.clients.unwrap().get(), 2);
    assert_eq!(s.action.len(), 2);
    assert_eq!(s.service["kv"].command.len(), 6);
}

#[test]
fn unknown_key_is_located() {
    check_err(|t| t.replace("clients = 2", "clientz = 2"), "3:1", "unknown key `clientz`");
    check_err(|t| t.replace("kind = \"kill\"", "kind = \"kill\"\nwhence = 3"), "27:1", "unknown key `whence`");
}

#[test]
fn wrong_type_is_located() {
    check_err(|t| t.replace("clients = 2", "clients = \"two\""), "3:11", "expected");
    check_err(|t| t.replace("clients = 2", "clients = 0"), "3:11", "nonzero");
}

#[test]
fn bad_duration_is_located() {
    check_err(|t| t.replace("duration = \"2s\"", "duration = \"2 parsecs\""), "4:12", "invalid duration");
}

#[test]
fn undefined_service_is_located() {
    check_err(
        |t| t.replace("target = \"kv\"", "target = \"db\""),
        "27:10",
        "fault target `db` is not a defined service; expected one of the services: `kv`",
    );
    check_err(|t| t.replace("{service.kv.port}", "{service.db.port}"), "12:8", "service `db` is not defined");
}

#[test]
fn bad_enums_and_templates_are_located() {
    check_err(|t| t.replace("kind = \"kill\"", "kind = \"explode\""), "26:8", "unknown variant `explode`");
    check_err(|t| t.replace("{seq}", "{sequence}"), "16:9", "unknown placeholder `{sequence}`");
    check_err(|t| t.replace("\"listening\"", "\"(unclosed\""), "8:17", "invalid regular expression");
    check_err(|t| t.replace("body:json", "body:yaml"), "23:10", "unknown result parser");
}

#[test]
fn references_are_checked() {
    check_err(|t| format!("{t}add = \"insert\"\n"), "32:7", "check `set` names f `insert`, which no action has");
    check_err(|t| t.replace("weight = 0", "target = \"ids\""), "21:10", "pool `ids` is never filled");
    check_err(
        |t| t.replace("clients = 2", "clients = 2\nfinally = [\"reed\"]"),
        "4:12",
        "`finally` names action `reed`",
    );
    check_err(|t| t.replace("every = \"1s\"", "at = [\"1s\"]\nevery = \"1s\""), "29:9", "both `at` and `every`");
    check_err(|t| t.replace("ready = { log = \"listening\" }", "ready = { }"), "6:2", "exactly one of");
}

#[test]
fn placeholders_fit_their_place() {
    check_err(|t| t.replace("{service.kv.port}\"", "{port}\""), "12:8", "`{port}` only applies inside a service");
    check_err(|t| t.replace("{dir}/data", "{value}"), "7:81", "only apply inside actions");
}

#[test]
fn value_and_build_placeholders_are_checked() {
    check_err(|t| t.replace("value = \"{seq}\"", "value = \"{value}\""), "16:9", "cannot be used in the value itself");
    check_err(
        |t| format!("{t}[[build]]\ncommand = [\"make\", \"-C\", \"{{service.kv.dir}}\"]\n"),
        "33:26",
        "do not exist yet when builds run",
    );
}

#[test]
fn check_keys_fit_their_kind() {
    check_err(
        |t| format!("{t}model = \"kv\"\n"),
        "32:9",
        "`model` does not apply to kind `set`; it takes `add`, `read`",
    );
    check_err(|t| t.replace("kind = \"set\"", "kind = \"linearizable\""), "31:8", "needs `model`");
    check_err(
        |t| t.replace("kind = \"set\"", "kind = \"linearizable\"\nmodel = \"regster\""),
        "32:9",
        "unknown model `regster`",
    );
    check_err(
        |t| t.replace("kind = \"set\"", "kind = \"total-queue\"\nmode = \"twice\""),
        "32:8",
        "unknown mode `twice`",
    );
    check_err(|t| t.replace("kind = \"set\"", "kind = \"bank\""), "31:8", "needs `total`");
    check_err(|t| t.replace("kind = \"set\"", "kind = \"monotonic\"\nkey = \"key\""), "32:7", "not a JSON pointer");
    let ok = BASE.replace("kind = \"set\"", "kind = \"linearizable\"\nmodel = \"cas-register\"\ntimeout = \"5s\"");
    assert!(shakedown_spec::parse(&ok, "s.toml").is_ok());
}

#[test]
fn syntax_errors_are_located() {
    check_err(|t| t.replace("clients = 2", "clients = = 2"), "3:11", "");
}

/// Every scenario shipped in `examples/` parses and validates.
#[test]
fn every_example_scenario_is_valid() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut dirs = vec![root];
    let mut seen = 0;
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            // `_common/`, `_x.toml`: includes, not scenarios (they are checked through the scenarios including them).
            if path.file_name().is_some_and(|n| n.to_string_lossy().starts_with('_')) {
                continue;
            }
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "toml") {
                if let Err(e) = shakedown_spec::load(&path) {
                    panic!("{e}");
                }
                seen += 1;
            }
        }
    }
    assert!(seen >= 20, "found only {seen} example scenarios");
}

/// Replaces the base scenario's kill fault with `fault` (and adds `extra` at the top level).
fn with_fault(fault: &str, extra: &str) -> impl Fn(&str) -> String {
    let (fault, extra) = (fault.to_string(), extra.to_string());
    move |t: &str| {
        let t =
            t.replace("[[fault]]\nkind = \"kill\"\ntarget = \"kv\"\nevery = \"1s\"", &format!("[[fault]]\n{fault}"));
        format!("{t}\n{extra}")
    }
}

#[test]
fn environment_faults_are_checked_against_their_kind() {
    let link = "[link.api]\nupstream = \"127.0.0.1:{service.kv.port}\"\n";
    let cases = [
        ("kind = \"toxic\"\ntarget = \"kv\"\nevery = \"1s\"", "", "fault target `kv` is not a defined link"),
        ("kind = \"toxic\"\ntarget = \"api\"\nevery = \"1s\"", link, "a `toxic` fault needs `toxic`"),
        ("kind = \"toxic\"\ntarget = \"api\"\nevery = \"1s\"\ntoxic = { type = \"latency\" }", link, "missing field `latency`"),
        ("kind = \"toxic\"\ntarget = \"api\"\nevery = \"1s\"\ntoxic = { type = \"wobble\" }", link, "unknown variant `wobble`"),
        ("kind = \"toxic\"\ntarget = \"api\"\nevery = \"1s\"\ntoxic = { type = \"bandwidth\", rate = 1 }\ntoxicity = 2.0", link, "toxicity 2 is not a probability"),
        ("kind = \"kill\"\ntarget = \"kv\"\nevery = \"1s\"\nmode = \"halves\"", "", "fault `kill`: `mode` does not apply"),
        ("kind = \"http\"\ntarget = \"api\"\nevery = \"1s\"\nhttp = { status = 503 }", link, "http faults need `kind = \"http\"` on the link"),
        ("kind = \"partition\"\ntarget = \"kv\"\nevery = \"1s\"", "", "partitions need `[network] namespaces = true`"),
        ("kind = \"partition\"\ntarget = \"kv\"\nevery = \"1s\"\ncut = [\"zz\"]", "", "`zz` in `cut` is not one of the partition's targets (kv)"),
        ("kind = \"partition\"\ntarget = \"kv\"\nevery = \"1s\"\ncut = \"kv\"", "", "`cut` must name some of the targets but not all"),
        ("kind = \"partition\"\ntarget = \"kv\"\nevery = \"1s\"\ncut = \"kv\"\nmode = \"halves\"", "", "`cut` and `mode` both choose the split"),
        ("kind = \"kill\"\ntarget = \"kv\"\nevery = \"1s\"\ncut = \"kv\"", "", "fault `kill`: `cut` does not apply"),
        ("kind = \"clock\"\ntarget = \"kv\"\nevery = \"1s\"", "", "needs `offset`"),
        ("kind = \"clock\"\ntarget = \"kv\"\nevery = \"1s\"\noffset = \"soon\"", "", "expected a signed duration"),
        ("kind = \"disk-full\"\ntarget = \"kv\"\nevery = \"1s\"", "", "service `kv` has no `disk`"),
    ];
    for (fault, extra, want) in cases {
        let text = with_fault(fault, extra)(BASE);
        let err = shakedown_spec::parse(&text, "s.toml").expect_err(fault).to_string();
        assert!(err.contains(want), "{fault}: want {want:?}, got:\n{err}");
        assert!(err.starts_with("s.toml:") && !err.starts_with("s.toml:0:"), "located: {err}");
    }
    let http = "[link.api]\nupstream = \"127.0.0.1:{service.kv.port}\"\nkind = \"http\"\n";
    let both = with_fault(
        "kind = \"http\"\ntarget = \"api\"\nevery = \"1s\"\nhttp = { status = 503, abort = \"after\" }",
        http,
    )(BASE);
    assert!(shakedown_spec::parse(&both, "s.toml")
        .unwrap_err()
        .to_string()
        .contains("exactly one of `status`, `delay`, `abort`"));
    let ok = with_fault("kind = \"http\"\ntarget = \"api\"\nevery = \"1s\"\nhttp = { status = 429, retry_after = 1, probability = 0.5 }", http)(BASE);
    shakedown_spec::parse(&ok, "s.toml").unwrap();
}

#[test]
fn link_and_host_placeholders_are_checked() {
    let bad_link =
        BASE.replace("base = \"http://127.0.0.1:{service.kv.port}\"", "base = \"http://127.0.0.1:{link.nope.port}\"");
    assert!(shakedown_spec::parse(&bad_link, "s.toml")
        .unwrap_err()
        .to_string()
        .contains("link `nope` is not defined; there are no links"));
    let bad_host = BASE.replace("base = \"http://127.0.0.1:{service.kv.port}\"", "base = \"http://{host}:1\"");
    assert!(shakedown_spec::parse(&bad_host, "s.toml")
        .unwrap_err()
        .to_string()
        .contains("`{host}` only applies inside a service"));
    let good = BASE.replace(
        "base = \"http://127.0.0.1:{service.kv.port}\"",
        "base = \"http://{service.kv.host}:{service.kv.port}\"",
    );
    shakedown_spec::parse(&good, "s.toml").unwrap();
}

#[test]
fn a_down_fault_on_an_http_link_is_refused_with_what_to_use_instead() {
    let text = format!(
        "{BASE}\n[link.api]\nupstream = \"127.0.0.1:{{service.kv.port}}\"\nkind = \"http\"\n\n[[fault]]\nkind = \"down\"\ntarget = \"api\"\nevery = \"1s\"\n"
    );
    let err = shakedown_spec::parse(&text, "s.toml").unwrap_err().to_string();
    assert!(err.contains("link `api` is an http link; `down` needs a tcp link"), "{err}");
    let tcp = text.replace("kind = \"http\"\n\n[[fault]]\nkind = \"down\"", "\n[[fault]]\nkind = \"down\"");
    let ok = shakedown_spec::parse(&tcp, "s.toml");
    assert!(ok.is_ok(), "a tcp link can go down: {}", ok.unwrap_err());
}
