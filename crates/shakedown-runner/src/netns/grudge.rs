//! Grudges: which node drops the packets of which others, and the partition
//! modes (isolate, halves, bridge, majorities ring, one-way) that draw one
//! from a seeded RNG, as Jepsen's `jepsen.nemesis` does.

use rand::seq::SliceRandom;
use rand::Rng;
use serde::Serialize;
use shakedown_spec::PartitionMode;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// For each node, the nodes whose packets it drops. A node missing from the
/// map (or with an empty set) hears everyone. The clients' namespace is never
/// in a grudge: clients always reach their node, as in Jepsen.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Grudge(BTreeMap<String, BTreeSet<String>>);

/// Why a partition mode cannot split the given nodes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("split {n_nodes} nodes with mode {mode}: it needs at least {needed}")]
pub struct GrudgeError {
    pub mode: &'static str,
    pub n_nodes: usize,
    pub needed: usize,
}

impl Grudge {
    /// No partition.
    pub fn none() -> Grudge {
        Grudge::default()
    }

    /// `node` drops the packets of `from`. A node never drops its own.
    pub fn drop_from(&mut self, node: &str, from: &str) {
        if node != from {
            self.0.entry(node.to_string()).or_default().insert(from.to_string());
        }
    }

    /// Whether `node` drops the packets of `from`.
    pub fn drops(&self, node: &str, from: &str) -> bool {
        self.0.get(node).is_some_and(|set| set.contains(from))
    }

    /// The nodes `node` drops packets from.
    pub fn dropped_by(&self, node: &str) -> impl Iterator<Item = &str> {
        self.0.get(node).into_iter().flatten().map(String::as_str)
    }

    /// Every node named in the grudge, as dropper or dropped.
    pub fn nodes(&self) -> BTreeSet<&str> {
        self.0.iter().flat_map(|(n, set)| std::iter::once(n).chain(set)).map(String::as_str).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.0.values().all(BTreeSet::is_empty)
    }

    /// Each node drops every node outside all the components it is in.
    /// Components may overlap (a bridge node is in both halves).
    pub fn from_components(nodes: &[String], components: &[Vec<String>]) -> Grudge {
        let mut grudge = Grudge::none();
        for node in nodes {
            let mine: BTreeSet<&String> = components.iter().filter(|c| c.contains(node)).flatten().collect();
            for other in nodes.iter().filter(|o| !mine.contains(o)) {
                grudge.drop_from(node, other);
            }
        }
        grudge
    }

    /// One node, drawn from `rng`, cut off from every other node both ways.
    pub fn isolate(nodes: &[String], rng: &mut impl Rng) -> Result<Grudge, GrudgeError> {
        need("isolate", nodes, 2)?;
        let lonely = nodes[rng.gen_range(0..nodes.len())].clone();
        Ok(Grudge::isolate_node(nodes, &lonely))
    }

    /// `lonely` cut off from every other node both ways.
    pub fn isolate_node(nodes: &[String], lonely: &str) -> Grudge {
        Grudge::cut_off(nodes, &[lonely.to_string()])
    }

    /// The `cut` nodes cut off from the rest of `nodes`, both ways (they
    /// still reach each other).
    pub fn cut_off(nodes: &[String], cut: &[String]) -> Grudge {
        let rest: Vec<String> = nodes.iter().filter(|n| !cut.contains(n)).cloned().collect();
        Grudge::from_components(nodes, &[cut.to_vec(), rest])
    }

    /// Two random halves (the smaller first for odd counts) that cannot reach each other.
    pub fn halves(nodes: &[String], rng: &mut impl Rng) -> Result<Grudge, GrudgeError> {
        need("halves", nodes, 2)?;
        let shuffled = shuffled(nodes, rng);
        let (a, b) = shuffled.split_at(nodes.len() / 2);
        Ok(Grudge::from_components(nodes, &[a.to_vec(), b.to_vec()]))
    }

    /// Two random halves that cannot reach each other, and one node in both
    /// that reaches everyone.
    pub fn bridge(nodes: &[String], rng: &mut impl Rng) -> Result<Grudge, GrudgeError> {
        need("bridge", nodes, 3)?;
        let shuffled = shuffled(nodes, rng);
        let mid = nodes.len() / 2;
        Ok(Grudge::from_components(nodes, &[shuffled[..=mid].to_vec(), shuffled[mid..].to_vec()]))
    }

