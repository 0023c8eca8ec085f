//! The order in which Mongrel2 emits client headers.
//!
//! Mongrel2 keeps request headers in a kazlib hash table (`src/adt/hash.c`)
//! keyed by the lowercased name, hashed with 32-bit FNV-1a
//! (`bstr_hash_fun`), and writes them by scanning that table: chains in
//! index order (`hash & mask`, 64 chains to start), and within a chain the
//! most recently inserted name first. When the 129th distinct name is
//! inserted the table doubles (and again at 257, ...), splitting each chain
//! and reversing the order inside it. This module reproduces that table
//! exactly, so zeroku emits headers in the very order Mongrel2 does; e.g. the
//! example in MONGREL2.md has `x-dup` (chain 3), `x-forwarded-for` (8),
//! `accept` (41), `user-agent` (46), `host` (47).
//!
//! A repeated name keeps its first position and collects up to
//! [`MAX_DUPES`] values (`Request_set` without replace); later ones are
//! dropped, as Mongrel2 does. A replacing set (`x-forwarded-for`, and the
//! frontend's extra keys) keeps the existing position and replaces all
//! values, or inserts the name if it is new.

use std::borrow::Cow;

/// Mongrel2's `MAX_DUPE_HEADERS`.
pub const MAX_DUPES: usize = 5;

const INIT_SIZE: usize = 64;
const NONE: u32 = u32::MAX;

/// FNV-1a, 32 bits, stopping at a NUL byte like the C loop does.
pub fn fnv1a(key: &[u8]) -> u32 {
    let mut acc: u32 = 2_166_136_261;
    for &b in key.iter().take_while(|&&b| b != 0) {
        acc ^= u32::from(b);
        acc = acc.wrapping_mul(16_777_619);
    }
    acc
}

pub struct Node<'a> {
    hkey: u32,
    next: u32,
    pub key: Cow<'a, str>,
    vals: [&'a [u8]; MAX_DUPES],
    n: usize,
}

impl<'a> Node<'a> {
    pub fn values(&self) -> &[&'a [u8]] {
        &self.vals[..self.n]
    }
}

pub struct Table<'a> {
    mask: u32,
    highmark: usize,
    /// The chains while the table has its initial size (no allocation for
    /// the usual request)…
    small: [u32; INIT_SIZE],
    /// …and once it has grown.
    big: Vec<u32>,
    nodes: Vec<Node<'a>>,
}

impl<'a> Table<'a> {
    /// A table for about `n` distinct names.
    pub fn with_capacity(n: usize) -> Self {
        Table {
            mask: (INIT_SIZE - 1) as u32,
            highmark: INIT_SIZE * 2,
            small: [NONE; INIT_SIZE],
            big: Vec::new(),
            nodes: Vec::with_capacity(n),
        }
    }

    fn heads(&self) -> &[u32] {
        if self.big.is_empty() {
            &self.small
        } else {
            &self.big
        }
    }

    fn heads_mut(&mut self) -> &mut [u32] {
        if self.big.is_empty() {
            &mut self.small
        } else {
            &mut self.big
        }
    }

    fn find(&self, key: &str, hkey: u32) -> Option<usize> {
        let mut i = self.heads()[(hkey & self.mask) as usize];
        while i != NONE {
            let n = &self.nodes[i as usize];
            if n.hkey == hkey && n.key == key {
                return Some(i as usize);
            }
            i = n.next;
        }
        None
    }

    /// `Request_set(req, key, val, replace)`.
    pub fn set(&mut self, key: Cow<'a, str>, val: &'a [u8], replace: bool) {
        let hkey = fnv1a(key.as_bytes());
        if let Some(i) = self.find(&key, hkey) {
            let node = &mut self.nodes[i];
            if replace {
                node.vals[0] = val;
                node.n = 1;
            } else if node.n < MAX_DUPES {
                node.vals[node.n] = val;
                node.n += 1;
            }
            return;
        }
        if self.nodes.len() >= self.highmark {
            self.grow();
        }
        let chain = (hkey & self.mask) as usize;
        let idx = u32::try_from(self.nodes.len()).expect("fewer than 2^32 headers");
        let next = self.heads()[chain];
        self.nodes.push(Node {
            hkey,
            next,
            key,
            vals: [val; MAX_DUPES],
            n: 1,
        });
        self.heads_mut()[chain] = idx;
    }

