//! The WGL search (Wing & Gong, with Lowe's state cache, as Porcupine does it) over one partition.
//!
//! Events live in an array-backed doubly linked list. Linearizing an op lifts
//! its call and return out of the list; backtracking puts them back. A cache
//! of (linearized set, state) pairs prunes configurations already explored.
//! An op whose outcome is unknown (`info`) returns after every other event, so
//! the search may place it anywhere after its call; once the cursor reaches
//! such a return every `ok` op is linearized and the unplaced unknown ops are
//! taken never to have happened.

use super::model::Model;
use super::Budget;
use rustc_hash::{FxBuildHasher, FxHashMap, FxHasher};
use std::hash::{BuildHasher, Hash, Hasher};
use std::time::Instant;

/// One op of a partition, ordered by call.
#[derive(Debug, Clone)]
pub(crate) struct SearchOp<O> {
    /// Event index of the invocation.
    pub call: u64,
    /// Event index of the completion; `None` when the outcome is unknown.
    pub ret: Option<u64>,
    pub op: O,
    /// For an unknown op: the previous unknown op of the partition with the
    /// same f and value. Both return at the end, so they are interchangeable:
    /// the search places this one only after its twin, which cuts the
    /// subsets of identical unknown ops it would otherwise try one by one.
    pub twin: Option<usize>,
}

#[derive(Debug)]
pub(crate) enum Searched<S> {
    Linearizable {
        steps: u64,
    },
    /// The longest linearizable prefix (positions in the op slice), the `ok`
    /// op that could not follow it, and the state after the prefix.
    NotLinearizable {
        prefix: Vec<usize>,
        blocked: usize,
        state: S,
        steps: u64,
    },
    Exhausted {
        steps: u64,
        spent: Spent,
    },
}

/// Which part of the budget a search used up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Spent {
    Time,
    Steps,
    /// The cache and stack grew past `Budget::max_memory_bytes`.
    Memory {
        bytes: usize,
    },
}

impl Spent {
    pub fn describe(self) -> String {
        match self {
            Spent::Time => "time limit".into(),
            Spent::Steps => "step limit".into(),
            Spent::Memory { bytes } => format!("memory limit of {} MiB", bytes >> 20),
        }
    }
}

const NIL: u32 = u32::MAX;
const HEAD: u32 = 0;
/// How many steps pass between two looks at the clock.
const CLOCK_EVERY: u64 = 1 << 10;

/// The event list: node 0 is the head, node `1 + 2i` the call of op `i`,
/// `2 + 2i` its return.
struct Events<'a> {
    prev: &'a mut Vec<u32>,
    next: &'a mut Vec<u32>,
}

impl<'a> Events<'a> {
    fn new<O>(
        ops: &[SearchOp<O>],
        prev: &'a mut Vec<u32>,
        next: &'a mut Vec<u32>,
        returns: &mut Vec<(u64, u32)>,
    ) -> Events<'a> {
        // Calls are already in order. Known returns, nearly in call order,
        // get sorted; returns of unknown ops go after every real event, in op
        // order. Then the two are merged; event indices are distinct, so
        // there are no ties.
        returns.clear();
        returns.extend(ops.iter().enumerate().filter_map(|(i, op)| Some((op.ret?, call_node(i) + 1))));
        sort_nearly_sorted(returns);
        let n_known = returns.len();
        returns.extend(
            ops.iter()
                .enumerate()
                .filter(|(_, op)| op.ret.is_none())
                .map(|(i, _)| (u64::MAX - ops.len() as u64 + i as u64, call_node(i) + 1)),
        );
        debug_assert!(n_known == 0 || returns[n_known - 1].0 < u64::MAX - ops.len() as u64);
        let n_nodes = 2 * ops.len() + 1;
        prev.clear();
        prev.resize(n_nodes, NIL);
        next.clear();
        next.resize(n_nodes, NIL);
        let mut last = HEAD;
        let mut link = |node: u32| {
            next[last as usize] = node;
            prev[node as usize] = last;
            last = node;
        };
        let mut r = returns.iter().peekable();
        for (i, op) in ops.iter().enumerate() {
            while let Some(&(_, node)) = r.next_if(|&&(at, _)| at < op.call) {
                link(node);
            }
            link(call_node(i));
        }
        for &(_, node) in r {
            link(node);
        }
        Events { prev, next }
    }

    fn unlink(&mut self, node: u32) {
        let (p, n) = (self.prev[node as usize], self.next[node as usize]);
        self.next[p as usize] = n;
        if n != NIL {
            self.prev[n as usize] = p;
        }
    }

    fn relink(&mut self, node: u32) {
        let (p, n) = (self.prev[node as usize], self.next[node as usize]);
        self.next[p as usize] = node;
        if n != NIL {
            self.prev[n as usize] = node;
        }
    }

    /// Removes a call and its return; the return goes first so `unlift` can
    /// undo in reverse order (dancing links).
    fn lift(&mut self, call: u32) {
        self.unlink(call);
        self.unlink(call + 1);
    }

    fn unlift(&mut self, call: u32) {
        self.relink(call + 1);
        self.relink(call);
    }
}

