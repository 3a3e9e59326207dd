//! Datasets: source data generated from the seed before anything starts —
//! SQLite tables of N rows with random values, or directory trees of N files
//! with sizes drawn from a range — so a job's input is reproducible and its
//! size can be a matrix dimension (`rows = "{matrix.rows}"`).

use crate::context::{Context, Scope};
use crate::workload::stream_rng;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use shakedown_spec::{parse_size_range, Count, DatasetKind, DatasetSpec, Scenario};
use std::path::Path;

/// The RNG stream of dataset NAME's generator, away from workers' and faults'.
const DATASET_STREAM: u64 = 5 << 32;

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("dataset `{name}`: {message}")]
    Invalid { name: String, message: String },
    #[error("dataset `{name}`: write {path}: {message}")]
    Write { name: String, path: String, message: String },
}

/// Generates every dataset of the scenario at its path in `ctx.datasets`.
pub fn generate_all(ctx: &Context, s: &Scenario) -> Result<(), DatasetError> {
    for (i, (name, spec)) in s.dataset.iter().enumerate() {
        let path = &ctx.datasets[name];
        let mut rng = stream_rng(ctx.seed, DATASET_STREAM + i as u64);
        let invalid = |message: String| DatasetError::Invalid { name: name.clone(), message };
        let write =
            |message: String| DatasetError::Write { name: name.clone(), path: path.display().to_string(), message };
        match spec.kind {
            DatasetKind::Sqlite => {
                let rows = count(ctx, spec.rows.as_ref()).map_err(invalid)?;
                sqlite(path, spec, rows, &mut rng).map_err(write)?;
            }
            DatasetKind::Tree => {
                let files = count(ctx, spec.files.as_ref()).map_err(invalid)?;
                let (lo, hi) = parse_size_range(spec.size.as_deref().unwrap_or("0..4KiB")).map_err(invalid)?;
                tree(path, files, (lo, hi), spec.depth.unwrap_or(2), &mut rng).map_err(write)?;
            }
        }
    }
    Ok(())
}

fn count(ctx: &Context, c: Option<&Count>) -> Result<u64, String> {
    match c {
        None => Err("no count".into()),
        Some(Count::Number(n)) => Ok(*n),
        Some(Count::Template(t)) => {
            let text = ctx.render(t, &mut Scope::default()).map_err(|e| e.to_string())?;
            text.trim().parse().map_err(|_| format!("{:?} rendered to {text:?}, not a count", t.source()))
        }
    }
}

fn sqlite(path: &Path, spec: &DatasetSpec, rows: u64, rng: &mut ChaCha8Rng) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    let _ = std::fs::remove_file(path);
    let mut conn = rusqlite::Connection::open(path).map_err(|e| e.to_string())?;
    let tables = spec.tables.clone().unwrap_or_else(|| vec!["items".into()]);
    let tx = conn.transaction().map_err(|e| e.to_string())?;
    for table in &tables {
        // Table names were validated as identifiers.
        tx.execute_batch(&format!(
            "CREATE TABLE {table} (id INTEGER PRIMARY KEY, name TEXT NOT NULL, qty INTEGER NOT NULL, price REAL NOT NULL, note TEXT)"
        ))
        .map_err(|e| e.to_string())?;
        let mut insert = tx
            .prepare(&format!("INSERT INTO {table} (id, name, qty, price, note) VALUES (?1, ?2, ?3, ?4, ?5)"))
            .map_err(|e| e.to_string())?;
        for id in 1..=rows {
            let name = word(rng);
            let qty: i64 = rng.gen_range(-1000..1_000_000);
            let price = (rng.gen_range(0..10_000_000) as f64) / 100.0;
            let note = rng.gen_bool(0.8).then(|| format!("{} {}", word(rng), word(rng)));
            insert.execute(rusqlite::params![id as i64, name, qty, price, note]).map_err(|e| e.to_string())?;
        }
    }
    tx.commit().map_err(|e| e.to_string())
}

