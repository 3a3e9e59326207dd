//! Unit tests of the limit rules: each limit accepts its largest value and
//! refuses the next one (or 0 where 0 means nothing), with the location of
//! the value and a message naming the limit.

use crate::limits::*;

/// Top-level keys go before `TABLES`; `tables` are appended after them.
const TABLES: &str = r#"
[service.kv]
command = ["kv"]

[client]
kind = "http"
base = "http://127.0.0.1:{service.kv.port}"

[[action]]
f = "get"
request = { path = "/x" }
"#;

fn scenario(top: &str, tables: &str) -> String {
    format!("name = \"t\"\n{top}\n{TABLES}{tables}")
}

fn parse(text: &str) -> Result<crate::Scenario, String> {
    crate::parse(text, "t.toml").map_err(|e| e.to_string())
}

/// Every case must be refused with `want` in the message.
fn refused(cases: &[(String, &str)]) {
    for (text, want) in cases {
        match parse(text) {
            Ok(_) => panic!("accepted, wanted {want:?}:\n{text}"),
            Err(err) => assert!(err.contains(want), "wanted {want:?} in:\n{err}\nfor:\n{text}"),
        }
    }
}

fn accepted(cases: &[String]) {
    for text in cases {
        if let Err(e) = parse(text) {
            panic!("refused:\n{e}\nfor:\n{text}");
        }
    }
}

#[test]
fn durations_are_capped_and_zero_is_refused_where_it_means_nothing() {
    accepted(&[
        scenario("duration = \"30days\"", ""),
        scenario("", "[service.kv.ready]\nlog = \"up\"\ntimeout = \"1h\"\ninterval = \"1ms\"\n"),
        scenario("", "[service.kv.stop]\ngrace = \"0s\"\ndrain = \"1h\"\n"),
        scenario("", "[[fault]]\nkind = \"kill\"\ntarget = \"kv\"\nat = [\"0s\", \"30days\"]\nfor = \"0s\"\n"),
    ]);
    refused(&[
        (
            scenario("duration = \"18446744073709551615s\"", ""),
            "t.toml:2:12: duration \"18446744073709551615s\" is above the maximum of 30days",
        ),
        (scenario("duration = \"99999999999h\"", ""), "t.toml:2:12: duration \"99999999999h\" is above the maximum"),
        (scenario("duration = \"0s\"", ""), "t.toml:2:12: `duration` is 0s; expected a duration above 0"),
        (
            scenario("", "[service.kv.ready]\nlog = \"up\"\ntimeout = \"0s\"\n"),
            "t.toml:16:11: service `kv`: `timeout` is 0s; expected a duration above 0",
        ),
        (
            scenario("", "[service.kv.ready]\nlog = \"up\"\ninterval = \"2m\"\n"),
            "service `kv`: `interval` = 2m is above the maximum of 1m",
        ),
        (scenario("", "[service.kv.stop]\ngrace = \"2h\"\n"), "`grace` = 2h is above the maximum of 1h"),
        (scenario("", "[client.retry]\nbackoff = \"2m\"\n"), "[client]: `backoff` = 2m is above the maximum of 1m"),
        (
            scenario("", "[[check]]\nkind = \"linearizable\"\nmodel = \"kv\"\ntimeout = \"0s\"\n"),
            "check `linearizable`: `timeout` is 0s",
        ),
        (
            scenario(
                "",
                "[[check]]\nkind = \"log-spacing\"\nentry = { source = \"kv\" }\nmin = \"2s\"\nmax = \"1s\"\n",
            ),
            "check `log-spacing`: `min` = 2s is above `max` = 1s",
        ),
        (scenario("", "[[step]]\nworkload = \"0s\"\n"), "step `workload 0ns`: `workload` is 0s"),
        (scenario("", "[[step]]\nwait = { ops = 1, timeout = \"0s\" }\n"), "step `wait`: `timeout` is 0s"),
        (
            scenario("", "[[fault]]\nkind = \"clock\"\ntarget = \"kv\"\nat = [\"1s\"]\noffset = \"-36600days\"\n"),
            "offset \"-36600days\" is above the maximum of 100years",
        ),
    ]);
}