fn call_node(op: usize) -> u32 {
    1 + 2 * op as u32
}

fn op_of(node: u32) -> usize {
    ((node - 1) / 2) as usize
}

/// The set of linearized ops: a bitset plus what makes it cheap to hash and
/// to store: a Zobrist hash, the lowest op not yet linearized (every op below
/// it is), and a stack of running maxima.
struct Linearized<'a> {
    words: Vec<u64>,
    /// A fixed random value per op (`splitmix64(i)`), kept between searches.
    zobrist: &'a [u64],
    hash: u64,
    low: usize,
    n_ops: usize,
}

impl<'a> Linearized<'a> {
    fn new(n_ops: usize, zobrist: &'a mut Vec<u64>) -> Linearized<'a> {
        // The table only ever grows: its values depend on the op's position alone.
        let have = zobrist.len();
        if have < n_ops {
            zobrist.extend((have as u64..n_ops as u64).map(splitmix64));
        }
        Linearized { words: vec![0; n_ops.div_ceil(64)], zobrist, hash: 0, low: 0, n_ops }
    }

    fn contains(&self, i: usize) -> bool {
        self.words[i / 64] & (1 << (i % 64)) != 0
    }

    fn insert(&mut self, i: usize) {
        assert!(!self.contains(i), "op {i} linearized twice");
        self.words[i / 64] |= 1 << (i % 64);
        self.hash ^= self.zobrist[i];
        while self.low < self.n_ops && self.contains(self.low) {
            self.low += 1;
        }
    }

    fn remove(&mut self, i: usize) {
        assert!(self.contains(i), "op {i} unlinearized but not linearized");
        self.words[i / 64] &= !(1 << (i % 64));
        self.hash ^= self.zobrist[i];
        self.low = self.low.min(i);
    }

    /// The words that, with `low`, determine the set: everything below `low`
    /// is in it and nothing above `max` is.
    fn key_words(&self, max: usize) -> &[u64] {
        if max < self.low {
            return &[];
        }
        &self.words[self.low / 64..=max / 64]
    }
}

/// The configurations already explored: (linearized set, state) pairs.
///
/// The hash table maps a configuration's 64-bit hash to the newest entry
/// with that hash; entries live in one arena, chained by `next`, and their
/// bitset words in one shared vector. So the table stays small (probing it
/// touches few cache lines) and caching a configuration allocates nothing
/// beyond amortized growth.
struct Cache<'a, S> {
    heads: &'a mut FxHashMap<u64, u32>,
    entries: Vec<Entry<S>>,
    words: &'a mut Vec<u64>,
}

struct Entry<S> {
    low: u32,
    /// The entry's words are `words[start..start + len]`.
    start: u32,
    len: u32,
    /// The previous entry with the same hash, or `NIL`.
    next: u32,
    state: S,
}