fn tree(root: &Path, files: u64, (lo, hi): (u64, u64), depth: u32, rng: &mut ChaCha8Rng) -> Result<(), String> {
    let _ = std::fs::remove_dir_all(root);
    std::fs::create_dir_all(root).map_err(|e| e.to_string())?;
    for i in 0..files {
        let mut dir = root.to_path_buf();
        for _ in 0..rng.gen_range(0..=depth) {
            dir.push(format!("d{}", rng.gen_range(0..4)));
        }
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let size = rng.gen_range(lo..=hi) as usize;
        let mut data = vec![0u8; size];
        rng.fill(&mut data[..]);
        std::fs::write(dir.join(format!("f{i:05}.bin")), data).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn word(rng: &mut ChaCha8Rng) -> String {
    let len = rng.gen_range(3..10);
    (0..len).map(|_| char::from(b'a' + rng.gen_range(0..26u8))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn ctx(dir: &Path, seed: u64) -> Context {
        let mut ctx = Context::new(dir.into(), dir.into(), seed, BTreeMap::new(), Vec::new());
        ctx.datasets.insert("src".into(), dir.join("src.sqlite"));
        ctx.datasets.insert("files".into(), dir.join("files"));
        ctx.matrix.insert("rows".into(), "7".into());
        ctx
    }

    fn scenario(text: &str) -> Scenario {
        shakedown_spec::parse(&format!("name = \"d\"\n{text}"), "d.toml").unwrap()
    }

    fn rows(path: &Path) -> Vec<(i64, String, Option<String>)> {
        let conn = rusqlite::Connection::open(path).unwrap();
        let mut q = conn.prepare("SELECT id, name, note FROM items ORDER BY id").unwrap();
        q.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(Result::unwrap).collect()
    }

    #[test]
    fn sqlite_datasets_have_the_rows_asked_for_and_the_seed_decides_their_values() {
        let s = scenario("[matrix]\nrows = [\"7\"]\n[dataset.src]\nkind = \"sqlite\"\nrows = \"{matrix.rows}\"\n");
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        generate_all(&ctx(a.path(), 1), &s).unwrap();
        generate_all(&ctx(b.path(), 1), &s).unwrap();
        let (ra, rb) = (rows(&a.path().join("src.sqlite")), rows(&b.path().join("src.sqlite")));
        assert_eq!(ra.len(), 7);
        assert_eq!(ra, rb, "same seed, same data");
        let c = tempfile::tempdir().unwrap();
        generate_all(&ctx(c.path(), 2), &s).unwrap();
        assert_ne!(rows(&c.path().join("src.sqlite")), ra, "another seed, other data");
    }

    #[test]
    fn empty_and_single_row_datasets_exist_with_their_table() {
        for n in [0, 1] {
            let s = scenario(&format!("[dataset.src]\nkind = \"sqlite\"\nrows = {n}\n"));
            let dir = tempfile::tempdir().unwrap();
            generate_all(&ctx(dir.path(), 3), &s).unwrap();
            assert_eq!(rows(&dir.path().join("src.sqlite")).len(), n);
        }
    }

    #[test]
    fn tree_datasets_have_the_files_asked_for_within_the_size_range() {
        let s = scenario("[dataset.files]\nkind = \"tree\"\nfiles = 25\nsize = \"10..2KiB\"\ndepth = 3\n");
        let dir = tempfile::tempdir().unwrap();
        generate_all(&ctx(dir.path(), 4), &s).unwrap();
        let mut sizes = Vec::new();
        let mut stack = vec![dir.path().join("files")];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(d).unwrap().flatten() {
                if e.file_type().unwrap().is_dir() {
                    stack.push(e.path());
                } else {
                    sizes.push(e.metadata().unwrap().len());
                }
            }
        }
        assert_eq!(sizes.len(), 25);
        assert!(sizes.iter().all(|s| (10..=2048).contains(s)), "{sizes:?}");
    }

    #[test]
    fn a_count_that_is_not_a_number_is_an_error_naming_the_dataset() {
        let s = scenario("[matrix]\nrows = [\"many\"]\n[dataset.src]\nkind = \"sqlite\"\nrows = \"{matrix.rows}\"\n");
        let dir = tempfile::tempdir().unwrap();
        let mut c = ctx(dir.path(), 1);
        c.matrix.insert("rows".into(), "many".into());
        let err = generate_all(&c, &s).unwrap_err().to_string();
        assert!(err.contains("dataset `src`") && err.contains("\"many\", not a count"), "{err}");
    }
}
