//! Validation of limits: every duration, count, size and name of a scenario
//! against its documented bound in [`crate::limits`], so that a value the
//! runner cannot take (an overflowing `Instant + Duration`, a capacity
//! overflow, a file name too long) is refused with its location first.
//!
//! Each problem is located through its key path, so it points at the value
//! in the file (or at its table when the value is a default).

use super::Validator;
use crate::error::{key, Key, SpecError};
use crate::limits::*;
use crate::model::{OutcomeSpec, Scenario, ServiceSpec};
use crate::step::{StepSpec, TriggerSpec};
use crate::values::Dur;
use std::time::Duration;

/// Whether a duration may be 0: a timeout or an interval of 0 means nothing.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Zero {
    Allowed,
    Refused,
}

impl Validator<'_> {
    pub(super) fn err_at(&mut self, key: Vec<Key>, message: impl Into<String>) {
        self.errors.push(SpecError::at(key, message));
    }

    /// Every limit of the scenario.
    pub(super) fn limits(&mut self) {
        let s = self.s;
        self.top_limits(s);
        self.table_counts(s);
        self.matrix_limits(s);
        for (i, b) in s.build.iter().enumerate() {
            self.dur(key!["build", i, "timeout"], "[[build]]: ", b.timeout, Zero::Refused, MAX_LONG_TIMEOUT);
            self.env_keys(key!["build", i, "env"], "[[build]]: ", b.env.keys());
        }
        for (name, svc) in &s.service {
            self.service_limits(name, svc);
        }
        for (name, a) in &s.actor {
            self.name_len(key!["actor", name], "", "actor name", name);
            self.env_keys(key!["actor", name, "env"], &format!("actor `{name}`: "), a.env.keys());
        }
        for name in s.link.keys() {
            self.name_len(key!["link", name], "", "link name", name);
        }
        for name in s.version.keys() {
            self.name_len(key!["version", name], "", "version name", name);
        }
        self.client_limits(s);
        self.action_limits(s);
        self.fault_limits(s);
        self.check_limits(s);
        self.step_limits(s);
        self.resume_limits(s);
    }

    fn top_limits(&mut self, s: &Scenario) {
        if s.name.chars().any(char::is_control) {
            self.err_at(key!["name"], "`name` holds a control character; expected a name on one line");
        }
        self.dur(key!["duration"], "", s.duration, Zero::Refused, MAX_DURATION);
        if let Some(n) = s.clients {
            self.at_most(key!["clients"], "", "clients", count(n.get()), count(MAX_CLIENTS));
        }
        if let Some(n) = s.ops {
            self.at_most(key!["ops"], "", "ops", n.get(), MAX_OPS);
        }
        if let Some(rate) = s.rate.filter(|r| !(RATE_RANGE.0..=RATE_RANGE.1).contains(r)) {
            let (lo, hi) = RATE_RANGE;
            let rate = show_f64(rate);
            self.err_at(key!["rate"], format!("`rate` = {rate} is outside {lo} to {hi} operations per second"));
        }
        for (i, tag) in s.tags.iter().enumerate() {
            self.name_len(key!["tags", i], "", "tag", tag.get_ref());
        }
        for (i, var) in s.env_required.iter().enumerate() {
            self.name_len(key!["env_required", i], "", "variable name", var.get_ref());
        }
    }

    /// How many services, actors, links, versions, builds, actions, faults and checks.
    fn table_counts(&mut self, s: &Scenario) {
        let (services, why) = if s.network.namespaces {
            (MAX_NAMESPACED_SERVICES, " with `[network] namespaces = true` (one /24 of node addresses)")
        } else {
            (MAX_SERVICES, "")
        };
        if s.service.len() > services {
            let msg = format!("the scenario has {} services; the most is {services}{why}", s.service.len());
            self.err_at(key!["service"], msg);
        }
        let tables = [
            ("actor", s.actor.len(), MAX_ACTORS),
            ("link", s.link.len(), MAX_ACTORS),
            ("version", s.version.len(), MAX_ACTORS),
            ("build", s.build.len(), MAX_ITEMS),
            ("action", s.action.len(), MAX_ITEMS),
            ("fault", s.fault.len(), MAX_ITEMS),
            ("check", s.check.len(), MAX_ITEMS),
            ("dataset", s.dataset.len(), MAX_DATASET_TABLES),
        ];
        for (table, n, max) in tables {
            if n > max {
                self.err_at(key![table], format!("the scenario has {n} `{table}` entries; the most is {max}"));
            }
        }
    }

    /// Dimensions, values and cells, and the longest run name a cell makes.
    fn matrix_limits(&mut self, s: &Scenario) {
        if s.matrix.len() > MAX_MATRIX_DIMENSIONS {
            let msg = format!("`matrix` has {} dimensions; the most is {MAX_MATRIX_DIMENSIONS}", s.matrix.len());
            self.err_at(key!["matrix"], msg);
        }
        let mut cells: u64 = 1;
        // The longest `NAME[k=v, k=v]` a cell gives the run.
        let mut run_name = s.name.chars().count() + 2;
        for (dim, values) in &s.matrix {
            self.name_len(key!["matrix", dim], "", "matrix dimension", dim);
            self.list_len(
                key!["matrix", dim],
                &format!("matrix dimension `{dim}`: "),
                "values",
                values.len(),
                MAX_MATRIX_VALUES,
            );
            for (i, v) in values.iter().enumerate() {
                self.name_len(key!["matrix", dim, i], &format!("matrix dimension `{dim}`: "), "value", v);
                if v.chars().any(char::is_control) {
                    self.err_at(
                        key!["matrix", dim, i],
                        format!("matrix dimension `{dim}`: a value holds a control character"),
                    );
                }
            }
            cells = cells.saturating_mul(count(values.len()));
            run_name += dim.chars().count() + 1 + values.iter().map(|v| v.chars().count()).max().unwrap_or(0);
        }
        if cells > count(MAX_MATRIX_CELLS) {
            let msg = format!("`matrix` makes {cells} cells; the most is {MAX_MATRIX_CELLS}");
            self.err_at(key!["matrix"], msg);
        }
        // Dimensions are joined by ", ".
        let run_name = if s.matrix.is_empty() { s.name.chars().count() } else { run_name + 2 * (s.matrix.len() - 1) };
        if run_name > MAX_RUN_NAME_CHARS {
            let what = if s.matrix.is_empty() { "`name`" } else { "`name` with its longest matrix cell" };
            let msg = format!(
                "{what} is {run_name} characters long; the most is {MAX_RUN_NAME_CHARS}, since it names run directories"
            );
            self.err_at(key!["name"], msg);
        }
    }

    fn service_limits(&mut self, name: &str, svc: &ServiceSpec) {
        let ctx = format!("service `{name}`: ");
        self.name_len(key!["service", name], "", "service name", name);
        self.list_len(key!["service", name, "ports"], &ctx, "ports", svc.ports.len(), MAX_PORTS);
        for (i, p) in svc.ports.iter().enumerate() {
            self.name_len(key!["service", name, "ports", i], &ctx, "port name", p);
        }
        self.env_keys(key!["service", name, "env"], &ctx, svc.env.keys());
        if let Some(r) = &svc.ready {
            let at = |k: &str| key!["service", name, "ready", k];
            self.dur(at("timeout"), &ctx, r.timeout, Zero::Refused, MAX_OP_TIMEOUT);
            self.dur(at("interval"), &ctx, r.interval, Zero::Refused, MAX_INTERVAL);
            if let Some(code) = r.status {
                self.status(at("status"), &ctx, code);
            }
            if let Some(url) = &r.http {
                self.url(at("http"), &format!("{ctx}`ready.http`"), url);
            }
            if let Some(addr) = &r.tcp {
                self.host_port(at("tcp"), &format!("{ctx}`ready.tcp`"), addr, true);
            }
        }
        let stop = |k: &str| key!["service", name, "stop", k];
        self.dur(stop("grace"), &ctx, svc.stop.grace, Zero::Allowed, MAX_STOP);
        self.dur(stop("drain"), &ctx, svc.stop.drain, Zero::Allowed, MAX_STOP);
        self.dur(stop("shutdown"), &ctx, svc.stop.shutdown, Zero::Allowed, MAX_STOP);
        if let Some(disk) = svc.disk.as_ref().filter(|d| d.size.0 > MAX_DISK_BYTES) {
            let msg = format!(
                "{ctx}`disk.size` is {}; the most is {} (the tmpfs is memory)",
                describe_bytes(disk.size.0),
                describe_bytes(MAX_DISK_BYTES)
            );
            self.err_at(key!["service", name, "disk", "size"], msg);
        }
    }

    fn client_limits(&mut self, s: &Scenario) {
        let Some(c) = &s.client else { return };
        let ctx = "[client]: ";
        self.dur(key!["client", "timeout"], ctx, c.timeout, Zero::Refused, MAX_OP_TIMEOUT);
        self.env_keys(key!["client", "env"], ctx, c.env.keys());
        if let Some(base) = &c.base {
            self.url(key!["client", "base"], "[client] `base`", base.get_ref());
        }
        let Some(r) = &c.retry else { return };
        let at = |k: &str| key!["client", "retry", k];
        if let Some(n) = r.attempts {
            self.at_most(at("attempts"), ctx, "retry.attempts", u64::from(n.get()), u64::from(MAX_RETRY_ATTEMPTS));
        }
        self.dur(at("backoff"), ctx, r.backoff, Zero::Allowed, MAX_INTERVAL);
        let on = r.on.as_deref().unwrap_or_default();
        self.list_len(at("on"), ctx, "retry.on", on.len(), 100);
        for (i, code) in on.iter().enumerate() {
            self.status(key!["client", "retry", "on", i], ctx, *code);
        }
    }

    fn action_limits(&mut self, s: &Scenario) {
        for (i, a) in s.action.iter().enumerate() {
            let ctx = format!("action `{}`: ", shorten(a.label()));
            let at = |k: &str| key!["action", i, k];
            self.name_len(at("f"), &ctx, "`f`", &a.f);
            if a.f.chars().any(char::is_control) {
                self.err_at(at("f"), format!("{ctx}`f` holds a control character"));
            }
            for (k, v) in [("name", &a.name), ("capture", &a.capture)] {
                if let Some(v) = v {
                    self.name_len(at(k), &ctx, &format!("`{k}`"), v);
                }
            }
            if let Some(w) = a.weight {
                self.at_most(at("weight"), &ctx, "weight", u64::from(w), u64::from(MAX_WEIGHT));
            }
            self.dur(at("timeout"), &ctx, a.timeout, Zero::Refused, MAX_OP_TIMEOUT);
            for (k, outcome) in [("ok", &a.ok), ("fail", &a.fail)] {
                if let Some(o) = outcome {
                    self.outcome(at(k), &ctx, o);
                }
            }
            if let Some(r) = &a.request {
                self.request(key!["action", i, "request"], &ctx, r.get_ref());
            }
        }
    }

    fn fault_limits(&mut self, s: &Scenario) {
        for (i, f) in s.fault.iter().enumerate() {
            let ctx =
                format!("fault `{}`: ", shorten(f.name.as_ref().map_or(f.kind.as_str(), |n| n.get_ref().as_str())));
            let at = |k: &str| key!["fault", i, k];
            if let Some(n) = &f.name {
                self.name_len(at("name"), &ctx, "`name`", n.get_ref());
            }
            if let Some(list) = &f.at {
                self.list_len(at("at"), &ctx, "at", list.get_ref().len(), MAX_LIST);
            }
            if let Some(every) = &f.every {
                self.dur(at("every"), &ctx, Some(*every.get_ref()), Zero::Allowed, MAX_DURATION);
            }
            self.dur(at("for"), &ctx, f.duration, Zero::Allowed, MAX_DURATION);
            if let Some(when) = &f.when {
                self.trigger_limits(key!["fault", i, "when"], &ctx, when.get_ref());
            }
            if let Some(r) = f.rate.as_ref().map(|r| *r.get_ref()).filter(|r| r.is_finite() && *r > 0.0) {
                let (lo, hi) = CLOCK_RATE_RANGE;
                if !(lo..=hi).contains(&r) {
                    self.err_at(at("rate"), format!("{ctx}clock `rate` = {} is outside {lo} to {hi}", show_f64(r)));
                }
            }
            if let Some(leave) = f.leave.filter(|l| l.0 > MAX_DISK_BYTES) {
                let msg = format!(
                    "{ctx}`leave` is {}; the most is {}",
                    describe_bytes(leave.0),
                    describe_bytes(MAX_DISK_BYTES)
                );
                self.err_at(at("leave"), msg);
            }
            if let Some(t) = &f.toxic {
                self.toxic_limits(key!["fault", i, "toxic"], &ctx, t.get_ref());
            }
            if let Some(h) = &f.http {
                self.http_fault_limits(key!["fault", i, "http"], &ctx, h.get_ref());
            }
        }
    }

    fn check_limits(&mut self, s: &Scenario) {
        for (i, c) in s.check.iter().enumerate() {
            let ctx = format!("check `{}`: ", shorten(c.label()));
            let at = |k: &str| key!["check", i, k];
            if let Some(n) = &c.name {
                self.name_len(at("name"), &ctx, "`name`", n);
            }
            self.dur(at("timeout"), &ctx, c.timeout, Zero::Refused, MAX_LONG_TIMEOUT);
            self.dur(at("min"), &ctx, c.min, Zero::Allowed, MAX_DURATION);
            self.dur(at("max"), &ctx, c.max, Zero::Refused, MAX_DURATION);
            if let (Some(min), Some(max)) = (c.min, c.max) {
                if min > max {
                    self.err_at(at("min"), format!("{ctx}`min` = {min} is above `max` = {max}"));
                }
            }
            self.dur(at("max_cpu"), &ctx, c.max_cpu, Zero::Refused, MAX_DURATION);
            if let Some(rss) = c.max_rss.as_ref().map(|r| r.get_ref().0) {
                if rss == 0 || rss > MAX_RSS_BYTES {
                    let msg = format!(
                        "{ctx}`max_rss` is {}; expected above 0 and at most {}",
                        describe_bytes(rss),
                        describe_bytes(MAX_RSS_BYTES)
                    );
                    self.err_at(at("max_rss"), msg);
                }
            }
            if let Some(n) = c.during_faults {
                self.at_most(at("during_faults"), &ctx, "during_faults", n, MAX_OPS);
            }
            let lists = [
                ("steps", c.steps.as_ref().map(|l| l.get_ref().len())),
                ("rows", c.rows.as_ref().map(|l| l.get_ref().len())),
                ("edits", c.edits.as_ref().map(|l| l.get_ref().len())),
                ("actors", c.actors.as_ref().map(|l| l.get_ref().len())),
                ("ignore", c.ignore.as_ref().map(|l| l.get_ref().len())),
                ("round", c.round.as_ref().map(|l| l.get_ref().len())),
                ("creates", c.creates.as_ref().map(|l| l.get_ref().len())),
            ];
            for (k, n) in lists.into_iter().filter_map(|(k, n)| n.map(|n| (k, n))) {
                self.list_len(at(k), &ctx, k, n, MAX_LIST);
            }
            for (k, src) in [("state", &c.state), ("created", &c.created), ("edit_log", &c.edit_log)] {
                if let Some(src) = src {
                    self.dur(
                        key!["check", i, k, "timeout"],
                        &ctx,
                        src.get_ref().timeout,
                        Zero::Refused,
                        MAX_OP_TIMEOUT,
                    );
                }
            }
        }
    }

    fn step_limits(&mut self, s: &Scenario) {
        let total: usize = s.step.iter().map(|st| st.walk().len()).sum();
        if total > MAX_STEPS {
            self.err_at(key!["step"], format!("the script has {total} steps at every depth; the most is {MAX_STEPS}"));
        }
        let mut runs: u64 = 0;
        for (i, st) in s.step.iter().enumerate() {
            runs = runs.saturating_add(self.step_limit(key!["step", i], st, 1));
        }
        if runs > MAX_STEPS_RUN && total <= MAX_STEPS {
            let msg = format!("with its repeats the script runs {runs} steps; the most is {MAX_STEPS_RUN}");
            self.err_at(key!["step"], msg);
        }
    }

    /// Checks one step and those nested in it, at `depth` (1 at the top);
    /// returns how many steps it runs with repeats unrolled.
    fn step_limit(&mut self, at: Vec<Key>, st: &StepSpec, depth: usize) -> u64 {
        let ctx = format!("step `{}`: ", shorten(&st.label()));
        if depth > MAX_STEP_DEPTH {
            self.err_at(at, format!("{ctx}steps are nested {depth} deep; the most is {MAX_STEP_DEPTH}"));
            return 1;
        }
        let sub = |k: &str| with(&at, [Key::from(k)]);
        for (k, v) in [("name", &st.name), ("f", &st.f), ("capture", &st.capture)] {
            if let Some(v) = v {
                self.name_len(sub(k), &ctx, &format!("`{k}`"), v);
            }
        }
        if let Some(log) = &st.log {
            // It names the log file of the step's output.
            self.file_name(sub("log"), &ctx, "`log`", log);
        }
        if let Some(p) = &st.phase {
            self.name_len(sub("phase"), &ctx, "phase", p.get_ref());
        }
        self.dur(sub("sleep"), &ctx, st.sleep, Zero::Allowed, MAX_DURATION);
        self.dur(sub("workload"), &ctx, st.workload, Zero::Refused, MAX_DURATION);
        self.dur(sub("timeout"), &ctx, st.timeout, Zero::Refused, MAX_DURATION);
        for (k, t) in [("when", &st.when), ("wait", &st.wait)] {
            if let Some(t) = t {
                self.trigger_limits(sub(k), &ctx, t.get_ref());
            }
        }
        if let Some(expect) = &st.expect {
            self.outcome(sub("expect"), &ctx, expect);
        }
        let mut repeat = st.repeat.map_or(1, |r| r.get());
        if repeat > MAX_REPEAT {
            self.err_at(sub("repeat"), format!("{ctx}`repeat` = {repeat} is above the maximum of {MAX_REPEAT}"));
            // Counted at the maximum below, so one bad number is one error.
            repeat = MAX_REPEAT;
        }
        let mut inner: u64 = 0;
        for (k, list) in [("parallel", &st.parallel), ("steps", &st.steps)] {
            for (j, nested) in list.iter().flatten().enumerate() {
                inner =
                    inner.saturating_add(self.step_limit(with(&at, [Key::from(k), Key::from(j)]), nested, depth + 1));
            }
        }
        inner.max(1).saturating_mul(u64::from(repeat))
    }

    fn trigger_limits(&mut self, at: Vec<Key>, ctx: &str, t: &TriggerSpec) {
        if let Some(n) = t.ops {
            self.at_most(with(&at, [Key::from("ops")]), ctx, "ops", n, MAX_OPS);
        }
        self.dur(with(&at, [Key::from("timeout")]), ctx, t.timeout, Zero::Refused, MAX_DURATION);
    }

    fn resume_limits(&mut self, s: &Scenario) {
        for (name, d) in &s.dataset {
            self.dataset_limits(name, d);
        }
        let Some(r) = &s.resume else { return };
        let ctx = "[resume]: ";
        let at = |k: &str| key!["resume", k];
        let counts = [
            ("points", r.points, MAX_POINTS),
            ("interruptions", r.interruptions, MAX_INTERRUPTIONS),
            ("attempts", r.attempts, MAX_ATTEMPTS),
        ];
        for (k, n, max) in counts {
            if let Some(n) = n {
                self.at_most(at(k), ctx, k, u64::from(n.get()), u64::from(max));
            }
        }
        self.dur(at("timeout"), ctx, r.timeout, Zero::Refused, MAX_LONG_TIMEOUT);
        self.dur(key!["resume", "compare", "timeout"], ctx, r.compare.timeout, Zero::Refused, MAX_OP_TIMEOUT);
        self.list_len(at("corrupt"), ctx, "corrupt", r.corrupt.len(), 64);
        if let Some(done) = &r.done {
            self.outcome(at("done"), ctx, done);
        }
    }

    fn dataset_limits(&mut self, name: &str, d: &crate::resume::DatasetSpec) {
        use crate::resume::Count;
        let ctx = format!("dataset `{name}`: ");
        let at = |k: &str| key!["dataset", name, k];
        // It names the dataset's file or directory in the run directory.
        self.file_name(key!["dataset", name], "", "dataset name", name);
        if let Some(Count::Number(n)) = &d.rows {
            self.at_most(at("rows"), &ctx, "rows", *n, MAX_DATASET_ROWS);
        }
        if let Some(Count::Number(n)) = &d.files {
            self.at_most(at("files"), &ctx, "files", *n, MAX_DATASET_FILES);
        }
        if let Some(depth) = d.depth {
            self.at_most(at("depth"), &ctx, "depth", u64::from(depth), u64::from(MAX_DATASET_DEPTH));
        }
        if let Some(tables) = &d.tables {
            self.list_len(at("tables"), &ctx, "tables", tables.len(), MAX_DATASET_TABLES);
            for (i, t) in tables.iter().enumerate() {
                self.name_len(key!["dataset", name, "tables", i], &ctx, "table name", t);
            }
        }
        if let Some(Ok((_, hi))) = d.size.as_deref().map(crate::resume::parse_size_range) {
            if hi > MAX_DATASET_FILE_BYTES {
                let msg = format!(
                    "{ctx}`size` goes up to {}; the most is {}",
                    describe_bytes(hi),
                    describe_bytes(MAX_DATASET_FILE_BYTES)
                );
                self.err_at(at("size"), msg);
            }
        }
    }

    /// A duration at most `max`, and above 0 unless `zero` allows it.
    pub(super) fn dur(&mut self, at: Vec<Key>, ctx: &str, d: Option<Dur>, zero: Zero, max: Duration) {
        let Some(Dur(d)) = d else { return };
        let name = last_name(&at);
        if d.is_zero() && zero == Zero::Refused {
            self.err_at(at, format!("{ctx}`{name}` is 0s; expected a duration above 0"));
        } else if d > max {
            let msg = format!("{ctx}`{name}` = {} is above the maximum of {}", describe(d), describe(max));
            self.err_at(at, msg);
        }
    }

    pub(super) fn at_most(&mut self, at: Vec<Key>, ctx: &str, what: &str, n: u64, max: u64) {
        if n > max {
            self.err_at(at, format!("{ctx}`{what}` = {n} is above the maximum of {max}"));
        }
    }

    fn list_len(&mut self, at: Vec<Key>, ctx: &str, what: &str, n: usize, max: usize) {
        if n > max {
            self.err_at(at, format!("{ctx}`{what}` has {n} entries; the most is {max}"));
        }
    }

    /// A name of at most [`MAX_NAME_CHARS`] characters.
    pub(super) fn name_len(&mut self, at: Vec<Key>, ctx: &str, what: &str, name: &str) {
        let n = name.chars().count();
        if n > MAX_NAME_CHARS {
            let msg = format!("{ctx}{what} `{}` is {n} characters long; the most is {MAX_NAME_CHARS}", shorten(name));
            self.err_at(at, msg);
        }
    }

    /// A name that becomes a file name: short, and only letters, digits, `_` and `-`.
    fn file_name(&mut self, at: Vec<Key>, ctx: &str, what: &str, name: &str) {
        if !super::is_name(name) {
            let msg = format!(
                "{ctx}{what} `{}` is not a name (letters, digits, `_` and `-`); it names a file",
                shorten(name)
            );
            self.err_at(at.clone(), msg);
        }
        self.name_len(at, ctx, what, name);
    }

    /// Environment variable names: no `=` or NUL, which no environment can hold.
    fn env_keys<'k>(&mut self, at: Vec<Key>, ctx: &str, keys: impl Iterator<Item = &'k String>) {
        for k in keys {
            if k.is_empty() || k.contains(['=', '\0']) {
                let msg = format!("{ctx}environment variable name {k:?} is empty or holds `=` or NUL");
                self.err_at(with(&at, [Key::from(k)]), msg);
            }
            self.name_len(with(&at, [Key::from(k)]), ctx, "environment variable", k);
        }
    }

    pub(super) fn status(&mut self, at: Vec<Key>, ctx: &str, code: u16) {
        if !(100..=599).contains(&code) {
            self.err_at(at, format!("{ctx}status {code} is not an HTTP status; expected 100 to 599"));
        }
    }

    fn outcome(&mut self, at: Vec<Key>, ctx: &str, o: &OutcomeSpec) {
        for (i, code) in o.status.iter().enumerate() {
            self.status(with(&at, [Key::from("status"), Key::from(i)]), ctx, *code);
        }
        self.list_len(with(&at, [Key::from("status")]), ctx, "status", o.status.len(), 1000);
        self.list_len(with(&at, [Key::from("exit")]), ctx, "exit", o.exit.len(), 1000);
    }
}

/// A count of things as a `u64`, saturating (a `usize` always fits on the targets shakedown runs on).
fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// `at` with `more` steps appended.
pub(super) fn with<const N: usize>(at: &[Key], more: [Key; N]) -> Vec<Key> {
    at.iter().cloned().chain(more).collect()
}

/// The last table key of a path, for messages: `timeout` of `service.kv.ready.timeout`.
fn last_name(at: &[Key]) -> String {
    at.iter()
        .rev()
        .find_map(|k| match k {
            Key::Name(n) => Some(n.clone()),
            Key::Index(_) => None,
        })
        .unwrap_or_default()
}

/// A number as a person writes it: `1e300` rather than 301 digits.
fn show_f64(x: f64) -> String {
    if x != 0.0 && !(1e-3..1e7).contains(&x.abs()) {
        format!("{x:e}")
    } else {
        x.to_string()
    }
}

/// The first 40 characters of a long name, for messages.
fn shorten(name: &str) -> String {
    if name.chars().count() <= 40 {
        name.to_string()
    } else {
        format!("{}…", name.chars().take(40).collect::<String>())
    }
}

#[cfg(test)]
#[path = "validate_limits_tests.rs"]
mod tests;
