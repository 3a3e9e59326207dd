//! State sources and declared edits for the state checks (`converge`,
//! `idempotent`, `field-merge`, `sql`, ...): where an actor's state is read
//! from, and what the checks compare it with.

use crate::template::Template;
use crate::values::Dur;
use serde::Deserialize;

/// `state = { sqlite = "{actor.home}/db.sqlite", query = "SELECT ..." }`,
/// `state = { command = ["app", "dump", "--json"] }` or
/// `state = { tree = "{actor.home}/files" }`: exactly one of `sqlite`,
/// `command`, `tree`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateSource {
    /// An SQLite database file, opened read-only; needs `query`.
    pub sqlite: Option<Template>,
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
        self.sqlite.iter().chain(self.query.iter()).chain(self.command.iter().flatten()).chain(self.tree.iter())
    }

    /// How many of `sqlite`, `command`, `tree` are set (valid sources have one).
    pub fn n_kinds(&self) -> usize {
        [self.sqlite.is_some(), self.command.is_some(), self.tree.is_some()].iter().filter(|b| **b).count()
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
                "t.toml:18:9: check `converge`: `state` needs exactly one of `sqlite`, `command`, `tree` (found 2)",
            ),
            ("[[check]]\nkind = \"sql\"\nstate = { sqlite = \"a\" }\nempty = true\n", "`state` needs `sqlite` and `query` together"),
            ("[[check]]\nkind = \"sql\"\nstate = { tree = \"a\" }\nempty = true\n", "kind `sql` reads `state = { sqlite"),
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
            ("[[check]]\nkind = \"field-merge\"\nstate = { tree = \"a\" }\nedit_log = { tree = \"b\", sqlite = \"c\" }\n", "exactly one of `sqlite`, `command`, `tree` (found 2)"),
            ("[[check]]\nkind = \"own-writes\"\nstate = { tree = \"a\" }\n", "needs `pool` (the captures of each actor's creates) or `created`"),
            (
                "[[check]]\nkind = \"own-writes\"\nstate = { tree = \"a\" }\npool = \"ids\"\ncreated = { tree = \"b\" }\n",
                "has both `pool` and `created`; expected one",
            ),
            (
                "[[check]]\nkind = \"own-writes\"\nstate = { tree = \"a\" }\ncreated = { sqlite = \"b\" }\n",
                "`state` needs `sqlite` and `query` together",
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
