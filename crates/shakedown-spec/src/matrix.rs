//! Matrices: a scenario runs once per cell (one value per dimension), and
//! guards (`only`, `except`) keep the scenario, an action, a fault or a check
//! to some cells. A guarded-out part is dropped from that cell's copy of the
//! scenario, with a one-line reason to print.

use crate::model::Scenario;
use crate::values::Names;
use serde::Deserialize;
use std::collections::BTreeMap;

/// `{ engine = "sqlite" }` or `{ engine = ["a", "b"], version = "2" }`: a
/// cell matches when, for every key, its value is one of those listed.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct Guard(pub BTreeMap<String, Names>);

pub type Cell = BTreeMap<String, String>;

impl Guard {
    pub fn matches(&self, cell: &Cell) -> bool {
        self.0.iter().all(|(k, values)| cell.get(k).is_some_and(|v| values.iter().any(|x| x == v)))
    }

    fn describe(&self) -> String {
        let parts: Vec<String> = self.0.iter().map(|(k, v)| format!("{k}={}", v.0.join("|"))).collect();
        parts.join(", ")
    }
}

/// Whether `only`/`except` let a part into `cell`; the reason when not.
fn admitted(only: Option<&Guard>, except: Option<&Guard>, cell: &Cell) -> Result<(), String> {
    if let Some(g) = only.filter(|g| !g.matches(cell)) {
        return Err(format!("only {}", g.describe()));
    }
    if let Some(g) = except.filter(|g| g.matches(cell)) {
        return Err(format!("except {}", g.describe()));
    }
    Ok(())
}

/// "engine=sqlite, version=2"; empty without a matrix.
pub fn cell_name(cell: &Cell) -> String {
    cell.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
}

impl Scenario {
    /// `[version.*]` tables imply a `version` dimension with their names
    /// (unless the matrix already has one, which validation rejects).
    pub fn add_version_dimension(&mut self) {
        if !self.version.is_empty() && !self.matrix.contains_key("version") {
            self.matrix.insert("version".into(), self.version.keys().cloned().collect());
        }
    }

    /// Every cell of the matrix, in dimension order; one empty cell without a matrix.
    pub fn cells(&self) -> Vec<Cell> {
        let mut cells = vec![Cell::new()];
        for (key, values) in &self.matrix {
            cells = cells
                .into_iter()
                .flat_map(|cell| {
                    values.iter().map(move |v| {
                        let mut c = cell.clone();
                        c.insert(key.clone(), v.clone());
                        c
                    })
                })
                .collect();
        }
        cells
    }

    /// This scenario as it runs in `cell`: parts guarded out are dropped, and
    /// each drop is described in one line. `Err` with the reason when the
    /// whole scenario is guarded out of the cell.
    pub fn for_cell(&self, cell: &Cell) -> Result<(Scenario, Vec<String>), String> {
        admitted(self.only.as_ref(), self.except.as_ref(), cell)?;
        let mut s = self.clone();
        let mut skipped = Vec::new();
        let mut keep = |what: String, only: Option<&Guard>, except: Option<&Guard>| match admitted(only, except, cell) {
            Ok(()) => true,
            Err(why) => {
                skipped.push(format!("{what} skipped in {}: {why}", cell_name(cell)));
                false
            }
        };
        s.action.retain(|a| keep(format!("action `{}`", a.label()), a.only.as_ref(), a.except.as_ref()));
        s.fault.retain(|f| keep(format!("fault `{}`", f.kind.as_str()), f.only.as_ref(), f.except.as_ref()));
        s.check.retain(|c| keep(format!("check `{}`", c.label()), c.only.as_ref(), c.except.as_ref()));
        retain_steps(&mut s.step, &mut |st: &crate::StepSpec| {
            keep(format!("step `{}`", st.label()), st.only.as_ref(), st.except.as_ref())
        });
        s.cell = cell.clone();
        Ok((s, skipped))
    }
}

/// Drops the steps `keep` refuses, at every depth.
fn retain_steps(steps: &mut Vec<crate::StepSpec>, keep: &mut impl FnMut(&crate::StepSpec) -> bool) {
    steps.retain(|st| keep(st));
    for st in steps.iter_mut() {
        for nested in [&mut st.parallel, &mut st.steps].into_iter().flatten() {
            retain_steps(nested, keep);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"
name = "m"
[matrix]
engine = ["memory", "sqlite"]
version = ["1", "2"]

[service.q]
command = ["q", "--engine", "{matrix.engine}"]

[[check]]
kind = "stats"

[[check]]
kind = "unexpected"
name = "admin"
only = { engine = "sqlite" }

[[check]]
kind = "unexpected"
name = "not-v1"
except = { version = ["1"] }
"#;

    #[test]
    fn cells_are_the_product_in_dimension_order() {
        let s = crate::parse(TEXT, "m.toml").unwrap();
        let names: Vec<String> = s.cells().iter().map(cell_name).collect();
        assert_eq!(
            names,
            [
                "engine=memory, version=1",
                "engine=memory, version=2",
                "engine=sqlite, version=1",
                "engine=sqlite, version=2"
            ]
        );
        let plain = crate::parse("name = \"p\"", "p.toml").unwrap();
        assert_eq!(plain.cells(), vec![Cell::new()]);
    }

    #[test]
    fn guards_drop_parts_with_a_reason() {
        let s = crate::parse(TEXT, "m.toml").unwrap();
        let cells = s.cells();
        let (memory_v1, skipped) = s.for_cell(&cells[0]).unwrap();
        assert_eq!(memory_v1.check.iter().map(|c| c.label()).collect::<Vec<_>>(), ["stats"]);
        assert_eq!(
            skipped,
            [
                "check `admin` skipped in engine=memory, version=1: only engine=sqlite",
                "check `not-v1` skipped in engine=memory, version=1: except version=1"
            ]
        );
        let (sqlite_v2, skipped) = s.for_cell(&cells[3]).unwrap();
        assert_eq!(sqlite_v2.check.len(), 3);
        assert!(skipped.is_empty());
        assert_eq!(sqlite_v2.cell.get("engine").map(String::as_str), Some("sqlite"));
        let guarded = crate::parse(&format!("only = {{ engine = \"sqlite\" }}\n{TEXT}"), "m.toml").unwrap();
        assert_eq!(guarded.for_cell(&cells[0]).unwrap_err(), "only engine=sqlite");
    }
}