impl<'a, S: Hash + Eq + Clone> Cache<'a, S> {
    fn with_capacity(n: usize, heads: &'a mut FxHashMap<u64, u32>, words: &'a mut Vec<u64>) -> Cache<'a, S> {
        heads.clear();
        heads.reserve(n);
        words.clear();
        // Entries start small: a search that fails fast caches a few dozen.
        Cache { heads, entries: Vec::with_capacity(n.min(32)), words }
    }

    /// What the cache holds, in bytes (states' own heap data not counted).
    fn bytes(&self) -> usize {
        let per_head = size_of::<(u64, u32)>() + 8;
        self.entries.capacity() * size_of::<Entry<S>>() + self.words.capacity() * 8 + self.heads.capacity() * per_head
    }

    /// Records the configuration; false when it was already there.
    fn insert(&mut self, linearized: &Linearized, max_op: usize, state: &S) -> bool {
        let mut h = FxHasher::default();
        state.hash(&mut h);
        let hash = FxBuildHasher.hash_one((linearized.hash, h.finish()));
        let low = linearized.low as u32;
        let words = linearized.key_words(max_op);
        let head = self.heads.entry(hash).or_insert(NIL);
        let mut at = *head;
        while at != NIL {
            let e = &self.entries[at as usize];
            if e.low == low
                && e.len as usize == words.len()
                && self.words[e.start as usize..(e.start + e.len) as usize] == *words
                && e.state == *state
            {
                return false;
            }
            at = e.next;
        }
        assert!(self.entries.len() < NIL as usize && self.words.len() + words.len() < u32::MAX as usize);
        let entry =
            Entry { low, start: self.words.len() as u32, len: words.len() as u32, next: *head, state: state.clone() };
        *head = self.entries.len() as u32;
        self.words.extend_from_slice(words);
        self.entries.push(entry);
        true
    }
}

/// A linearized call and what to restore when it is undone.
struct Frame<S> {
    call: u32,
    prev_state: S,
    /// The highest op linearized so far, this one included.
    max_op: usize,
}

/// Buffers a search needs whatever the model, kept per thread between
/// searches: a check of a small history would otherwise spend much of its
/// time allocating and freeing them.
#[derive(Default)]
struct Scratch {
    prev: Vec<u32>,
    next: Vec<u32>,
    returns: Vec<(u64, u32)>,
    heads: FxHashMap<u64, u32>,
    words: Vec<u64>,
    zobrist: Vec<u64>,
}

impl Scratch {
    /// Frees what a big search left, so it does not linger nor make clearing slow.
    fn trim(&mut self) {
        const KEEP: usize = 1 << 14;
        if self.heads.capacity() > KEEP {
            self.heads = FxHashMap::default();
        }
        for v in [&mut self.prev, &mut self.next] {
            if v.capacity() > KEEP {
                *v = Vec::new();
            }
        }
        if self.returns.capacity() > KEEP {
            self.returns = Vec::new();
        }
        if self.words.capacity() > KEEP {
            self.words = Vec::new();
        }
        if self.zobrist.len() > KEEP {
            self.zobrist = Vec::new();
        }
    }
}

thread_local! {
    static SCRATCH: std::cell::Cell<Scratch> = std::cell::Cell::new(Scratch::default());
}

/// Runs the search over `ops`, which must be sorted by call.
pub(crate) fn search<M: Model + ?Sized>(model: &M, ops: &[SearchOp<M::Op>], budget: Budget) -> Searched<M::State> {
    SCRATCH.with(|cell| {
        // Taken, not borrowed: a search on this thread that started inside
        // another (none does today) would simply get fresh buffers.
        let mut scratch = cell.take();
        let searched = search_in(model, ops, budget, &mut scratch);
        scratch.trim();
        cell.set(scratch);
        searched
    })
}

