//! Semantic validation: references between parts of a scenario, and which
//! placeholders make sense where. Syntax and types are checked by the parser.

use crate::error::SpecError;
use crate::fault::*;
use crate::model::*;
use crate::template::{Template, Var};
use crate::values::{Names, ResultSource, ValueTemplate};
use std::collections::BTreeSet;
use toml::Spanned;

/// The models the linearizable check knows.
pub const MODELS: &[&str] =
    &["register", "cas-register", "kv", "mutex", "set", "fifo-queue", "unordered-queue", "counter"];
use std::ops::Range;

#[path = "validate_addr.rs"]
mod addr;
#[path = "validate_limits.rs"]
mod limits_check;
#[path = "validate_resume.rs"]
mod resume;
#[path = "validate_steps.rs"]
mod steps;

/// Where a template is used, which decides the placeholders it may hold.
#[derive(Clone, Copy)]
enum Ctx<'a> {
    /// Build commands: no services have ports yet.
    Build,
    /// A service's command, env, dir or probe.
    Service(&'a ServiceSpec),
    /// Actor env, client base, driver command.
    Actor,
    /// An action's request, command or value.
    Action,
}

struct Validator<'a> {
    s: &'a Scenario,
    errors: Vec<SpecError>,
    pools: BTreeSet<&'a str>,
    /// Every `{env.NAME}` a template uses, for [`env_refs`].
    env_refs: BTreeSet<String>,
    /// Validating `[resume]`, where `{case.dir}` is defined.
    in_resume: bool,
}

/// Every problem with the scenario, empty when it is valid.
pub fn validate(s: &Scenario) -> Vec<SpecError> {
    run_validator(s).errors
}

/// The variables the scenario's templates read as `{env.NAME}`, so a caller can
/// require them before anything runs instead of every operation failing later.
pub fn env_refs(s: &Scenario) -> BTreeSet<String> {
    run_validator(s).env_refs
}

fn run_validator(s: &Scenario) -> Validator<'_> {
    // Actions and exec steps can fill pools.
    let step_pools = s.step.iter().flat_map(|st| st.walk()).filter_map(|st| st.capture.as_deref());
    let pools = s.action.iter().filter_map(|a| a.capture.as_deref()).chain(step_pools).collect();
    let mut v = Validator { s, errors: Vec::new(), pools, env_refs: BTreeSet::new(), in_resume: false };
    v.top_level();
    v.versions();
    v.matrix();
    s.build.iter().for_each(|b| v.build(b));
    s.service.iter().for_each(|(name, svc)| v.service(name, svc));
    s.actor.iter().for_each(|(name, a)| v.actor(name, a));
    s.link.iter().for_each(|(name, l)| v.link(name, l));
    v.client_and_actions();
    s.fault.iter().for_each(|f| v.fault(f));
    s.check.iter().for_each(|c| v.check(c));
    v.steps();
    v.resume();
    v.limits();
    v
}

impl<'a> Validator<'a> {
    fn err(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.errors.push(SpecError::new(span, message));
    }

    fn err_near(&mut self, anchor: String, message: impl Into<String>) {
        self.errors.push(SpecError::near(anchor, message));
    }

    fn matrix(&mut self) {
        for (key, values) in &self.s.matrix {
            if !is_name(key) || values.is_empty() {
                self.err_near(
                    format!("{key} ="),
                    format!("matrix dimension `{key}` needs a name and at least one value"),
                );
            }
        }
        let guards = [(&self.s.only, "only"), (&self.s.except, "except")]
            .into_iter()
            .chain(self.s.action.iter().flat_map(|a| [(&a.only, "only"), (&a.except, "except")]))
            .chain(self.s.fault.iter().flat_map(|f| [(&f.only, "only"), (&f.except, "except")]))
            .chain(self.s.check.iter().flat_map(|c| [(&c.only, "only"), (&c.except, "except")]))
            .chain(self.s.step.iter().flat_map(|s| s.walk()).flat_map(|s| [(&s.only, "only"), (&s.except, "except")]));
        let mut problems = Vec::new();
        for (guard, word) in guards {
            for (key, values) in guard.iter().flat_map(|g| g.0.iter()) {
                let Some(allowed) = self.s.matrix.get(key) else {
                    let names = self.s.matrix.keys().map(String::as_str).collect();
                    problems.push((
                        format!("{word} ="),
                        format!(
                            "`{word}` names matrix dimension `{key}`, which is not defined; {}",
                            one_of("dimensions", &names)
                        ),
                    ));
                    continue;
                };
                for v in values.iter().filter(|v| !allowed.iter().any(|a| a == *v)) {
                    problems.push((
                        format!("{word} ="),
                        format!(
                            "`{word}` names {key} = `{v}`, which is not one of the matrix's values: {}",
                            allowed.join(", ")
                        ),
                    ));
                }
            }
        }
        for (anchor, msg) in problems {
            self.err_near(anchor, msg);
        }
    }