#[test]
fn counts_are_capped_naming_the_maximum() {
    accepted(&[
        scenario("clients = 1024\nops = 10000000\nrate = 0.001", ""),
        scenario("", "[[action]]\nf = \"put\"\nweight = 1000000\nrequest = { path = \"/y\" }\n"),
        scenario("", "[client.retry]\nattempts = 10\non = [429, 503]\n"),
    ]);
    refused(&[
        (
            scenario("clients = 9223372036854775807", ""),
            "t.toml:2:11: `clients` = 9223372036854775807 is above the maximum of 1024",
        ),
        (scenario("ops = 10000001", ""), "t.toml:2:7: `ops` = 10000001 is above the maximum of 10000000"),
        (scenario("rate = 1e-9", ""), "`rate` = 1e-9 is outside 0.001 to 1000000 operations per second"),
        (
            scenario("", "[[action]]\nf = \"put\"\nweight = 1000001\nrequest = { path = \"/y\" }\n"),
            "action `put`: `weight` = 1000001 is above the maximum of 1000000",
        ),
        (scenario("", "[client.retry]\nattempts = 11\n"), "`retry.attempts` = 11 is above the maximum of 10"),
        (scenario("", "[client.retry]\non = [600]\n"), "[client]: status 600 is not an HTTP status"),
        (
            scenario("", "[[action]]\nf = \"put\"\nrequest = { path = \"/y\" }\nok = { status = [2000] }\n"),
            "action `put`: status 2000 is not an HTTP status",
        ),
        (
            scenario("", "[[check]]\nkind = \"stats\"\nduring_faults = 10000001\n"),
            "check `stats`: `during_faults` = 10000001 is above the maximum of 10000000",
        ),
        (
            scenario("", "[[check]]\nkind = \"resources\"\nmax_rss = 0\n"),
            "check `resources`: `max_rss` is 0 bytes; expected above 0 and at most 1 TiB",
        ),
        (
            scenario("", "[service.kv.disk]\npath = \"{dir}/d\"\nsize = \"32GiB\"\n"),
            "service `kv`: `disk.size` is 32 GiB; the most is 16 GiB",
        ),
    ]);
}

/// A scenario with `n` services, with or without network namespaces.
fn services(n: usize, namespaces: bool) -> String {
    let mut text = format!("name = \"many\"\n[network]\nnamespaces = {namespaces}\n");
    for i in 0..n {
        text.push_str(&format!("[service.s{i}]\ncommand = [\"kv\"]\n"));
    }
    text
}

#[test]
fn service_counts_follow_the_namespace_tier() {
    accepted(&[services(MAX_NAMESPACED_SERVICES, true), services(300, false)]);
    refused(&[
        (
            services(MAX_NAMESPACED_SERVICES + 1, true),
            "the scenario has 250 services; the most is 249 with `[network] namespaces = true`",
        ),
        (services(MAX_SERVICES + 1, false), "the scenario has 513 services; the most is 512"),
    ]);
}

#[test]
fn names_are_capped_and_file_names_restricted() {
    let long = "n".repeat(MAX_NAME_CHARS + 1);
    let run_name = "r".repeat(MAX_RUN_NAME_CHARS);
    accepted(&[
        format!("name = \"{run_name}\"\n{TABLES}"),
        scenario("", &format!("[service.{}]\ncommand = [\"kv\"]\n", "s".repeat(MAX_NAME_CHARS))),
        scenario("", "[dataset.src]\nkind = \"tree\"\nfiles = 3\n[[step]]\nexec = [\"x\"]\nlog = \"copy-1\"\n"),
    ]);
    refused(&[
        (
            format!("name = \"{}\"\n{TABLES}", "r".repeat(10_000)),
            "t.toml:1:8: `name` is 10000 characters long; the most is 200, since it names run directories",
        ),
        (
            format!("name = \"{}\"\n[matrix]\nengine = [\"{}\"]\n", "r".repeat(150), "e".repeat(60)),
            "`name` with its longest matrix cell is 219 characters long; the most is 200",
        ),
        (format!("name = \"a\\nb\"\n{TABLES}"), "`name` holds a control character"),
        (
            scenario("", &format!("[service.{long}]\ncommand = [\"kv\"]\n")),
            "service name `nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn…` is 65 characters long; the most is 64",
        ),
        (scenario("", &format!("[[action]]\nf = \"{long}\"\nrequest = {{ path = \"/y\" }}\n")), "`f` `nnnn"),
        (scenario("", &format!("[[check]]\nkind = \"stats\"\nname = \"{long}\"\n")), "is 65 characters long"),
        (
            scenario("", "[[step]]\nexec = [\"x\"]\nlog = \"../../etc/x\"\n"),
            "`log` `../../etc/x` is not a name (letters, digits, `_` and `-`); it names a file",
        ),
        (
            scenario("", "[dataset.\"a/b\"]\nkind = \"tree\"\nfiles = 3\n"),
            "dataset name `a/b` is not a name (letters, digits, `_` and `-`); it names a file",
        ),
        (
            scenario("", "[service.kv.env]\n\"A=B\" = \"1\"\n"),
            "service `kv`: environment variable name \"A=B\" is empty or holds `=` or NUL",
        ),
    ]);
}

