//! Entity pools: IDs captured from operations' results, picked as later targets.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Named pools shared by all workers. Elements keep insertion order, so a pick
/// depends only on the seed and the order of captures.
#[derive(Debug, Default)]
pub struct Pools {
    pools: Mutex<BTreeMap<String, Vec<Value>>>,
}

impl Pools {
    pub fn add(&self, pool: &str, v: Value) {
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        pools.entry(pool.to_string()).or_default().push(v);
    }

    /// A uniformly drawn element, left in the pool.
    pub fn pick(&self, pool: &str, rng: &mut ChaCha8Rng) -> Option<Value> {
        let pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        let items = pools.get(pool).filter(|v| !v.is_empty())?;
        Some(items[rng.gen_range(0..items.len())].clone())
    }

    /// Removes one occurrence of `v`; false if it was not there.
    pub fn remove(&self, pool: &str, v: &Value) -> bool {
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        let Some(items) = pools.get_mut(pool) else { return false };
        match items.iter().position(|x| x == v) {
            Some(i) => {
                items.remove(i);
                true
            }
            None => false,
        }
    }
}