    fn versions(&mut self) {
        let names: Vec<&String> = self.s.version.keys().collect();
        if let Some(dim) = self.s.matrix.get("version").filter(|_| !names.is_empty()) {
            if dim.iter().collect::<Vec<_>>() != names {
                self.err_near(
                    "[version.".into(),
                    "`[version.*]` tables make the `version` dimension themselves; remove `version` from `[matrix]`",
                );
            }
        }
        for (version, bins) in &self.s.version {
            if !is_name(version) {
                self.err_near(format!("[version.{version}]"), format!("version name `{version}` is not a name"));
            }
            self.templates(bins.values(), Ctx::Build);
        }
        for f in self.s.fault.iter().filter(|f| f.kind == FaultKind::Upgrade) {
            match &f.to {
                None => self.err(f.target.span(), "an `upgrade` fault needs `to`, the `[version.NAME]` to move to"),
                Some(to) if !self.s.version.contains_key(to.get_ref()) => {
                    let known = self.s.version.keys().map(String::as_str).collect();
                    let msg = format!(
                        "`to` names version `{}`, which is not defined; {}",
                        to.get_ref(),
                        one_of("versions", &known)
                    );
                    self.err(to.span(), msg);
                }
                Some(_) => {}
            }
        }
    }

    fn top_level(&mut self) {
        if self.s.name.trim().is_empty() {
            self.err_near("name".into(), "`name` is empty; expected the scenario's name");
        }
        let labels: BTreeSet<&str> = self.s.action.iter().map(|a| a.label()).collect();
        for f in &self.s.finally {
            if !labels.contains(f.get_ref().as_str()) {
                let msg = format!(
                    "`finally` names action `{}`, which is not defined; {}",
                    f.get_ref(),
                    one_of("actions", &labels)
                );
                self.err(f.span(), msg);
            }
        }
        for (key, vars) in [("env_required", &self.s.env_required), ("env_secret", &self.s.env_secret)] {
            for var in vars {
                if !is_env_name(var.get_ref()) {
                    let msg = format!("`{key}` names `{}`, which is not a variable name", var.get_ref());
                    self.err(var.span(), msg);
                }
            }
        }
        for tag in &self.s.tags {
            if !is_name(tag.get_ref()) {
                let msg = format!("tag `{}` is not a name (letters, digits, `_` and `-`)", tag.get_ref());
                self.err(tag.span(), msg);
            }
        }
    }

    fn build(&mut self, b: &BuildSpec) {
        if b.command.is_empty() {
            self.err_near(
                "[[build]]".into(),
                "a `[[build]]` has an empty `command`; expected the program and its arguments",
            );
        }
        self.templates(b.command.iter().chain(b.dir.iter()).chain(b.env.values()), Ctx::Build);
    }

    fn service(&mut self, name: &str, svc: &'a ServiceSpec) {
        if !is_name(name) {
            self.err_near(
                format!("service.{name}"),
                format!("service name `{name}` is not a name (letters, digits, `_` and `-`)"),
            );
        }
        if svc.command.is_empty() {
            self.err_near(
                format!("service.{name}"),
                format!("service `{name}` has an empty `command`; expected the program and its arguments"),
            );
        }
        let ctx = Ctx::Service(svc);
        self.templates(svc.command.iter().chain(svc.dir.iter()).chain(svc.env.values()), ctx);
        if let Some(r) = &svc.ready {
            self.ready(name, r, ctx);
        }
        if svc.log_format.is_some() && svc.log_regex.is_some() {
            self.err_near(
                format!("service.{name}"),
                format!("service `{name}` has both `log_format` and `log_regex`; expected one"),
            );
        }
        if let Some(disk) = &svc.disk {
            self.template(&disk.path, ctx);
            if disk.size.0 < 64 * 1024 {
                self.err_near(
                    format!("service.{name}"),
                    format!("service `{name}`: `disk.size` is {} bytes; expected at least 64KiB", disk.size.0),
                );
            }
        }
        for p in &svc.ports {
            if p == "port" || !is_name(p) {
                self.err_near(
                    format!("service.{name}"),
                    format!("service `{name}` port name `{p}` is reserved or not a name"),
                );
            }
        }
        if let Some(sig) = &svc.stop.signal {
            if signal_number(sig.get_ref()).is_none() {
                self.err(
                    sig.span(),
                    format!("unknown stop signal `{}`; expected one of TERM, INT, QUIT, HUP, KILL", sig.get_ref()),
                );
            }
        }
    }

    fn ready(&mut self, name: &str, r: &'a ReadySpec, ctx: Ctx<'a>) {
        let n = [r.tcp.is_some(), r.http.is_some(), r.log.is_some(), r.exec.is_some()].iter().filter(|b| **b).count();
        if n != 1 {
            self.err_near(
                format!("service.{name}"),
                format!("service `{name}`: `ready` needs exactly one of `tcp`, `http`, `log`, `exec` (found {n})"),
            );
        }
        let exec = r.exec.iter().flatten();
        self.templates(r.tcp.iter().chain(r.http.iter()).chain(exec), ctx);
    }

    fn actor(&mut self, name: &str, a: &'a ActorSpec) {
        if !is_name(name) {
            self.err_near(
                format!("actor.{name}"),
                format!("actor name `{name}` is not a name (letters, digits, `_` and `-`)"),
            );
        }
        self.templates(a.env.values(), Ctx::Actor);
    }

