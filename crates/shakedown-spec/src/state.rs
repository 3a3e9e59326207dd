//! State sources and declared edits for the state checks (`converge`,
//! `idempotent`, `field-merge`, `sql`, ...): where an actor's state is read
//! from, and what the checks compare it with.

use crate::template::Template;
use crate::values::Dur;
use serde::Deserialize;

/// `state = { sqlite = "{actor.home}/db.sqlite", query = "SELECT ..." }`,
/// `{ postgres = "postgresql://...", query = ... }`, `{ duckdb = PATH, query
/// = ... }`, `state = { command = ["app", "dump", "--json"] }` or
/// `state = { tree = "{actor.home}/files" }`: exactly one of `sqlite`,
/// `postgres`, `duckdb`, `command`, `tree`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateSource {
    /// An SQLite database file, opened read-only; needs `query`.
    pub sqlite: Option<Template>,
    /// A PostgreSQL connection string (a `postgresql://` URL or `key=value`
    /// pairs), queried in a read-only transaction; needs `query`.
    pub postgres: Option<Template>,
    /// A DuckDB database file, opened read-only (needs shakedown built with
    /// the `duckdb` feature); needs `query`.
    pub duckdb: Option<Template>,
    /// The query whose rows are the state (order them: `ORDER BY`).
    pub query: Option<Template>,
    /// A command (no shell) whose standard output is JSON; run in the
    /// actor's home with the actor's env, like exec actions.
    pub command: Option<Vec<Template>>,
    /// A directory: every regular file's relative path, size and SHA-256.
    pub tree: Option<Template>,
    /// How long reading the state may take (default 10s).
    pub timeout: Option<Dur>,
}

impl StateSource {
    /// Every template of the source.
    pub fn templates(&self) -> impl Iterator<Item = &Template> {
        self.sqlite
            .iter()
            .chain(self.postgres.iter())
            .chain(self.duckdb.iter())
            .chain(self.query.iter())
            .chain(self.command.iter().flatten())
            .chain(self.tree.iter())
    }

    /// The kinds that are set, by key (valid sources have one).
    fn kinds(&self) -> Vec<&'static str> {
        let set = [
            ("sqlite", self.sqlite.is_some()),
            ("postgres", self.postgres.is_some()),
            ("duckdb", self.duckdb.is_some()),
            ("command", self.command.is_some()),
            ("tree", self.tree.is_some()),
        ];
        set.into_iter().filter(|(_, on)| *on).map(|(k, _)| k).collect()
    }

    /// Whether the source is a database query (`sqlite`, `postgres` or `duckdb`).
    pub fn is_query(&self) -> bool {
        self.sqlite.is_some() || self.postgres.is_some() || self.duckdb.is_some()
    }

    /// What is wrong with the source's shape, one message per problem, each
    /// reading after "`state` ...": not exactly one kind, a database without
    /// `query` or a `query` without a database, an empty command.
    pub fn shape_problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let kinds = self.kinds();
        if kinds.len() != 1 {
            let found = if kinds.is_empty() { "none".to_string() } else { kinds.join(" and ") };
            out.push(format!("needs exactly one of `sqlite`, `postgres`, `duckdb` (each with `query`), `command` or `tree` (found {found})"));
        }
        for db in kinds.iter().filter(|k| ["sqlite", "postgres", "duckdb"].contains(k)) {
            if self.query.is_none() {
                out.push(format!("needs `query` with `{db}`, e.g. `query = \"SELECT * FROM items ORDER BY id\"`"));
            }
        }
        if self.query.is_some() && !self.is_query() {
            out.push("has `query` but no database to run it on (`sqlite`, `postgres` or `duckdb`)".to_string());
        }
        if self.command.as_ref().is_some_and(Vec::is_empty) {
            out.push("has an empty `command`; expected the program and its arguments".to_string());
        }
        out
    }

    /// Whether the source reads per actor (`{actor.name}` or `{actor.home}` in it).
    pub fn per_actor(&self) -> bool {
        self.templates().any(|t| t.vars().any(|v| matches!(v, crate::Var::ActorName | crate::Var::ActorHome)))
    }
}

/// `field-merge`: one edit an actor made, which must survive in every
/// actor's final state: the entity's `field` equals `value`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldEditSpec {
    /// Who made the edit (named in failures).
    pub actor: Option<String>,
    /// The entity's id (compared as text with the state's `entity` column or key).
    pub entity: serde_json::Value,
    /// The column or JSON key edited.
    pub field: String,
    /// The value it was set to (compared as text, so 3 and "3" match).
    pub value: serde_json::Value,
}

#[cfg(test)]
mod tests {
    const BASE: &str = r#"
name = "t"
ops = 1
[actor.alice]
[actor.bob]
[client]
kind = "exec"
[[action]]
f = "create"
command = ["true"]
capture = "ids"
[[action]]
f = "sync"
weight = 0
command = ["true"]
"#;

    fn parse(checks: &str) -> Result<crate::Scenario, String> {
        crate::parse(&format!("{BASE}{checks}"), "t.toml").map_err(|e| e.to_string())
    }