    /// The nodes on a random ring; each sees the majority centred on itself
    /// and drops the rest, so every node sees a majority and no two see the
    /// same one (Jepsen's `majorities-ring`). With an odd majority the ring
    /// is symmetric; otherwise (3 nodes, 6 nodes...) some drops are one-way.
    pub fn majorities_ring(nodes: &[String], rng: &mut impl Rng) -> Result<Grudge, GrudgeError> {
        need("majorities-ring", nodes, 3)?;
        let ring = shuffled(nodes, rng);
        let n = ring.len();
        let majority = n / 2 + 1;
        let mut grudge = Grudge::none();
        for start in 0..n {
            let window: Vec<&String> = (0..majority).map(|k| &ring[(start + k) % n]).collect();
            let centre = window[majority / 2];
            for other in ring.iter().filter(|o| !window.contains(o)) {
                grudge.drop_from(centre, other);
            }
        }
        Ok(grudge)
    }

    /// Two distinct random nodes: the first's packets to the second are
    /// dropped; the second's to the first flow.
    pub fn one_way(nodes: &[String], rng: &mut impl Rng) -> Result<Grudge, GrudgeError> {
        need("one-way", nodes, 2)?;
        let pair: Vec<&String> = nodes.choose_multiple(rng, 2).collect();
        Ok(Grudge::one_way_between(pair[0], pair[1]))
    }

    /// `from`'s packets to `to` are dropped (by `to`); `to`'s reach `from`.
    pub fn one_way_between(from: &str, to: &str) -> Grudge {
        let mut grudge = Grudge::none();
        grudge.drop_from(to, from);
        grudge
    }

    /// The grudge of a spec's partition mode over `nodes`.
    pub fn for_mode(mode: PartitionMode, nodes: &[String], rng: &mut impl Rng) -> Result<Grudge, GrudgeError> {
        match mode {
            PartitionMode::Isolate => Grudge::isolate(nodes, rng),
            PartitionMode::Halves => Grudge::halves(nodes, rng),
            PartitionMode::Bridge => Grudge::bridge(nodes, rng),
            PartitionMode::MajoritiesRing => Grudge::majorities_ring(nodes, rng),
            PartitionMode::OneWay => Grudge::one_way(nodes, rng),
        }
    }
}

fn need(mode: &'static str, nodes: &[String], needed: usize) -> Result<(), GrudgeError> {
    match nodes.len() >= needed {
        true => Ok(()),
        false => Err(GrudgeError { mode, n_nodes: nodes.len(), needed }),
    }
}

fn shuffled(nodes: &[String], rng: &mut impl Rng) -> Vec<String> {
    let mut out = nodes.to_vec();
    out.shuffle(rng);
    out
}