    fn client_and_actions(&mut self) {
        let Some(client) = &self.s.client else {
            if !self.s.action.is_empty() {
                self.err_near("[[action]]".into(), "actions are defined but there is no `[client]`; expected `[client]` with `kind = \"exec\"`, `\"driver\"` or `\"http\"`");
            }
            return;
        };
        self.templates(client.env.values(), Ctx::Actor);
        match (client.kind, &client.base, &client.command) {
            (ClientKind::Http, None, _) => self
                .err_near("[client]".into(), "`[client]` of kind http needs `base`, the URL requests are relative to"),
            (ClientKind::Driver, _, None) => self.err_near(
                "[client]".into(),
                "`[client]` of kind driver needs `command`, the driver to start per actor",
            ),
            _ => {}
        }
        if let Some(base) = &client.base {
            self.template(base.get_ref(), Ctx::Actor);
        }
        if let Some(cmd) = &client.command {
            self.templates(cmd.get_ref().iter(), Ctx::Actor);
        }
        let mut labels = BTreeSet::new();
        for a in &self.s.action {
            if !labels.insert(a.label()) {
                self.err_near(
                    format!("\"{}\"", a.label()),
                    format!("two actions are labelled `{}`; give one a distinct `name`", a.label()),
                );
            }
            self.action(client.kind, a);
        }
        let total: u64 = self.s.action.iter().map(|a| u64::from(a.weight.unwrap_or(1))).sum();
        // With a script, zero-weight actions are run by `action` steps.
        if !self.s.action.is_empty() && total == 0 && self.s.step.is_empty() {
            self.err_near(
                "[[action]]".into(),
                "every action has weight 0; expected at least one with a positive weight",
            );
        }
    }

    fn action(&mut self, kind: ClientKind, a: &'a ActionSpec) {
        let label = a.label();
        if a.f.trim().is_empty() {
            self.err(0..0, "an action has an empty `f`; expected the operation's name, e.g. \"read\"");
        }
        match kind {
            ClientKind::Http if a.request.is_none() => {
                self.err_near(format!("\"{label}\""), format!("action `{label}` needs `request` for the http client"))
            }
            ClientKind::Exec if a.command.is_none() => {
                self.err_near(format!("\"{label}\""), format!("action `{label}` needs `command` for the exec client"))
            }
            _ => {}
        }
        let misplaced = match kind {
            ClientKind::Http => a.command.as_ref().map(|c| (c.span(), "command", "exec")),
            ClientKind::Exec => a.request.as_ref().map(|r| (r.span(), "request", "http")),
            ClientKind::Driver => a
                .request
                .as_ref()
                .map(|r| (r.span(), "request", "http"))
                .or(a.command.as_ref().map(|c| (c.span(), "command", "exec"))),
        };
        if let Some((span, field, for_kind)) = misplaced {
            self.err(
                span,
                format!("action `{label}`: `{field}` is for the {for_kind} client, but `[client]` is {kind:?}"),
            );
        }
        if let Some(r) = &a.request {
            let r = r.get_ref();
            self.templates(std::iter::once(&r.path).chain(r.headers.values()).chain(r.body.iter()), Ctx::Action);
        }
        if let Some(c) = &a.command {
            self.templates(c.get_ref().iter(), Ctx::Action);
        }
        self.templates(a.stdin.iter(), Ctx::Action);
        if let Some(v) = &a.value {
            self.value(v.span(), v.get_ref());
        }
        if let Some(t) = &a.target {
            self.pool(t.span(), t.get_ref());
        }
        if let Some(r) = &a.result {
            self.result_source(kind, label, r.span(), r.get_ref().source);
        }
    }

    fn result_source(&mut self, kind: ClientKind, label: &str, span: Range<usize>, source: ResultSource) {
        let ok = match kind {
            ClientKind::Http => matches!(source, ResultSource::Body | ResultSource::Status),
            ClientKind::Exec => matches!(source, ResultSource::Stdout | ResultSource::Stderr | ResultSource::Exit),
            ClientKind::Driver => false,
        };
        if !ok {
            let hint = match kind {
                ClientKind::Http => "body or status",
                ClientKind::Exec => "stdout, stderr or exit",
                ClientKind::Driver => "nothing: the driver replies with the value",
            };
            self.err(
                span,
                format!(
                    "action `{label}`: result source {source:?} does not apply to the {kind:?} client; expected {hint}"
                ),
            );
        }
    }

    fn value(&mut self, span: Range<usize>, v: &'a ValueTemplate) {
        for t in v.templates() {
            self.vars(span.clone(), t, Ctx::Action);
            if t.vars().any(|var| matches!(var, Var::Value | Var::ValuePath(_))) {
                self.err(span.clone(), format!("in {:?}: `{{value}}` cannot be used in the value itself", t.source()));
            }
        }
    }

    fn pool(&mut self, span: Range<usize>, pool: &str) {
        if !self.pools.contains(pool) {
            let msg = format!(
                "pool `{pool}` is never filled: no action has `capture = \"{pool}\"`; {}",
                one_of("pools", &self.pools)
            );
            self.err(span, msg);
        }
    }