    #[test]
    fn state_checks_parse_with_their_keys() {
        let s = parse(
            r#"
[[check]]
kind = "converge"
state = { sqlite = "{actor.home}/db.sqlite", query = "SELECT * FROM t ORDER BY id" }
ignore = ["updated_at"]
shared_only = true
[[check]]
kind = "idempotent"
state = { tree = "{actor.home}/files" }
rounds = 2
[[check]]
kind = "field-merge"
state = { command = ["dump", "{actor.name}"], timeout = "2s" }
edits = [{ actor = "alice", entity = 1, field = "title", value = "x" }]
[[check]]
kind = "sql"
name = "no orphans"
state = { sqlite = "{run.dir}/db", query = "SELECT 1" }
rows = [[1]]
[[check]]
kind = "own-writes"
state = { sqlite = "{actor.home}/db", query = "SELECT id FROM t" }
pool = "ids"
"#,
        )
        .unwrap();
        assert!(s.check.iter().all(|c| c.kind.reads_state()));
        assert!(s.check[0].state.as_ref().unwrap().get_ref().per_actor());
        assert_eq!(s.check[0].shared_only.as_ref().map(|b| *b.get_ref()), Some(true));
        assert!(!s.check[3].state.as_ref().unwrap().get_ref().per_actor());
        assert_eq!((s.check[1].n_rounds(), s.check[1].round_labels()), (2, vec!["sync".to_string()]));
        assert_eq!(s.check[2].edits.as_ref().unwrap().get_ref()[0].value, serde_json::json!("x"));
    }

    #[test]
    fn bad_state_checks_are_located() {
        let cases = [
            ("[[check]]\nkind = \"converge\"\n", "t.toml:17:8: check `converge` needs `state`"),
            (
                "[[check]]\nkind = \"converge\"\nstate = { tree = \"a\", command = [\"b\"] }\n",
                "t.toml:18:9: check `converge`: `state` needs exactly one of `sqlite`, `postgres`, `duckdb` (each with `query`), `command` or `tree` (found command and tree)",
            ),
            ("[[check]]\nkind = \"sql\"\nstate = { sqlite = \"a\" }\nempty = true\n", "`state` needs `query` with `sqlite`"),
            ("[[check]]\nkind = \"sql\"\nstate = { postgres = \"postgresql://127.0.0.1/x\" }\nempty = true\n", "`state` needs `query` with `postgres`"),
            ("[[check]]\nkind = \"converge\"\nstate = { tree = \"a\", query = \"q\" }\n", "`state` has `query` but no database"),
            ("[[check]]\nkind = \"converge\"\nstate = { command = [] }\n", "`state` has an empty `command`"),
            ("[[check]]\nkind = \"converge\"\nstate = { }\n", "(found none)"),
            ("[[check]]\nkind = \"sql\"\nstate = { tree = \"a\" }\nempty = true\n", "kind `sql` reads a query: `state = { sqlite"),
            ("[[check]]\nkind = \"sql\"\nstate = { sqlite = \"a\", query = \"q\" }\n", "needs either `rows = [[...]]` or `empty = true`"),
            (
                "[[check]]\nkind = \"converge\"\nstate = { tree = \"a\" }\nactors = [\"zed\"]\n",
                "t.toml:19:10: check `converge` names actor `zed`, which is not defined",
            ),
            (
                "[[check]]\nkind = \"idempotent\"\nstate = { tree = \"a\" }\nround = [\"push\"]\n",
                "`round` names action `push`, which is not defined",
            ),
            ("[[check]]\nkind = \"idempotent\"\nstate = { tree = \"a\" }\nrounds = 0\n", "`rounds` is 0; expected 1 to 100"),
            ("[[check]]\nkind = \"sequence\"\nstate = { tree = \"a\" }\n", "needs `field`"),
            ("[[check]]\nkind = \"causal-order\"\nstate = { tree = \"a\" }\nop = \"op\"\n", "needs `entity` and `op`"),
            ("[[check]]\nkind = \"own-writes\"\nstate = { tree = \"a\" }\npool = \"nope\"\n", "pool `nope` is never filled"),
            ("[[check]]\nkind = \"field-merge\"\nstate = { tree = \"a\" }\nedits = []\n", "needs `edits`"),
            ("[[check]]\nkind = \"field-merge\"\nstate = { tree = \"a\" }\nedit_log = { tree = \"b\", sqlite = \"c\" }\n", "(found sqlite and tree)"),
            ("[[check]]\nkind = \"own-writes\"\nstate = { tree = \"a\" }\n", "needs `pool` (the captures of each actor's creates) or `created`"),
            (
                "[[check]]\nkind = \"own-writes\"\nstate = { tree = \"a\" }\npool = \"ids\"\ncreated = { tree = \"b\" }\n",
                "has both `pool` and `created`; expected one",
            ),
            (
                "[[check]]\nkind = \"own-writes\"\nstate = { tree = \"a\" }\ncreated = { sqlite = \"b\" }\n",
                "`state` needs `query` with `sqlite`",
            ),
            ("[[check]]\nkind = \"converge\"\nstate = { tree = \"{port}\" }\n", "`{port}` only applies inside a service"),
            ("[[check]]\nkind = \"set\"\nignore = [\"x\"]\n", "`ignore` does not apply to kind `set`"),
            ("[[check]]\nkind = \"converge\"\nstate = { tree = \"a\" }\nrows = [[1]]\n", "`rows` does not apply to kind `converge`"),
            ("[[check]]\nkind = \"sequence\"\nstate = { tree = \"a\" }\nfield = \"f\"\nshared_only = true\n", "`shared_only` does not apply to kind `sequence`"),
            (
                "[[check]]\nkind = \"converge\"\nstate = { tree = \"a\" }\n[[check]]\nkind = \"converge\"\nstate = { tree = \"b\" }\n",
                "two state checks are named `converge`",
            ),
        ];
        for (checks, want) in cases {
            let err = parse(checks).unwrap_err();
            assert!(err.contains(want), "{checks}\nwanted {want:?} in:\n{err}");
        }
    }
}