#[test]
fn matrices_are_capped_in_dimensions_values_and_cells() {
    let dims = |n: usize, values: &str| {
        let lines: String = (0..n).map(|i| format!("d{i} = [{values}]\n")).collect();
        format!("name = \"m\"\n[matrix]\n{lines}")
    };
    accepted(&[dims(10, "\"a\", \"b\"")]);
    refused(&[
        (dims(11, "\"a\", \"b\""), "`matrix` makes 2048 cells; the most is 1024"),
        (dims(17, "\"a\""), "`matrix` has 17 dimensions; the most is 16"),
    ]);
}

/// `depth` steps, each the only step of the one above it.
fn nested(depth: usize) -> String {
    let mut step = "{ sleep = \"1ms\" }".to_string();
    for _ in 1..depth {
        step = format!("{{ steps = [{step}] }}");
    }
    format!("[[step]]\nsteps = [{step}]\n")
}

#[test]
fn scripts_are_capped_in_depth_repeats_and_unrolled_steps() {
    accepted(&[
        scenario("", &nested(MAX_STEP_DEPTH - 1)),
        scenario("", "[[step]]\nrepeat = 10000\nsteps = [{ sleep = \"1ms\" }]\n"),
    ]);
    refused(&[
        (scenario("", &nested(MAX_STEP_DEPTH)), "steps are nested 17 deep; the most is 16"),
        (
            scenario("", "[[step]]\nrepeat = 10001\nsteps = [{ sleep = \"1ms\" }]\n"),
            "t.toml:15:10: step `repeat 10001`: `repeat` = 10001 is above the maximum of 10000",
        ),
        (
            scenario("", "[[step]]\nrepeat = 1000\nsteps = [{ repeat = 1001, steps = [{ sleep = \"1ms\" }] }]\n"),
            "with its repeats the script runs 1001000 steps; the most is 1000000",
        ),
        (
            scenario("", "[[step]]\nwait = { ops = 10000001 }\n"),
            "step `wait`: `ops` = 10000001 is above the maximum of 10000000",
        ),
    ]);
}

#[test]
fn faults_resume_and_datasets_are_capped() {
    let fault =
        |extra: &str| scenario("", &format!("[[fault]]\nkind = \"clock\"\ntarget = \"kv\"\nat = [\"1s\"]\n{extra}"));
    let resume = |extra: &str| {
        format!("name = \"r\"\n[resume]\njob = [\"true\"]\ncompare = {{ tree = \"{{case.dir}}\" }}\n{extra}")
    };
    let tree = |extra: &str| format!("name = \"d\"\n[dataset.src]\nkind = \"tree\"\n{extra}");
    accepted(&[
        fault("rate = 1000.0\n"),
        resume("points = 1000\ninterruptions = 100\n"),
        tree("files = 100000\ndepth = 16\nsize = \"0..64MiB\"\n"),
    ]);
    refused(&[
        (fault("rate = 5000.0\n"), "fault `clock`: clock `rate` = 5000 is outside 0.001 to 1000"),
        (resume("points = 1001\n"), "t.toml:5:10: [resume]: `points` = 1001 is above the maximum of 1000"),
        (resume("timeout = \"0s\"\n"), "[resume]: `timeout` is 0s"),
        (tree("files = 100001\n"), "dataset `src`: `files` = 100001 is above the maximum of 100000"),
        (tree("files = 1\ndepth = 17\n"), "`depth` = 17 is above the maximum of 16"),
        (tree("files = 1\nsize = \"0..1GiB\"\n"), "dataset `src`: `size` goes up to 1 GiB; the most is 64 MiB"),
        (
            "name = \"d\"\n[dataset.src]\nkind = \"sqlite\"\nrows = 10000001\n".to_string(),
            "`rows` = 10000001 is above the maximum of 10000000",
        ),
    ]);
}