    fn link(&mut self, name: &str, l: &'a LinkSpec) {
        if !is_name(name) {
            self.err_near(
                format!("link.{name}"),
                format!("link name `{name}` is not a name (letters, digits, `_` and `-`)"),
            );
        }
        let upstream = l.upstream.get_ref();
        self.template(upstream, Ctx::Actor);
        self.host_port(
            crate::error::key!["link", name, "upstream"],
            &format!("link `{name}`: `upstream`"),
            upstream,
            false,
        );
    }

    fn fault(&mut self, f: &'a FaultSpec) {
        self.fault_targets(f);
        match (&f.at, &f.every, &f.when) {
            (Some(_), Some(every), _) => {
                self.err(every.span(), "a fault has both `at` and `every`; expected one schedule")
            }
            (Some(_), None, Some(when)) | (None, Some(_), Some(when)) => {
                self.err(when.span(), "a fault has both a schedule and `when`; expected one")
            }
            (None, None, None) if f.name.is_none() => self.err(
                f.target.span(),
                "a fault needs a schedule: `at = [\"3s\"]` (fixed), `every = \"4s\"` (drawn from the seed), `when = { ... }` (a trigger), or a `name` that `fault` steps inject",
            ),
            (None, Some(every), _) if every.get_ref().0.is_zero() => self.err(every.span(), "`every` must be above 0"),
            _ => {}
        }
        if let Some(when) = &f.when {
            self.trigger(when.span(), when.get_ref());
        }
        let kind = f.kind.as_str();
        for key in f.set_keys() {
            if !f.kind.keys().contains(&key) {
                let fits = if f.kind.keys().is_empty() {
                    "no other keys".to_string()
                } else {
                    format!("`{}`", f.kind.keys().join("`, `"))
                };
                self.err(f.target.span(), format!("fault `{kind}`: `{key}` does not apply; it takes {fits}"));
            }
        }
        self.fault_kind(f);
    }

    fn fault_targets(&mut self, f: &FaultSpec) {
        let (what, names): (&str, BTreeSet<&str>) = match f.kind.target() {
            FaultTarget::Service => ("service", self.s.service.keys().map(String::as_str).collect()),
            FaultTarget::Link => ("link", self.s.link.keys().map(String::as_str).collect()),
        };
        for name in f.target.get_ref().iter() {
            if !names.contains(name) {
                let msg =
                    format!("fault target `{name}` is not a defined {what}; {}", one_of(&format!("{what}s"), &names));
                self.err(f.target.span(), msg);
            }
        }
        if f.target.get_ref().0.is_empty() {
            self.err(f.target.span(), format!("fault `target` is empty; expected a {what} name"));
        }
    }

    fn fault_kind(&mut self, f: &'a FaultSpec) {
        let span = f.target.span();
        let targets = &f.target.get_ref().0;
        let link_kinds = |want: LinkKind| {
            targets.iter().filter(|t| self.s.link.get(*t).is_some_and(|l| l.kind != want)).cloned().collect::<Vec<_>>()
        };
        match f.kind {
            FaultKind::Toxic => {
                if f.toxic.is_none() {
                    self.err(
                        span.clone(),
                        "a `toxic` fault needs `toxic`, e.g. `toxic = { type = \"latency\", latency = \"200ms\" }`",
                    );
                }
                for l in link_kinds(LinkKind::Tcp) {
                    self.err(span.clone(), format!("link `{l}` is an http link; toxics need a tcp link"));
                }
            }
            FaultKind::Down => {
                for l in link_kinds(LinkKind::Tcp) {
                    self.err(span.clone(), format!("link `{l}` is an http link; `down` needs a tcp link (use an `http` fault with `abort` on http links)"));
                }
            }
            FaultKind::Http => {
                match &f.http {
                    None => self.err(
                        span.clone(),
                        "an `http` fault needs `http`, e.g. `http = { status = 503, probability = 0.5 }`",
                    ),
                    Some(h) => self.http_fault(h),
                }
                for l in link_kinds(LinkKind::Http) {
                    self.err(
                        span.clone(),
                        format!("link `{l}` is a tcp link; http faults need `kind = \"http\"` on the link"),
                    );
                }
            }
            FaultKind::Partition => {
                if !self.s.network.namespaces {
                    self.err(
                        span.clone(),
                        "partitions need `[network] namespaces = true`, so each service has its own network namespace",
                    );
                }
                if targets.len() < 2 {
                    self.err(span.clone(), "a partition needs at least two target services to split");
                }
                if let Some(cut) = &f.cut {
                    self.partition_cut(cut, targets, f.mode.is_some());
                }
            }
            FaultKind::Clock if f.offset.is_none() && f.rate.is_none() => {
                self.err(span.clone(), "a `clock` fault needs `offset` (e.g. \"-5s\") or `rate` (e.g. 2.0)");
            }
            FaultKind::DiskFull => {
                for t in targets.iter().filter(|t| self.s.service.get(*t).is_some_and(|s| s.disk.is_none())) {
                    self.err(span.clone(), format!("service `{t}` has no `disk`; a disk-full fault needs `disk = {{ path = \"{{dir}}/data\", size = \"8MiB\" }}` on it"));
                }
            }
            _ => {}
        }
        if let Some(t) = f.toxicity.as_ref().filter(|t| !(0.0..=1.0).contains(t.get_ref())) {
            self.err(t.span(), format!("toxicity {} is not a probability; expected 0 to 1", t.get_ref()));
        }
        if let Some(r) = f.rate.as_ref().filter(|r| !(r.get_ref().is_finite() && *r.get_ref() > 0.0)) {
            self.err(r.span(), format!("clock rate {} must be above 0", r.get_ref()));
        }
    }

