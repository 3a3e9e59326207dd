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
