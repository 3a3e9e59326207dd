//! Validation of `[resume]` and `[dataset.*]`: commands, signals, the state
//! source compared, pointers, size ranges.

use super::{Ctx, Validator};
use crate::resume::{parse_size_range, Count, DatasetKind};

impl Validator<'_> {
    pub(super) fn resume(&mut self) {
        for (name, d) in &self.s.dataset {
            self.dataset(name, d);
        }
        let Some(r) = &self.s.resume else { return };
        self.in_resume = true;
        if r.job.get_ref().is_empty() {
            self.err(r.job.span(), "`[resume]` `job` is empty; expected the job's program and arguments");
        }
        let templates = r
            .job
            .get_ref()
            .iter()
            .chain(r.resume.iter().flatten())
            .chain(r.state_file.iter())
            .chain(r.state_schema.iter())
            .chain(r.compare.templates())
            .chain(r.corrupt.iter().map(|c| &c.file));
        self.templates(templates, Ctx::Actor);
        self.in_resume = false;
        if let Some(signals) = &r.signals {
            for name in signals.get_ref() {
                if !["INT", "TERM", "KILL"].contains(&name.trim_start_matches("SIG")) {
                    let msg = format!("unknown signal `{name}` in `signals`; expected INT, TERM or KILL");
                    self.err(signals.span(), msg);
                }
            }
        }
        for problem in r.compare.shape_problems() {
            self.err_near("[resume".into(), format!("`[resume]` `compare` {problem}"));
        }
        if let Some(p) = r.progress.as_ref().filter(|p| !p.get_ref().starts_with('/')) {
            self.err(
                p.span(),
                format!("`progress` = `{}` is not a JSON pointer; expected one like \"/done\"", p.get_ref()),
            );
        }
        if (r.progress.is_some() || r.state_schema.is_some() || !r.corrupt.is_empty()) && r.state_file.is_none() {
            let needs = if r.corrupt.is_empty() { "`progress` and `state_schema` read" } else { "the job's state" };
            self.err_near("[resume".into(), format!("`[resume]` needs `state_file`: {needs} it"));
        }
    }

    fn dataset(&mut self, name: &str, d: &crate::resume::DatasetSpec) {
        let anchor = format!("[dataset.{name}]");
        let (wants, rejects): (&[&str], &[(&str, bool)]) = match d.kind {
            DatasetKind::Sqlite => {
                (&["rows"], &[("files", d.files.is_some()), ("size", d.size.is_some()), ("depth", d.depth.is_some())])
            }
            DatasetKind::Tree => (&["files"], &[("rows", d.rows.is_some()), ("tables", d.tables.is_some())]),
        };
        for (key, set) in rejects {
            if *set {
                self.err_near(anchor.clone(), format!("dataset `{name}`: `{key}` does not apply to kind {:?}", d.kind));
            }
        }
        let count = if d.kind == DatasetKind::Sqlite { &d.rows } else { &d.files };
        match count {
            None => self.err_near(anchor.clone(), format!("dataset `{name}` needs `{}`", wants[0])),
            Some(Count::Template(t)) => self.template(t, Ctx::Build),
            Some(Count::Number(_)) => {}
        }
        if let Some(size) = &d.size {
            if let Err(e) = parse_size_range(size) {
                self.err_near(anchor.clone(), format!("dataset `{name}`: {e}"));
            }
        }
        for t in d.tables.iter().flatten() {
            if !super::is_name(t) || t.contains('-') {
                self.err_near(anchor.clone(), format!("dataset `{name}`: table name `{t}` is not an SQL identifier"));
            }
        }
    }
}