    /// `cut` names some, not all, of the partition's targets, and replaces `mode`.
    fn partition_cut(&mut self, cut: &Spanned<Names>, targets: &[String], has_mode: bool) {
        let names = &cut.get_ref().0;
        if has_mode {
            self.err(cut.span(), "`cut` and `mode` both choose the split; give one");
        }
        for n in names.iter().filter(|n| !targets.contains(n)) {
            self.err(
                cut.span(),
                format!("`{n}` in `cut` is not one of the partition's targets ({})", targets.join(", ")),
            );
        }
        if names.is_empty() || targets.iter().all(|t| names.contains(t)) {
            self.err(
                cut.span(),
                "`cut` must name some of the targets but not all: the others are the side it is cut from",
            );
        }
    }

    fn http_fault(&mut self, h: &Spanned<HttpFaultSpec>) {
        let spec = h.get_ref();
        let n = [spec.status.is_some(), spec.delay.is_some(), spec.abort.is_some()].iter().filter(|b| **b).count();
        if n != 1 {
            self.err(h.span(), format!("`http` needs exactly one of `status`, `delay`, `abort` (found {n})"));
        }
        if spec.retry_after.is_some() && spec.status.is_none() {
            self.err(h.span(), "`retry_after` goes with `status`");
        }
        if let Some(code) = spec.status.filter(|c| !(100..=599).contains(c)) {
            self.err(h.span(), format!("status {code} is not an HTTP status; expected 100 to 599"));
        }
        if let Some(p) = spec.probability.filter(|p| !(0.0..=1.0).contains(p)) {
            self.err(h.span(), format!("probability {p} is not a probability; expected 0 to 1"));
        }
    }

    fn check(&mut self, c: &CheckSpec) {
        let label = c.label().to_string();
        for (key, span) in c.set_keys() {
            if !c.kind.keys().contains(&key) {
                let fits = if c.kind.keys().is_empty() {
                    "no other keys".to_string()
                } else {
                    format!("`{}`", c.kind.keys().join("`, `"))
                };
                self.err_or_near(
                    span,
                    &label,
                    format!("check `{label}`: `{key}` does not apply to kind `{}`; it takes {fits}", c.kind.as_str()),
                );
            }
        }
        if !self.s.action.is_empty() {
            let fs: BTreeSet<&str> = self.s.action.iter().map(|a| a.f.as_str()).collect();
            for (_, f) in c.f_names() {
                if !fs.contains(f.get_ref().as_str()) {
                    let msg = format!(
                        "check `{label}` names f `{}`, which no action has; {}",
                        f.get_ref(),
                        one_of("f names", &fs)
                    );
                    self.err(f.span(), msg);
                }
            }
        }
        match (c.kind, &c.model) {
            (CheckKind::Linearizable, None) => self.err_near(
                format!("\"{}\"", c.kind.as_str()),
                format!("check `{label}` needs `model`; expected one of {}", MODELS.join(", ")),
            ),
            (_, Some(m)) if !MODELS.contains(&m.get_ref().as_str()) => {
                self.err(m.span(), format!("unknown model `{}`; expected one of {}", m.get_ref(), MODELS.join(", ")))
            }
            _ => {}
        }
        if let Some(m) = c.mode.as_ref().filter(|m| !["at-most-once", "at-least-once"].contains(&m.get_ref().as_str()))
        {
            self.err(m.span(), format!("unknown mode `{}`; expected at-most-once or at-least-once", m.get_ref()));
        }
        for pointer in [&c.key, &c.value].into_iter().flatten() {
            if !pointer.get_ref().starts_with('/') {
                self.err(
                    pointer.span(),
                    format!("`{}` is not a JSON pointer; expected one like \"/key\"", pointer.get_ref()),
                );
            }
        }
        if c.kind == CheckKind::Bank && c.total.is_none() {
            self.err_near("\"bank\"".into(), format!("check `{label}` needs `total`, the sum every read must show"));
        }
        self.log_check(c, &label);
        self.state_check(c, &label);
        self.resources_check(c, &label);
    }

    /// resources: at least one limit, and a `service` that is defined.
    fn resources_check(&mut self, c: &CheckSpec, label: &str) {
        if c.kind != CheckKind::Resources {
            return;
        }
        if c.max_rss.is_none() && c.max_cpu.is_none() {
            self.err_near(
                "\"resources\"".into(),
                format!("check `{label}` needs `max_rss` or `max_cpu`, e.g. `max_rss = \"200MiB\"`"),
            );
        }
        if let Some(service) = c.service.as_ref().filter(|s| !self.s.service.contains_key(s.get_ref())) {
            let names = self.s.service.keys().map(String::as_str).collect();
            let msg = format!(
                "check `{label}` names service `{}`, which is not defined; {}",
                service.get_ref(),
                one_of("services", &names)
            );
            self.err(service.span(), msg);
        }
    }