/// `a drops b,c; b drops a`, or `none`: for history events and messages.
impl fmt::Display for Grudge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .filter(|(_, set)| !set.is_empty())
            .map(|(node, set)| format!("{node} drops {}", set.iter().cloned().collect::<Vec<_>>().join(",")))
            .collect();
        match parts.is_empty() {
            true => f.write_str("none"),
            false => f.write_str(&parts.join("; ")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn names(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("n{i}")).collect()
    }

    /// Pairs (a, b) with a dropping b, for comparing against expectations.
    fn pairs(g: &Grudge) -> BTreeSet<(String, String)> {
        g.0.iter().flat_map(|(n, set)| set.iter().map(move |o| (n.clone(), o.clone()))).collect()
    }

    fn symmetric(g: &Grudge) -> bool {
        pairs(g).iter().all(|(a, b)| g.drops(b, a))
    }

    /// Who `node` hears (itself included).
    fn heard_by(g: &Grudge, nodes: &[String], node: &str) -> BTreeSet<String> {
        nodes.iter().filter(|o| !g.drops(node, o)).cloned().collect()
    }

    #[test]
    fn isolate_cuts_one_node_from_all_others_both_ways() {
        let nodes = names(5);
        let g = Grudge::isolate_node(&nodes, "n3");
        assert_eq!(pairs(&g).len(), 8);
        assert!(symmetric(&g));
        assert!(nodes.iter().filter(|n| *n != "n3").all(|n| g.drops("n3", n) && !g.drops("n1", n)));
    }

    #[test]
    fn a_cut_group_hears_itself_and_not_the_rest() {
        let nodes = names(4);
        let cut = [nodes[0].clone(), nodes[2].clone()];
        let g = Grudge::cut_off(&nodes, &cut);
        assert!(symmetric(&g));
        assert_eq!(heard_by(&g, &nodes, &nodes[0]), BTreeSet::from(cut.clone()));
        assert_eq!(heard_by(&g, &nodes, &nodes[1]), BTreeSet::from([nodes[1].clone(), nodes[3].clone()]));
    }

    #[test]
    fn halves_are_two_symmetric_groups_of_floor_and_ceil() {
        let nodes = names(5);
        let g = Grudge::halves(&nodes, &mut ChaCha8Rng::seed_from_u64(1)).unwrap();
        assert!(symmetric(&g));
        let sizes: BTreeSet<usize> = nodes.iter().map(|n| heard_by(&g, &nodes, n).len()).collect();
        assert_eq!(sizes, BTreeSet::from([2, 3]));
    }

    #[test]
    fn bridge_node_hears_everyone_and_the_halves_not_each_other() {
        let nodes = names(5);
        let g = Grudge::bridge(&nodes, &mut ChaCha8Rng::seed_from_u64(2)).unwrap();
        assert!(symmetric(&g));
        let bridges: Vec<&String> = nodes.iter().filter(|n| heard_by(&g, &nodes, n).len() == 5).collect();
        assert_eq!(bridges.len(), 1, "{g}");
        assert!(nodes.iter().filter(|n| *n != bridges[0]).all(|n| heard_by(&g, &nodes, n).len() == 3), "{g}");
    }

    #[test]
    fn majorities_ring_gives_each_node_a_different_majority() {
        for n in [3, 4, 5, 6, 7] {
            let nodes = names(n);
            let g = Grudge::majorities_ring(&nodes, &mut ChaCha8Rng::seed_from_u64(n as u64)).unwrap();
            let views: BTreeSet<BTreeSet<String>> = nodes.iter().map(|x| heard_by(&g, &nodes, x)).collect();
            assert_eq!(views.len(), n, "no two nodes see the same majority: {g}");
            assert!(views.iter().all(|v| v.len() == n / 2 + 1), "each sees a majority: {g}");
            if (n / 2 + 1) % 2 == 1 {
                assert!(symmetric(&g), "an odd majority makes a symmetric ring: {g}");
            }
        }
    }

    #[test]
    fn one_way_drops_one_direction_only() {
        let nodes = names(3);
        let g = Grudge::one_way(&nodes, &mut ChaCha8Rng::seed_from_u64(3)).unwrap();
        assert_eq!(pairs(&g).len(), 1);
        assert!(!symmetric(&g));
        assert_eq!(Grudge::one_way_between("a", "b").to_string(), "b drops a");
    }

    #[test]
    fn the_same_seed_draws_the_same_grudge() {
        let nodes = names(5);
        for mode in [
            PartitionMode::Isolate,
            PartitionMode::Halves,
            PartitionMode::Bridge,
            PartitionMode::MajoritiesRing,
            PartitionMode::OneWay,
        ] {
            let draw = |seed| Grudge::for_mode(mode, &nodes, &mut ChaCha8Rng::seed_from_u64(seed)).unwrap();
            assert_eq!(draw(9), draw(9), "{}", mode.as_str());
            assert!(!draw(9).is_empty(), "{}", mode.as_str());
        }
    }

    #[test]
    fn too_few_nodes_is_an_error_not_a_panic() {
        let err = Grudge::bridge(&names(2), &mut ChaCha8Rng::seed_from_u64(0)).unwrap_err();
        assert_eq!(err.to_string(), "split 2 nodes with mode bridge: it needs at least 3");
        assert!(Grudge::isolate(&names(1), &mut ChaCha8Rng::seed_from_u64(0)).is_err());
        assert_eq!(Grudge::none().to_string(), "none");
    }
}
