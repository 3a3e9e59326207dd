//! `migrate --sweep`: copies again exactly the items an operator marked `retry` in `migrate_items`, and marks them `swept`.
//!
//! The sweep belongs to a migration that has run: it needs that run's state
//! file (for the same `--kind`, `--source` and `--dest`) and reads the marks
//! from its events file. `--fail-every` does not apply (the cause was
//! fixed). Items still `failed` are left alone. An item that cannot be copied
//! again goes back to `failed` with the new error; the sweep goes on.

use super::events::{Events, Status};
use super::items::{item_batch, ItemStatus};
use super::{check_same_job, Bug, Config, Copier, MigrateError, Outcome, State, StopFlag};

/// Runs the sweep; [`Outcome::Swept`] when every marked item was tried,
/// [`Outcome::Interrupted`] when a stop request came first.
pub fn run(config: &Config, stop: &StopFlag) -> Result<Outcome, MigrateError> {
    let Some(state) = State::load(&config.state)? else {
        let path = config.state.display();
        return Err(MigrateError::BadArguments(format!("--sweep: no state file {path} (run the migration first)")));
    };
    check_same_job(config, &state)?;
    let events = Events::open(&config.events, false)?;
    let items = events.items();
    let mut marked = items.to_retry(config.kind)?;
    if config.has(Bug::SweepSkipsLast) {
        marked.pop();
    }
    let n_marked = marked.len() as u64;
    events.record("sweep", None, n_marked, Status::Started)?;
    let mut copier = Copier::open(config).map_err(MigrateError::Prepare)?;
    let (mut retried, mut failed) = (0u64, 0u64);
    for item in &marked {
        if stop.is_set() {
            let fields = [("retried", retried.into()), ("failed", failed.into()), ("stopped", true.into())];
            config.log.info("sweep", &fields);
            return Ok(Outcome::Interrupted { done: retried });
        }
        let copied = item_batch(config.kind, item).and_then(|batch| copier.copy(&batch, 0).map_err(|e| e.to_string()));
        match copied {
            Ok(outcomes) => {
                assert_eq!(outcomes.len(), 1, "one outcome for the single item {item}");
                items.settle(item, ItemStatus::Swept, None)?;
                retried += 1;
            }
            Err(error) => {
                config.log.warn("retry failed", &[("item", item.as_str().into()), ("error", error.as_str().into())]);
                items.settle(item, ItemStatus::Failed, Some(&error))?;
                failed += 1;
            }
        }
    }
    events.record("sweep", None, retried, Status::Done)?;
    config.log.info("sweep", &[("retried", retried.into()), ("failed", failed.into())]);
    Ok(Outcome::Swept { retried })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::log::Logger;
    use crate::migrate::Kind;

    fn config(dir: &Path) -> Config {
        let source = dir.join("source.sqlite");
        let db = rusqlite::Connection::open(&source).unwrap();
        db.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)").unwrap();
        for id in 1..=9 {
            db.execute("INSERT INTO t VALUES (?1, 'v')", [id]).unwrap();
        }
        let mut config = Config::new(Kind::Sqlite, source, dir.join("dest.sqlite"), dir.join("state.json"));
        config.fail_every = 3;
        config.with_log(Logger::memory())
    }

    fn statuses(config: &Config) -> Vec<(String, String)> {
        let db = rusqlite::Connection::open(&config.events).unwrap();
        let mut stmt =
            db.prepare("SELECT item, status FROM migrate_items WHERE status != 'copied' ORDER BY item").unwrap();
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
        rows.collect::<Result<_, _>>().unwrap()
    }

    #[test]
    fn a_stop_request_ends_the_sweep_between_items_and_the_rest_stay_marked() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config(dir.path());
        assert_eq!(crate::migrate::run(&config, &StopFlag::new()).unwrap(), Outcome::Complete { items: 9 });
        assert!(config.log.lines().last().unwrap().contains(r#""msg":"complete","items":9,"failed":3"#));
        let db = rusqlite::Connection::open(&config.events).unwrap();
        db.execute("UPDATE migrate_items SET status = 'retry' WHERE status = 'failed'", []).unwrap();
        config.sweep = true;
        let stop = StopFlag::new();
        stop.stop();
        assert_eq!(crate::migrate::run(&config, &stop).unwrap(), Outcome::Interrupted { done: 0 });
        assert!(config.log.lines().last().unwrap().contains(r#""msg":"sweep","retried":0,"failed":0,"stopped":true"#));
        let marked = ["t:3", "t:6", "t:9"].map(|item| (item.to_string(), "retry".to_string()));
        assert_eq!(statuses(&config), marked);
        // --fail-every stays set: a sweep does not apply it.
        assert_eq!(crate::migrate::run(&config, &StopFlag::new()).unwrap(), Outcome::Swept { retried: 3 });
        let swept = ["t:3", "t:6", "t:9"].map(|item| (item.to_string(), "swept".to_string()));
        assert_eq!(statuses(&config), swept);
    }
}
