//! Sync events and the merge rule: field-level last-writer-wins by `(clock, actor)`, or the whole-row bug.
//!
//! An event carries the fields it sets and one Lamport `clock`; each field of
//! an entity remembers the `(clock, actor)` of the event that last set it. A
//! field takes an event's value only if the event's version is greater, so
//! applying a set of events in any order, any number of times, gives the same
//! entity: every actor converges.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Every field of an entity, in column order.
pub const FIELDS: [&str; 6] = ["title", "status", "priority", "assignee", "deleted", "created_by"];
/// The fields `create` and `update` may set with `--field k=v`.
pub const USER_FIELDS: [&str; 4] = ["title", "status", "priority", "assignee"];
/// What each kind of event is.
pub const ACTIONS: [&str; 5] = ["create", "update", "delete", "restore", "undo"];

/// One change to one entity, as pushed, stored and pulled.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Made by the client that created the event; a retried push reuses it.
    pub event_id: String,
    pub actor: String,
    pub entity_id: String,
    /// One of [`ACTIONS`].
    pub action: String,
    /// The actor's Lamport clock when it made the event.
    pub clock: u64,
    /// The fields the event sets (all of [`FIELDS`] with the whole-row bug);
    /// `None` clears a field.
    pub fields: BTreeMap<String, Option<String>>,
}

/// Why an event is not one the server or a client accepts.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("check event {event_id:?}: {why}")]
    Invalid { event_id: String, why: String },
}

impl Event {
    /// The version every field the event sets gets.
    pub fn version(&self) -> Version {
        Version { clock: self.clock, actor: self.actor.clone() }
    }

    /// Checks ids, action and field names, so nothing malformed reaches a log.
    pub fn validate(&self) -> Result<(), EventError> {
        let invalid = |why: String| Err(EventError::Invalid { event_id: self.event_id.clone(), why });
        for (name, value) in [("event_id", &self.event_id), ("actor", &self.actor), ("entity_id", &self.entity_id)] {
            if value.is_empty() || value.len() > 200 {
                return invalid(format!("{name} must be 1 to 200 bytes"));
            }
        }
        if !ACTIONS.contains(&self.action.as_str()) {
            return invalid(format!("unknown action {:?}", self.action));
        }
        if let Some(name) = self.fields.keys().find(|name| !FIELDS.contains(&name.as_str())) {
            return invalid(format!("unknown field {name:?}"));
        }
        if self.fields.is_empty() {
            return invalid("sets no field".to_string());
        }
        Ok(())
    }
}

/// When and by whom a field was last set; ordered by clock, then actor.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Version {
    pub clock: u64,
    pub actor: String,
}

/// An entity's fields and their versions: what a client stores per entity.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Row {
    pub values: BTreeMap<String, Option<String>>,
    pub versions: BTreeMap<String, Version>,
}

impl Row {
    /// The value of `field`, `None` if unset.
    pub fn get(&self, field: &str) -> Option<&str> {
        self.values.get(field).and_then(|value| value.as_deref())
    }

    /// The newest version of any field: the row's version under the whole-row bug.
    fn newest(&self) -> Option<&Version> {
        self.versions.values().max()
    }
}

/// How events are merged into rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Merge {
    /// Each field independently: the correct build.
    FieldLevel,
    /// The whole row from the newest event: the `whole-row-merge` bug.
    WholeRow,
}

/// Applies `event` to `row`; returns whether anything changed.
pub fn apply(row: &mut Row, event: &Event, merge: Merge) -> bool {
    let version = event.version();
    match merge {
        Merge::FieldLevel => {
            let mut changed = false;
            for (field, value) in &event.fields {
                if row.versions.get(field).is_none_or(|current| *current < version) {
                    row.values.insert(field.clone(), value.clone());
                    row.versions.insert(field.clone(), version.clone());
                    changed = true;
                }
            }
            changed
        }
        Merge::WholeRow => {
            if row.newest().is_some_and(|newest| *newest >= version) {
                return false;
            }
            for field in FIELDS {
                let value = event.fields.get(field).cloned().flatten();
                row.values.insert(field.to_string(), value);
                row.versions.insert(field.to_string(), version.clone());
            }
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(actor: &str, clock: u64, fields: &[(&str, &str)]) -> Event {
        Event {
            event_id: format!("{actor}.{clock}"),
            actor: actor.to_string(),
            entity_id: "e".to_string(),
            action: "update".to_string(),
            clock,
            fields: fields.iter().map(|(k, v)| (k.to_string(), Some(v.to_string()))).collect(),
        }
    }

    fn merged(events: &[&Event], merge: Merge) -> Row {
        let mut row = Row::default();
        for event in events {
            apply(&mut row, event, merge);
        }
        row
    }

    #[test]
    fn field_level_merge_keeps_edits_to_different_fields_in_any_order() {
        let create = event("a", 1, &[("title", "t"), ("status", "open"), ("priority", "P2")]);
        let status = event("a", 2, &[("status", "done")]);
        let priority = event("b", 2, &[("priority", "P0")]);
        let orders = [[&create, &status, &priority], [&priority, &status, &create], [&status, &create, &priority]];
        for order in orders {
            let row = merged(&order, Merge::FieldLevel);
            assert_eq!(
                (row.get("title"), row.get("status"), row.get("priority")),
                (Some("t"), Some("done"), Some("P0"))
            );
        }
        // Applying again changes nothing.
        let mut row = merged(&orders[0], Merge::FieldLevel);
        assert!(!apply(&mut row, &priority, Merge::FieldLevel));
    }

    #[test]
    fn same_field_ties_break_by_actor() {
        let a = event("a", 3, &[("status", "from a")]);
        let b = event("b", 3, &[("status", "from b")]);
        assert_eq!(merged(&[&a, &b], Merge::FieldLevel).get("status"), Some("from b"));
        assert_eq!(merged(&[&b, &a], Merge::FieldLevel).get("status"), Some("from b"));
    }

    #[test]
    fn whole_row_merge_loses_one_of_two_edits_but_converges() {
        let row_a = [("title", "t"), ("status", "done"), ("priority", "P2")];
        let row_b = [("title", "t"), ("status", "open"), ("priority", "P0")];
        let (a, b) = (event("a", 2, &row_a), event("b", 2, &row_b));
        let one = merged(&[&a, &b], Merge::WholeRow);
        assert_eq!(one, merged(&[&b, &a], Merge::WholeRow));
        assert_eq!((one.get("status"), one.get("priority")), (Some("open"), Some("P0")), "a's status edit is lost");
    }

    #[test]
    fn validates_events() {
        assert_eq!(event("a", 1, &[("title", "t")]).validate(), Ok(()));
        let mut bad = event("a", 1, &[("colour", "red")]);
        assert!(bad.validate().unwrap_err().to_string().contains("unknown field"));
        bad = event("a", 1, &[("title", "t")]);
        bad.action = "merge".to_string();
        assert!(bad.validate().is_err());
        bad = event("", 1, &[("title", "t")]);
        assert!(bad.validate().is_err());
        assert!(event("a", 1, &[]).validate().is_err());
    }
}