    /// kazlib's `grow_table`.
    fn grow(&mut self) {
        let old = self.heads().len();
        let mask = (self.mask << 1) | 1;
        let exposed = mask ^ self.mask;
        let mut heads = vec![NONE; old * 2];
        for chain in 0..old {
            let (mut low, mut high) = (NONE, NONE);
            let mut i = self.heads()[chain];
            while i != NONE {
                let node = &mut self.nodes[i as usize];
                let next = node.next;
                if node.hkey & exposed != 0 {
                    node.next = high;
                    high = i;
                } else {
                    node.next = low;
                    low = i;
                }
                i = next;
            }
            heads[chain] = low;
            heads[chain + old] = high;
        }
        self.big = heads;
        self.mask = mask;
        self.highmark *= 2;
    }

    /// Node indices in kazlib scan order.
    pub fn scan(&self) -> Vec<usize> {
        if self.big.is_empty() && self.nodes.len() <= 16 {
            // Not grown: chains in index order, newest first within one.
            // For a few names, sorting them is cheaper than walking the
            // 64 chains.
            let mut order: Vec<usize> = (0..self.nodes.len()).collect();
            order.sort_unstable_by_key(|&i| (self.nodes[i].hkey & self.mask, std::cmp::Reverse(i)));
            return order;
        }
        let mut order = Vec::with_capacity(self.nodes.len());
        for &head in self.heads() {
            let mut i = head;
            while i != NONE {
                order.push(i as usize);
                i = self.nodes[i as usize].next;
            }
        }
        order
    }

    pub fn node(&self, i: usize) -> &Node<'a> {
        &self.nodes[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(t: &Table) -> Vec<String> {
        t.scan()
            .into_iter()
            .map(|i| t.node(i).key.to_string())
            .collect()
    }

    #[test]
    fn example_order() {
        let mut t = Table::with_capacity(0);
        for k in ["host", "user-agent", "accept", "x-dup", "x-dup"] {
            t.set(Cow::Borrowed(k), b"v", false);
        }
        t.set(Cow::Borrowed("x-forwarded-for"), b"ip", true);
        assert_eq!(
            keys(&t),
            ["x-dup", "x-forwarded-for", "accept", "user-agent", "host"]
        );
    }

    #[test]
    fn same_chain_newest_first() {
        // Find two keys in one chain.
        let a = "k0".to_string();
        let b = (1..)
            .map(|i| format!("k{i}"))
            .find(|k| fnv1a(k.as_bytes()) & 63 == fnv1a(a.as_bytes()) & 63)
            .unwrap();
        let mut t = Table::with_capacity(0);
        t.set(Cow::Owned(a.clone()), b"1", false);
        t.set(Cow::Owned(b.clone()), b"2", false);
        assert_eq!(keys(&t), [b, a]);
    }

    #[test]
    fn few_names_scan_as_the_chains_do() {
        for n in 1..=16 {
            let names: Vec<String> = (0..n).map(|i| format!("x-h{}", i * 7)).collect();
            let mut t = Table::with_capacity(0);
            for k in &names {
                t.set(Cow::Borrowed(k.as_str()), b"v", false);
            }
            let mut walked = Vec::new();
            for &head in t.heads() {
                let mut i = head;
                while i != NONE {
                    walked.push(i as usize);
                    i = t.nodes[i as usize].next;
                }
            }
            assert_eq!(t.scan(), walked, "{n} names");
        }
    }

    #[test]
    fn dupes_capped_and_replace() {
        let mut t = Table::with_capacity(0);
        let vals: Vec<Vec<u8>> = (0..7).map(|i| vec![b'0' + i]).collect();
        for v in &vals {
            t.set(Cow::Borrowed("x"), v, false);
        }
        assert_eq!(t.node(0).values(), [b"0", b"1", b"2", b"3", b"4"]);
        t.set(Cow::Borrowed("x"), b"r", true);
        assert_eq!(t.node(0).values(), [b"r"]);
    }

    #[test]
    fn growth_keeps_every_key_once() {
        let names: Vec<String> = (0..600).map(|i| format!("h{i}")).collect();
        let mut t = Table::with_capacity(0);
        for n in &names {
            t.set(Cow::Borrowed(n), b"v", false);
        }
        assert_eq!(t.heads().len(), 512);
        let mut got = keys(&t);
        assert_eq!(got.len(), 600);
        // Chains are in ascending (hash & mask) order after growth too.
        let chains: Vec<u32> = got.iter().map(|k| fnv1a(k.as_bytes()) & t.mask).collect();
        assert!(chains.windows(2).all(|w| w[0] <= w[1]));
        got.sort();
        let mut want = names.clone();
        want.sort();
        assert_eq!(got, want);
        // Lookups still find existing keys after growth.
        t.set(Cow::Borrowed("h5"), b"w", false);
        assert_eq!(keys(&t).len(), 600);
    }
}