#[test]
fn code_built_scenarios_get_the_same_limits() {
    let mut s = parse(&scenario("", "")).unwrap();
    s.clients = std::num::NonZeroUsize::new(5000);
    s.duration = Some(crate::Dur(std::time::Duration::from_secs(u64::MAX)));
    let err = s.validate().unwrap_err().to_string();
    assert!(err.contains("<code>:1:1: `duration` = "), "{err}");
    assert!(err.contains("`clients` = 5000 is above the maximum of 1024"), "{err}");
}

#[test]
fn entry_counts_and_list_lengths_are_capped() {
    let actions = |n: usize| {
        let list: String =
            (0..n).map(|i| format!("[[action]]\nf = \"a{i}\"\nrequest = {{ path = \"/\" }}\n")).collect();
        format!("name = \"t\"\n[client]\nkind = \"http\"\nbase = \"http://127.0.0.1:1\"\n{list}")
    };
    let at = |n: usize| {
        let list = vec!["\"1s\""; n].join(", ");
        scenario("", &format!("[[fault]]\nkind = \"kill\"\ntarget = \"kv\"\nat = [{list}]\n"))
    };
    let ports = |n: usize| {
        let list: Vec<String> = (0..n).map(|i| format!("\"p{i}\"")).collect();
        scenario("", &format!("[service.db]\ncommand = [\"db\"]\nports = [{}]\n", list.join(", ")))
    };
    accepted(&[actions(MAX_ITEMS), at(MAX_LIST), ports(MAX_PORTS)]);
    refused(&[
        (actions(MAX_ITEMS + 1), "t.toml:5:1: the scenario has 1001 `action` entries; the most is 1000"),
        (at(MAX_LIST + 1), "fault `kill`: `at` has 10001 entries; the most is 10000"),
        (ports(MAX_PORTS + 1), "service `db`: `ports` has 65 entries; the most is 64"),
    ]);
}

#[test]
fn http_faults_and_disk_faults_are_capped() {
    let http = |h: &str| {
        let link = "[link.web]\nupstream = \"127.0.0.1:{service.kv.port}\"\nkind = \"http\"\n";
        scenario("", &format!("{link}[[fault]]\nkind = \"http\"\ntarget = \"web\"\nevery = \"1s\"\nhttp = {h}\n"))
    };
    let disk = |leave: &str| {
        let svc = "[service.db]\ncommand = [\"db\"]\ndisk = { path = \"{dir}/d\", size = \"1MiB\" }\n";
        scenario(
            "",
            &format!("{svc}[[fault]]\nkind = \"disk-full\"\ntarget = \"db\"\nat = [\"1s\"]\nleave = \"{leave}\"\n"),
        )
    };
    accepted(&[
        http("{ status = 503, retry_after = 3600 }"),
        http("{ delay = \"1h\", method = \"POST\" }"),
        disk("16GiB"),
    ]);
    refused(&[
        (
            http("{ status = 503, retry_after = 3601 }"),
            "fault `http`: `retry_after` = 3601 is above the maximum of 3600",
        ),
        (http("{ delay = \"0s\" }"), "fault `http`: `delay` is 0s; expected a duration above 0"),
        (http("{ abort = \"before\", method = \"G T\" }"), "fault `http`: method \"G T\" is not an HTTP method"),
        (disk("17GiB"), "fault `disk-full`: `leave` is 17 GiB; the most is 16 GiB"),
    ]);
}
