//! The kv service's state and its log (a [`Journal`]): plan, persist, apply, replay.
//!
//! Invariant: mutations are serialized by the journal lock and each is recorded
//! in the log before it is applied, so log order equals apply order and, in the
//! fsync mode, the in-memory state never shows a write that is not durable
//! (unless the `ignore-write-errors` bug applies writes whose append failed).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::journal::{self, Journal};
pub use crate::journal::{Durability, JournalError, Recovery};

/// Name of the log file inside the data directory.
pub const LOG_FILE: &str = "kv.log";

/// Why the store could not open, replay or write its log.
pub type StoreError = JournalError;

/// A request that may change the state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Put { key: String, value: String },
    Delete { key: String },
    Cas { key: String, from: String, to: String },
    SetAdd { set: String, element: String },
}

/// What a command did, as the HTTP layer reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Done; the text is the response body.
    Done(String),
    NotFound,
    Mismatch,
}

/// One log entry: a state change that has already been decided.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Mutation {
    Put { key: String, value: String },
    Delete { key: String },
    SetAdd { set: String, element: String },
}

/// A set element as `GET /set/{name}` reports it: integers before strings,
/// integers by value, so `[2, 10, "a"]` rather than `["10", "2", "a"]`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(untagged)]
pub enum Element {
    Int(i64),
    Str(String),
}

/// Keys and sets in memory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    values: BTreeMap<String, String>,
    sets: BTreeMap<String, BTreeSet<String>>,
}

impl State {
    /// Decides what `command` does against this state, without changing it.
    pub fn plan(&self, command: Command) -> (Outcome, Option<Mutation>) {
        match command {
            Command::Put { key, value } => (Outcome::Done(value.clone()), Some(Mutation::Put { key, value })),
            Command::Delete { key } => match self.values.get(&key) {
                None => (Outcome::NotFound, None),
                Some(old) => (Outcome::Done(old.clone()), Some(Mutation::Delete { key })),
            },
            Command::Cas { key, from, to } => match self.values.get(&key) {
                None => (Outcome::NotFound, None),
                Some(current) if *current != from => (Outcome::Mismatch, None),
                Some(_) => (Outcome::Done(to.clone()), Some(Mutation::Put { key, value: to })),
            },
            Command::SetAdd { set, element } => {
                let present = self.sets.get(&set).is_some_and(|s| s.contains(&element));
                let mutation = (!present).then(|| Mutation::SetAdd { set, element: element.clone() });
                (Outcome::Done(element), mutation)
            }
        }
    }

    pub fn apply(&mut self, mutation: Mutation) {
        match mutation {
            Mutation::Put { key, value } => {
                self.values.insert(key, value);
            }
            Mutation::Delete { key } => {
                self.values.remove(&key);
            }
            Mutation::SetAdd { set, element } => {
                self.sets.entry(set).or_default().insert(element);
            }
        }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// The elements of set `name`, sorted and deduplicated (empty if absent).
    pub fn elements(&self, name: &str) -> Vec<Element> {
        let raw = self.sets.get(name).into_iter().flatten();
        let mut elements: Vec<Element> = raw.map(|e| element_from(e)).collect();
        elements.sort();
        // "5" and "05" are different strings but the same number.
        elements.dedup();
        elements
    }
}

fn element_from(raw: &str) -> Element {
    raw.parse::<i64>().map_or_else(|_| Element::Str(raw.to_string()), Element::Int)
}

/// The state plus the log that makes it durable.
#[derive(Debug)]
pub struct Store {
    journal: Mutex<Journal>,
    state: RwLock<State>,
    /// The `ignore-write-errors` bug: apply a mutation even when its log append failed.
    ignore_write_errors: bool,
}

impl Store {
    /// Creates `dir` if needed, replays its log and opens it for appending.
    pub fn open(dir: &Path, durability: Durability) -> Result<(Store, Recovery), StoreError> {
        let (journal, mutations, recovery) = journal::open(dir, LOG_FILE, durability)?;
        let mut state = State::default();
        mutations.into_iter().for_each(|m| state.apply(m));
        let store = Store { journal: Mutex::new(journal), state: RwLock::new(state), ignore_write_errors: false };
        Ok((store, recovery))
    }

    /// The `ignore-write-errors` bug: [`Store::execute`] applies a mutation
    /// and reports success even when the log append failed.
    pub fn ignoring_write_errors(mut self) -> Store {
        self.ignore_write_errors = true;
        self
    }

    /// Runs `command`: plans it, records the mutation in the log, then applies it.
    /// Blocks on disk I/O; call it from a blocking thread.
    pub fn execute(&self, command: Command) -> Result<Outcome, StoreError> {
        let mut journal = self.journal.lock().expect("kv journal lock poisoned");
        let (outcome, mutation) = self.read(|state| state.plan(command));
        if let Some(mutation) = mutation {
            match journal.record(&mutation) {
                Ok(()) => {}
                // The bug: the write is acknowledged but lives only in memory.
                Err(_) if self.ignore_write_errors => {}
                Err(e) => return Err(e),
            }
            self.state.write().expect("kv state lock poisoned").apply(mutation);
        }
        Ok(outcome)
    }

    /// Runs `f` on the current state.
    pub fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self.state.read().expect("kv state lock poisoned"))
    }

    /// Writes buffered entries recorded at least `min_age` ago and syncs them;
    /// returns how many were written. A no-op in [`Durability::SyncEachWrite`].
    pub fn flush(&self, min_age: Duration) -> Result<usize, StoreError> {
        let mut journal = self.journal.lock().expect("kv journal lock poisoned");
        journal.flush(min_age)
    }
}

#[cfg(test)]
mod tests;