    /// The state checks: a `state` source, actors, round actions, pools and
    /// the keys each kind cannot do without.
    fn state_check(&mut self, c: &CheckSpec, label: &str) {
        let near = format!("\"{}\"", c.kind.as_str());
        if !c.kind.reads_state() {
            return;
        }
        match &c.state {
            None => self.err_near(
                near.clone(),
                format!("check `{label}` needs `state`, e.g. `state = {{ sqlite = \"{{actor.home}}/db.sqlite\", query = \"SELECT * FROM t ORDER BY id\" }}`"),
            ),
            Some(state) => self.state_source(label, c.kind, state),
        }
        let twins = self.s.check.iter().filter(|o| o.kind.reads_state() && o.label() == label).count();
        if twins > 1 {
            self.err_near(near.clone(), format!("two state checks are named `{label}`; give one a distinct `name`"));
        }
        if let Some(actors) = &c.actors {
            let names: BTreeSet<&str> = if self.s.actor.is_empty() {
                ["client"].into()
            } else {
                self.s.actor.keys().map(String::as_str).collect()
            };
            for a in actors.get_ref().iter().filter(|a| !names.contains(a.as_str())) {
                let msg =
                    format!("check `{label}` names actor `{a}`, which is not defined; {}", one_of("actors", &names));
                self.err(actors.span(), msg);
            }
        }
        self.state_kind_keys(c, label, &near);
    }

    fn state_source(&mut self, label: &str, kind: CheckKind, state: &Spanned<crate::StateSource>) {
        let src = state.get_ref();
        for problem in src.shape_problems() {
            self.err(state.span(), format!("check `{label}`: `state` {problem}"));
        }
        if kind == CheckKind::Sql && !src.is_query() {
            self.err(
                state.span(),
                format!("check `{label}`: kind `sql` reads a query: `state = {{ sqlite = ..., query = ... }}` (or `postgres`, `duckdb`)"),
            );
        }
        for t in src.templates() {
            self.vars(state.span(), t, Ctx::Actor);
        }
    }

    fn state_kind_keys(&mut self, c: &CheckSpec, label: &str, near: &str) {
        let need = |key: &str, example: &str| format!("check `{label}` needs `{key}`, e.g. `{key} = {example}`");
        match c.kind {
            CheckKind::Sequence if c.field.is_none() => self.err_near(near.into(), need("field", "\"server_seq\"")),
            CheckKind::CausalOrder if c.entity.is_none() || c.op.is_none() => self.err_near(
                near.into(),
                format!(
                    "check `{label}` needs `entity` and `op`, the columns naming each event's entity and operation"
                ),
            ),
            CheckKind::OwnWrites => match (&c.pool, &c.created) {
                (None, None) => self.err_near(
                    near.into(),
                    format!("check `{label}` needs `pool` (the captures of each actor's creates) or `created` (a state listing them)"),
                ),
                (Some(p), None) => self.pool(p.span(), p.get_ref()),
                (None, Some(created)) => self.state_source(label, c.kind, created),
                (Some(_), Some(created)) => {
                    self.err(created.span(), format!("check `{label}` has both `pool` and `created`; expected one"))
                }
            },
            CheckKind::FieldMerge => match &c.edit_log {
                Some(log) => self.state_source(label, c.kind, log),
                None if c.edits.as_ref().is_none_or(|e| e.get_ref().is_empty()) => self.err_near(
                    near.into(),
                    need("edits", "[{ actor = \"alice\", entity = 1, field = \"title\", value = \"x\" }]")
                        + ", or `edit_log`, a state listing each actor's edits",
                ),
                None => {}
            },
            CheckKind::Sql => {
                let empty = c.empty.as_ref().is_some_and(|e| *e.get_ref());
                if empty == c.rows.is_some() {
                    self.err_near(
                        near.into(),
                        format!("check `{label}` needs either `rows = [[...]]` or `empty = true`"),
                    );
                }
            }
            CheckKind::Idempotent => self.idempotent_keys(c, label, near),
            _ => {}
        }
    }

    fn idempotent_keys(&mut self, c: &CheckSpec, label: &str, near: &str) {
        if let Some(r) = c.rounds.as_ref().filter(|r| *r.get_ref() == 0 || *r.get_ref() > crate::limits::MAX_ROUNDS) {
            let max = crate::limits::MAX_ROUNDS;
            self.err(r.span(), format!("check `{label}`: `rounds` is {}; expected 1 to {max}", r.get_ref()));
        }
        let labels: BTreeSet<&str> = self.s.action.iter().map(|a| a.label()).collect();
        match &c.round {
            Some(round) => {
                for a in round.get_ref().iter().filter(|a| !labels.contains(a.as_str())) {
                    let msg = format!("check `{label}`: `round` names action `{a}`, which is not defined; {}", one_of("actions", &labels));
                    self.err(round.span(), msg);
                }
                if round.get_ref().is_empty() {
                    self.err(round.span(), format!("check `{label}`: `round` is empty; expected the actions of one round, e.g. [\"sync\"]"));
                }
            }
            None if !labels.contains("sync") => self.err_near(
                near.into(),
                format!("check `{label}` needs `round`, the actions one round runs (no action is labelled `sync`, the default)"),
            ),
            None => {}
        }
    }

