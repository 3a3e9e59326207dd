//! Building scenarios in Rust. The builder writes the same TOML a scenario
//! file would hold and parses it, so code-built scenarios are validated exactly
//! like files and can be saved as one.

use shakedown_spec::{Scenario, SpecErrors};
use toml::{Table, Value};

/// A scenario under construction.
#[derive(Debug, Clone, Default)]
pub struct ScenarioBuilder {
    doc: Table,
}

/// One `[[action]]` under construction.
#[derive(Debug, Clone, Default)]
pub struct Action {
    table: Table,
}

fn strings<I: IntoIterator<Item = S>, S: Into<String>>(items: I) -> Value {
    Value::Array(items.into_iter().map(|s| Value::String(s.into())).collect())
}

fn table_mut<'a>(doc: &'a mut Table, path: &[&str]) -> &'a mut Table {
    let mut t = doc;
    for key in path {
        t = t
            .entry(key.to_string())
            .or_insert_with(|| Value::Table(Table::new()))
            .as_table_mut()
            .expect("builder keeps tables as tables");
    }
    t
}

fn push(doc: &mut Table, key: &str, item: Table) {
    let arr = doc.entry(key.to_string()).or_insert_with(|| Value::Array(Vec::new()));
    arr.as_array_mut().expect("builder keeps arrays as arrays").push(Value::Table(item));
}

impl ScenarioBuilder {
    pub fn new(name: &str) -> ScenarioBuilder {
        let mut doc = Table::new();
        doc.insert("name".into(), Value::String(name.into()));
        ScenarioBuilder { doc }
    }

    fn set(mut self, key: &str, v: Value) -> Self {
        self.doc.insert(key.into(), v);
        self
    }

    pub fn seed(self, seed: u64) -> Self {
        // TOML integers stop at i64; the scenario reads larger seeds as text.
        self.set("seed", i64::try_from(seed).map_or_else(|_| Value::String(seed.to_string()), Value::Integer))
    }

    pub fn clients(self, n: usize) -> Self {
        self.set("clients", Value::Integer(n as i64))
    }

    pub fn ops(self, n: u64) -> Self {
        self.set("ops", Value::Integer(n as i64))
    }

    /// A humantime duration such as `"3s"`.
    pub fn duration(self, d: &str) -> Self {
        self.set("duration", Value::String(d.into()))
    }

    pub fn service<I: IntoIterator<Item = S>, S: Into<String>>(mut self, name: &str, command: I) -> Self {
        table_mut(&mut self.doc, &["service", name]).insert("command".into(), strings(command));
        self
    }

    /// The service is ready once a line of its output matches `pattern`.
    pub fn ready_log(mut self, service: &str, pattern: &str) -> Self {
        let mut ready = Table::new();
        ready.insert("log".into(), Value::String(pattern.into()));
        table_mut(&mut self.doc, &["service", service]).insert("ready".into(), Value::Table(ready));
        self
    }

    pub fn actor(mut self, name: &str) -> Self {
        table_mut(&mut self.doc, &["actor", name]);
        self
    }

    pub fn http_client(mut self, base: &str) -> Self {
        let client = table_mut(&mut self.doc, &["client"]);
        client.insert("kind".into(), Value::String("http".into()));
        client.insert("base".into(), Value::String(base.into()));
        self
    }

    pub fn exec_client(mut self) -> Self {
        table_mut(&mut self.doc, &["client"]).insert("kind".into(), Value::String("exec".into()));
        self
    }

    pub fn action(mut self, a: Action) -> Self {
        push(&mut self.doc, "action", a.table);
        self
    }

    pub fn finally(mut self, label: &str) -> Self {
        let arr = self.doc.entry("finally".to_string()).or_insert_with(|| Value::Array(Vec::new()));
        arr.as_array_mut().expect("finally is an array").push(Value::String(label.into()));
        self
    }

    /// A fault drawn from the seed about every `every`.
    pub fn fault_every(mut self, kind: &str, target: &str, every: &str) -> Self {
        let mut f = Table::new();
        f.insert("kind".into(), Value::String(kind.into()));
        f.insert("target".into(), Value::String(target.into()));
        f.insert("every".into(), Value::String(every.into()));
        push(&mut self.doc, "fault", f);
        self
    }

    pub fn check(mut self, kind: &str) -> Self {
        let mut c = Table::new();
        c.insert("kind".into(), Value::String(kind.into()));
        push(&mut self.doc, "check", c);
        self
    }

    /// The scenario as a TOML file.
    pub fn to_toml(&self) -> String {
        toml::to_string(&self.doc).expect("a TOML table always serializes")
    }

    /// Parses and validates what was built.
    pub fn build(&self) -> Result<Scenario, SpecErrors> {
        shakedown_spec::parse(&self.to_toml(), "<builder>")
    }
}

impl Action {
    pub fn new(f: &str) -> Action {
        let mut table = Table::new();
        table.insert("f".into(), Value::String(f.into()));
        Action { table }
    }

    fn set(mut self, key: &str, v: Value) -> Self {
        self.table.insert(key.into(), v);
        self
    }

    pub fn name(self, name: &str) -> Self {
        self.set("name", Value::String(name.into()))
    }

    pub fn weight(self, w: u32) -> Self {
        self.set("weight", Value::Integer(i64::from(w)))
    }

    /// A value template such as `"{int 0..5}"`.
    pub fn value(self, v: &str) -> Self {
        self.set("value", Value::String(v.into()))
    }

    pub fn request(self, method: &str, path: &str) -> Self {
        let mut r = Table::new();
        r.insert("method".into(), Value::String(method.into()));
        r.insert("path".into(), Value::String(path.into()));
        self.set("request", Value::Table(r))
    }

    pub fn command<I: IntoIterator<Item = S>, S: Into<String>>(self, argv: I) -> Self {
        self.set("command", strings(argv))
    }

    /// Where the completion value comes from, e.g. `"body:json"`.
    pub fn result(self, spec: &str) -> Self {
        self.set("result", Value::String(spec.into()))
    }

    pub fn capture(self, pool: &str) -> Self {
        self.set("capture", Value::String(pool.into()))
    }

    pub fn target(self, pool: &str) -> Self {
        self.set("target", Value::String(pool.into()))
    }
}