fn search_in<M: Model + ?Sized>(
    model: &M,
    ops: &[SearchOp<M::Op>],
    budget: Budget,
    scratch: &mut Scratch,
) -> Searched<M::State> {
    assert!(ops.windows(2).all(|w| w[0].call < w[1].call), "ops must be sorted by call");
    assert!(ops.iter().all(|o| o.ret.is_none_or(|r| r > o.call)), "an op returns after its call");
    assert!(2 * ops.len() < NIL as usize, "too many ops for 32-bit event nodes");
    let Scratch { prev, next, returns, heads, words, zobrist } = scratch;
    let mut cache: Cache<M::State> = Cache::with_capacity((2 * ops.len()).min(1 << 16), heads, words);
    let mut events = Events::new(ops, prev, next, returns);
    let mut linearized = Linearized::new(ops.len(), zobrist);
    // Sized for a search that mostly goes straight through: growing a few
    // times is cheaper than clearing a big table for a small history.
    let mut stack: Vec<Frame<M::State>> = Vec::with_capacity(ops.len().min(32));
    let mut state = model.init();
    let mut best = Best { len: 0, dirty: true, found: None };
    let mut steps: u64 = 0;
    let mut cursor = events.next[HEAD as usize];
    let linearizable = loop {
        if cursor == NIL {
            break true;
        }
        steps += 1;
        if let Some(spent) =
            over_budget(budget, steps, || cache.bytes() + stack.capacity() * size_of::<Frame<M::State>>())
        {
            return Searched::Exhausted { steps, spent };
        }
        let i = op_of(cursor);
        let is_call = cursor % 2 == 1;
        if !is_call {
            if ops[i].ret.is_none() {
                // Every ok op is linearized: the rest may never have happened.
                break true;
            }
            best.record(&stack, i, &state);
            let Some(frame) = stack.pop() else { break false };
            linearized.remove(op_of(frame.call));
            state = frame.prev_state;
            events.unlift(frame.call);
            cursor = events.next[frame.call as usize];
            continue;
        }
        if ops[i].twin.is_some_and(|t| !linearized.contains(t)) {
            cursor = events.next[cursor as usize];
            continue;
        }
        if let Some(next_state) = model.step(&state, &ops[i].op) {
            linearized.insert(i);
            let max_op = stack.last().map_or(i, |f| f.max_op.max(i));
            if cache.insert(&linearized, max_op, &next_state) {
                let prev_state = std::mem::replace(&mut state, next_state);
                stack.push(Frame { call: cursor, prev_state, max_op });
                events.lift(cursor);
                best.grow(stack.len());
                cursor = events.next[HEAD as usize];
                continue;
            }
            linearized.remove(i);
        }
        cursor = events.next[cursor as usize];
    };
    if linearizable {
        // Postcondition: every op whose completion was seen is linearized.
        assert!(ops.iter().enumerate().all(|(i, o)| o.ret.is_none() || linearized.contains(i)));
        return Searched::Linearizable { steps };
    }
    let (prefix, blocked, state) = best.found.expect("a failed search backed out of its longest prefix");
    let prefix = prefix.iter().map(|&c| op_of(c)).collect();
    Searched::NotLinearizable { prefix, blocked, state, steps }
}

/// Which budget is spent, if any; time and memory are looked at every
/// [`CLOCK_EVERY`] steps.
fn over_budget(budget: Budget, steps: u64, bytes: impl FnOnce() -> usize) -> Option<Spent> {
    if budget.max_steps.is_some_and(|max| steps > max) {
        return Some(Spent::Steps);
    }
    if steps & (CLOCK_EVERY - 1) != 0 {
        return None;
    }
    if budget.deadline.is_some_and(|d| Instant::now() >= d) {
        return Some(Spent::Time);
    }
    let limit = budget.max_memory_bytes?;
    (bytes() > limit).then_some(Spent::Memory { bytes: limit })
}

/// The longest linearizable prefix seen, copied only when the search backs
/// out of it, so a history that linearizes straight through copies nothing.
struct Best<S> {
    len: usize,
    dirty: bool,
    found: Option<(Vec<u32>, usize, S)>,
}

impl<S: Clone> Best<S> {
    fn grow(&mut self, len: usize) {
        if len > self.len {
            self.len = len;
            self.dirty = true;
        }
    }

    fn record(&mut self, stack: &[Frame<S>], blocked: usize, state: &S) {
        if self.dirty && stack.len() == self.len {
            self.found = Some((stack.iter().map(|f| f.call).collect(), blocked, state.clone()));
            self.dirty = false;
        }
    }
}

/// Sorts `v`, fast when it is nearly sorted (returns mostly come in the
/// order of their calls): insertion sort while it moves few elements, then
/// the general sort for whatever remains.
fn sort_nearly_sorted<T: Ord + Copy>(v: &mut [T]) {
    let mut budget = 8 * v.len();
    for i in 1..v.len() {
        let x = v[i];
        let mut j = i;
        while j > 0 && v[j - 1] > x {
            if budget == 0 {
                v[j] = x;
                v.sort_unstable();
                return;
            }
            budget -= 1;
            v[j] = v[j - 1];
            j -= 1;
        }
        v[j] = x;
    }
}

/// A fixed, well-mixed 64-bit value per op for the Zobrist hash.
fn splitmix64(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