    fn log_check(&mut self, c: &CheckSpec, label: &str) {
        let near = format!("\"{}\"", c.kind.as_str());
        match c.kind {
            CheckKind::LogSequence if c.steps.as_ref().is_none_or(|s| s.get_ref().is_empty()) => {
                self.err_near(
                    near,
                    format!(
                        "check `{label}` needs `steps`, e.g. `steps = [{{ source = \"kv\", match = \"listening\" }}]`"
                    ),
                );
            }
            CheckKind::LogSpacing | CheckKind::LogAbsent if c.entry.is_none() => {
                self.err_near(
                    near,
                    format!(
                        "check `{label}` needs `entry`, e.g. `entry = {{ source = \"worker\", match = \"poll\" }}`"
                    ),
                );
            }
            CheckKind::LogSpacing if c.min.is_none() && c.max.is_none() => {
                self.err_near(near, format!("check `{label}` needs `min` or `max`, the spacing allowed"));
            }
            _ => {}
        }
        let matches = c.steps.iter().flat_map(|s| s.get_ref().iter()).chain(c.entry.as_ref().map(|e| e.get_ref()));
        for source in matches.filter_map(|m| m.source.as_ref()) {
            let name = source.get_ref();
            if !self.log_source_known(name) {
                let names = self.s.service.keys().map(String::as_str).collect();
                let msg = format!(
                    "log source `{name}` is not a service (or an actor, an exec step's `log`, `driver-ACTOR`, `build`); {}",
                    one_of("services", &names)
                );
                self.err(source.span(), msg);
            }
        }
    }

    fn err_or_near(&mut self, span: Range<usize>, label: &str, message: String) {
        if span == (0..0) {
            self.err_near(format!("\"{label}\""), message);
        } else {
            self.err(span, message);
        }
    }

    fn templates<'t>(&mut self, ts: impl Iterator<Item = &'t Template>, ctx: Ctx<'a>) {
        for t in ts {
            self.template(t, ctx);
        }
    }

    fn template(&mut self, t: &Template, ctx: Ctx<'a>) {
        self.vars(t.span(), t, ctx);
    }

    fn vars(&mut self, span: Range<usize>, t: &Template, ctx: Ctx<'a>) {
        for var in t.vars() {
            if let Var::Env(name) = var {
                self.env_refs.insert(name.clone());
            }
            if let Some(msg) = self.var_problem(var, ctx) {
                self.err(span.clone(), format!("in {:?}: {msg}", t.source()));
            }
        }
    }

    fn var_problem(&self, var: &Var, ctx: Ctx<'a>) -> Option<String> {
        let in_action = matches!(ctx, Ctx::Action);
        match var {
            Var::Port(_) | Var::Dir if !matches!(ctx, Ctx::Service(_)) => {
                let what = if matches!(var, Var::Port(_)) { "{port}" } else { "{dir}" };
                Some(format!(
                    "`{what}` only applies inside a service; use `{{service.NAME.port}}` or `{{service.NAME.dir}}`"
                ))
            }
            Var::Port(Some(p)) => match ctx {
                Ctx::Service(svc) if !svc.ports.iter().any(|x| x == p) => {
                    Some(format!("this service has no port `{p}`; declare it in `ports`"))
                }
                _ => None,
            },
            Var::ServicePort { service, port } => self.service_port_problem(service, port.as_deref(), ctx),
            Var::ServiceDir(_) if matches!(ctx, Ctx::Build) => {
                Some("service directories do not exist yet when builds run".into())
            }
            Var::ServiceDir(service) if !self.s.service.contains_key(service) => Some(self.no_service(service)),
            Var::ServiceHost(_) if matches!(ctx, Ctx::Build) => {
                Some("service addresses do not exist yet when builds run".into())
            }
            Var::ServiceHost(service) if !self.s.service.contains_key(service) => Some(self.no_service(service)),
            Var::Host if !matches!(ctx, Ctx::Service(_)) => {
                Some("`{host}` only applies inside a service; use `{service.NAME.host}`".into())
            }
            Var::Matrix(key) if !self.s.matrix.contains_key(key) => {
                let names = self.s.matrix.keys().map(String::as_str).collect();
                Some(format!("matrix dimension `{key}` is not defined; {}", one_of("dimensions", &names)))
            }
            Var::LinkPort(_) if matches!(ctx, Ctx::Build) => Some("links do not exist yet when builds run".into()),
            Var::LinkPort(link) if !self.s.link.contains_key(link) => {
                let names = self.s.link.keys().map(String::as_str).collect();
                Some(format!("link `{link}` is not defined; {}", one_of("links", &names)))
            }
            Var::ActorName | Var::ActorHome if !matches!(ctx, Ctx::Actor | Ctx::Action) => {
                Some("`{actor.*}` only applies to actors, clients and actions".into())
            }
            Var::Value | Var::ValuePath(_) | Var::Target | Var::Int { .. } | Var::Seq | Var::Pick(_) if !in_action => {
                Some("`{value}`, `{target}`, `{int}`, `{seq}` and `{pick}` only apply inside actions".into())
            }
            Var::Pick(pool) if !self.pools.contains(pool.as_str()) => {
                Some(format!("pool `{pool}` is never filled by a `capture`"))
            }
            Var::Bin(name) if self.s.version.is_empty() => {
                Some(format!("`{{bin.{name}}}` needs `[version.NAME]` tables naming `{name}`"))
            }
            Var::Bin(name) => {
                let missing: Vec<&str> = self
                    .s
                    .version
                    .iter()
                    .filter(|(_, bins)| !bins.contains_key(name))
                    .map(|(v, _)| v.as_str())
                    .collect();
                (!missing.is_empty())
                    .then(|| format!("binary `{name}` is not named in [version.{}]", missing.join("], [version.")))
            }
            Var::CaseDir if !self.in_resume => Some("`{case.dir}` only applies inside `[resume]`".into()),
            Var::CaseName if !self.in_resume => Some("`{case.name}` only applies inside `[resume]`".into()),
            Var::Dataset(name) if !self.s.dataset.contains_key(name) => {
                let names = self.s.dataset.keys().map(String::as_str).collect();
                Some(format!("dataset `{name}` is not defined; {}", one_of("datasets", &names)))
            }
            Var::StopDrain | Var::StopShutdown if !matches!(ctx, Ctx::Service(_)) => {
                Some("`{stop.drain}` and `{stop.shutdown}` only apply inside a service".into())
            }
            _ => None,
        }
    }

    fn service_port_problem(&self, service: &str, port: Option<&str>, ctx: Ctx<'a>) -> Option<String> {
        if matches!(ctx, Ctx::Build) {
            return Some("service ports are not allocated yet when builds run".into());
        }
        let Some(svc) = self.s.service.get(service) else { return Some(self.no_service(service)) };
        match port {
            Some(p) if !svc.ports.iter().any(|x| x == p) => Some(format!("service `{service}` has no port `{p}`")),
            _ => None,
        }
    }

    fn no_service(&self, service: &str) -> String {
        let names = self.s.service.keys().map(String::as_str).collect();
        format!("service `{service}` is not defined; {}", one_of("services", &names))
    }
}

fn one_of(what: &str, names: &BTreeSet<&str>) -> String {
    if names.is_empty() {
        format!("there are no {what}")
    } else {
        let list: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
        format!("expected one of the {what}: {}", list.join(", "))
    }
}

fn is_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// A shell variable name: a letter or `_`, then letters, digits and `_`.
fn is_env_name(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The signal number of a stop signal name, if it is one shakedown accepts.
pub fn signal_number(name: &str) -> Option<i32> {
    let name = name.strip_prefix("SIG").unwrap_or(name);
    Some(match name {
        "TERM" => 15,
        "INT" => 2,
        "QUIT" => 3,
        "HUP" => 1,
        "KILL" => 9,
        _ => return None,
    })
}

#[cfg(test)]
mod resources_tests {
    const BASE: &str = "name = \"t\"\n[service.kv]\ncommand = [\"kv\"]\n[[check]]\nkind = \"resources\"\n";

    #[test]
    fn resources_checks_parse_with_sizes_and_durations() {
        let s = crate::parse(&format!("{BASE}service = \"kv\"\nmax_rss = \"200MiB\"\nmax_cpu = \"2s\"\n"), "t.toml")
            .unwrap();
        let c = &s.check[0];
        assert_eq!(c.kind.as_str(), "resources");
        assert_eq!(c.max_rss.as_ref().map(|b| b.get_ref().0), Some(200 << 20));
        assert_eq!(c.max_cpu.map(|d| d.0), Some(std::time::Duration::from_secs(2)));
        assert_eq!(c.service.as_ref().map(|s| s.get_ref().as_str()), Some("kv"));
        assert!(crate::parse(&format!("{BASE}max_rss = 1048576\n"), "t.toml").is_ok());
    }

    #[test]
    fn bad_resources_checks_are_explained() {
        let cases = [
            ("", "t.toml:5:8: check `resources` needs `max_rss` or `max_cpu`"),
            (
                "max_rss = \"1MiB\"\nservice = \"db\"\n",
                "t.toml:7:11: check `resources` names service `db`, which is not defined",
            ),
            ("max_rss = \"lots\"\n", "invalid size \"lots\""),
            ("max_cpu = \"soon\"\n", "invalid duration \"soon\""),
            ("max_rss = \"1MiB\"\nstate = { tree = \"a\" }\n", "`state` does not apply to kind `resources`"),
        ];
        for (extra, want) in cases {
            let err = crate::parse(&format!("{BASE}{extra}"), "t.toml").unwrap_err().to_string();
            assert!(err.contains(want), "{extra:?}: {err}");
        }
    }
}
