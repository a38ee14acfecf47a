//! Exact and near duplicates among the audited images, grouped with union-find.
//!
//! Two images are linked when their files are identical (same SHA-256), their decoded pixels
//! are identical (a re-encoded copy: same pixel SHA-256), or they are near copies: their pHash
//! differs in at most `near_bits` bits and their dHash in at most twice that ([`near`]). Linked images form duplicate groups (transitively); each
//! group says which splits and sources it spans. The split x split and source x source
//! matrices count, per row, the images that have a duplicate (a direct link) in the column
//! (the diagonal: one in the same split or source).
//!
//! The near search is exact, never approximate: pHashes are cut into four 16-bit chunks; two
//! hashes within `t` bits agree within `t / 4` bits on at least one chunk (pigeonhole), so
//! every pair is found by looking up, per chunk, the values within `t / 4` bits of the image's
//! own (a multi-index), and candidates are then checked on both full hashes. With the default
//! threshold that is 17 lookups per chunk, sub-quadratic in the number of images.

use std::collections::{BTreeMap, BTreeSet};

use rayon::prelude::*;
use serde::Serialize;

use super::{Finding, Severity};
use crate::imaging::facts::ImageFacts;
use crate::imaging::phash::hamming;

/// One audited image.
#[derive(Debug, Clone, Copy)]
pub struct Item<'a> {
    /// Manifest row.
    pub record: u64,
    /// `train`, `test` or `test-pool` (or another build's name, see `--against`).
    pub split: &'a str,
    /// Source.
    pub source: &'a str,
    /// Its facts.
    pub facts: &'a ImageFacts,
}

/// How two images are the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Identical files.
    File,
    /// Different files with identical decoded pixels.
    Pixels,
    /// Perceptual hashes within the threshold.
    Near,
}

/// Two duplicate images.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pair {
    /// Manifest row of the first (the smaller).
    pub a: u64,
    /// Manifest row of the second.
    pub b: u64,
    /// Split of `a`.
    pub split_a: String,
    /// Split of `b`.
    pub split_b: String,
    /// Source of `a`.
    pub source_a: String,
    /// Source of `b`.
    pub source_b: String,
    /// How they are the same.
    pub kind: Kind,
    /// dHash distance.
    pub dhash_bits: u32,
    /// pHash distance.
    pub phash_bits: u32,
}

/// A group of duplicate images.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Group {
    /// Manifest rows, ascending.
    pub records: Vec<u64>,
    /// The kinds of link inside the group.
    pub kinds: BTreeSet<Kind>,
    /// Images per split.
    pub splits: BTreeMap<String, u64>,
    /// Images per source.
    pub sources: BTreeMap<String, u64>,
}

/// A square count table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Matrix {
    /// Row and column names.
    pub labels: Vec<String>,
    /// `counts[i][j]`: images of `labels[i]` with a group-mate in `labels[j]`.
    pub counts: Vec<Vec<u64>>,
}

/// The duplicate audit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DuplicateAudit {
    /// The near-copy threshold (bits of 64 of the pHash; twice that for the dHash).
    pub near_bits: u32,
    /// Images compared.
    pub images: u64,
    /// Groups of two or more images, largest first.
    pub groups: Vec<Group>,
    /// Images in some group.
    pub duplicated_images: u64,
    /// Groups holding identical files.
    pub file_groups: u64,
    /// Groups holding re-encoded copies (identical pixels, other bytes).
    pub pixel_groups: u64,
    /// Groups linked only by near copies.
    pub near_only_groups: u64,
    /// Split x split.
    pub splits: Matrix,
    /// Source x source.
    pub sources: Matrix,
    /// Test images with a duplicate in train (the headline leakage number).
    pub test_in_train: u64,
    /// Every duplicate pair (a direct link) in different splits, ordered by records.
    pub cross_split_pairs: Vec<Pair>,
    /// Groups spanning more than one source.
    pub cross_source_groups: u64,
}

/// Union-find over `n` items, by size with path halving.
struct UnionFind {
    parent: Vec<usize>,
    size: Vec<usize>,
}

impl UnionFind {
    fn new(n: usize) -> Self {
        UnionFind {
            parent: (0..n).collect(),
            size: vec![1; n],
        }
    }

    fn find(&mut self, mut x: usize) -> usize {
        while self.parent[x] != x {
            self.parent[x] = self.parent[self.parent[x]];
            x = self.parent[x];
        }
        x
    }

    fn union(&mut self, a: usize, b: usize) {
        let (mut a, mut b) = (self.find(a), self.find(b));
        if a == b {
            return;
        }
        if self.size[a] < self.size[b] {
            std::mem::swap(&mut a, &mut b);
        }
        self.parent[b] = a;
        self.size[a] += self.size[b];
    }
}

/// The 16-bit chunk `c` (0 = the high bits) of a hash.
fn chunk(h: u64, c: usize) -> usize {
    ((h >> (48 - 16 * c)) & 0xFFFF) as usize
}

/// Every 16-bit value within `r` bits of `v` (`r` at most 2 here).
fn within(v: usize, r: u32) -> Vec<usize> {
    let mut out = vec![v];
    if r >= 1 {
        for i in 0..16 {
            out.push(v ^ (1 << i));
        }
    }
    if r >= 2 {
        for i in 0..16 {
            for j in i + 1..16 {
                out.push(v ^ (1 << i) ^ (1 << j));
            }
        }
    }
    out
}

/// The near-copy rule on the XOR of two pHashes and of two dHashes: the pHash within `t` bits
/// (the criterion) and the dHash within `2t` (the confirmation: it compares neighbouring cells,
/// so on smooth radiographs a one-pixel shift flips more of its bits).
pub fn near(phash_xor: u64, dhash_xor: u64, t: u32) -> bool {
    phash_xor.count_ones() <= t && dhash_xor.count_ones() <= 2 * t
}

/// The multi-index: per chunk, the items sorted by chunk value, with the start of each value.
struct MultiIndex {
    starts: Vec<Vec<u32>>,
    items: Vec<Vec<u32>>,
}

impl MultiIndex {
    fn new(hashes: &[u64]) -> Self {
        let mut starts = Vec::with_capacity(4);
        let mut items = Vec::with_capacity(4);
        for c in 0..4 {
            let mut count = vec![0u32; (1 << 16) + 1];
            for &h in hashes {
                count[chunk(h, c) + 1] += 1;
            }
            for v in 0..1 << 16 {
                count[v + 1] += count[v];
            }
            let mut next = count.clone();
            let mut order = vec![0u32; hashes.len()];
            for (i, &h) in hashes.iter().enumerate() {
                let v = chunk(h, c);
                order[next[v] as usize] = i as u32;
                next[v] += 1;
            }
            starts.push(count);
            items.push(order);
        }
        MultiIndex { starts, items }
    }

    /// Items sharing chunk `c` value `v`.
    fn bucket(&self, c: usize, v: usize) -> &[u32] {
        let (a, b) = (self.starts[c][v] as usize, self.starts[c][v + 1] as usize);
        &self.items[c][a..b]
    }
}

/// Every pair (i < j) of items whose pHash differs in at most `t` bits and whose dHash differs
/// in at most `2t` (see [`near`]).
pub fn near_pairs(items: &[Item<'_>], t: u32) -> Vec<(usize, usize)> {
    let ph: Vec<u64> = items.iter().map(|i| i.facts.phash).collect();
    let dh: Vec<u64> = items.iter().map(|i| i.facts.dhash).collect();
    let close = |i: usize, j: usize| near(ph[i] ^ ph[j], dh[i] ^ dh[j], t);
    let r = t / 4;
    if r > 2 {
        // A threshold this loose makes every bucket large: compare all pairs.
        return (0..items.len())
            .into_par_iter()
            .flat_map_iter(|i| {
                (i + 1..items.len())
                    .filter(move |&j| close(i, j))
                    .map(move |j| (i, j))
            })
            .collect();
    }
    let index = MultiIndex::new(&ph);
    let mut pairs: Vec<(usize, usize)> = (0..items.len())
        .into_par_iter()
        .flat_map_iter(|i| {
            let mut found: Vec<usize> = Vec::new();
            for c in 0..4 {
                for v in within(chunk(ph[i], c), r) {
                    found.extend(
                        index
                            .bucket(c, v)
                            .iter()
                            .map(|&j| j as usize)
                            .filter(|&j| j > i && close(i, j)),
                    );
                }
            }
            found.sort_unstable();
            found.dedup();
            found.into_iter().map(move |j| (i, j))
        })
        .collect();
    pairs.sort_unstable();
    pairs
}

/// Every pair (i < j) of items that share a key (identical files or pixels).
fn equal_pairs(items: &[Item<'_>], key: fn(&ImageFacts) -> &str) -> Vec<(usize, usize)> {
    let mut sets: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, it) in items.iter().enumerate() {
        sets.entry(key(it.facts)).or_default().push(i);
    }
    let mut out = Vec::new();
    for m in sets.values().filter(|m| m.len() > 1) {
        for (x, &i) in m.iter().enumerate() {
            out.extend(m[x + 1..].iter().map(|&j| (i, j)));
        }
    }
    out
}

/// The pair of items `i` and `j` of one group (the smaller record first).
fn pair(items: &[Item<'_>], i: usize, j: usize) -> Pair {
    if items[i].record <= items[j].record {
        pair_of(&items[i], &items[j])
    } else {
        pair_of(&items[j], &items[i])
    }
}

/// The pair of `a` and `b`, in that order, with how they are the same.
pub fn pair_of(a: &Item<'_>, b: &Item<'_>) -> Pair {
    let kind = if a.facts.file_sha256 == b.facts.file_sha256 {
        Kind::File
    } else if a.facts.pixel_blake3 == b.facts.pixel_blake3 {
        Kind::Pixels
    } else {
        Kind::Near
    };
    Pair {
        a: a.record,
        b: b.record,
        split_a: a.split.to_string(),
        split_b: b.split.to_string(),
        source_a: a.source.to_string(),
        source_b: b.source.to_string(),
        kind,
        dhash_bits: hamming(a.facts.dhash, b.facts.dhash),
        phash_bits: hamming(a.facts.phash, b.facts.phash),
    }
}

/// Counts, per label pair, the images of the row label with a duplicate (a direct link, not
/// only a group-mate) of the column label.
fn matrix(edges: &[(usize, usize)], label: impl Fn(usize) -> String, all: &[String]) -> Matrix {
    let pos: BTreeMap<String, usize> = all
        .iter()
        .enumerate()
        .map(|(i, l)| (l.clone(), i))
        .collect();
    let mut seen: BTreeSet<(usize, usize)> = BTreeSet::new();
    for &(i, j) in edges {
        seen.insert((i, pos[&label(j)]));
        seen.insert((j, pos[&label(i)]));
    }
    let n = all.len();
    let mut counts = vec![vec![0u64; n]; n];
    for (i, col) in seen {
        counts[pos[&label(i)]][col] += 1;
    }
    Matrix {
        labels: all.to_vec(),
        counts,
    }
}

/// Every pair (i < j) of items that are the same image: identical files, identical pixels, or
/// near copies within `near_bits` (see [`near`]); sorted, each pair once.
pub fn links(items: &[Item<'_>], near_bits: u32) -> Vec<(usize, usize)> {
    let mut edges = equal_pairs(items, |f| &f.file_sha256);
    edges.extend(equal_pairs(items, |f| &f.pixel_blake3));
    edges.extend(near_pairs(items, near_bits));
    edges.sort_unstable();
    edges.dedup();
    edges
}

/// Finds the duplicates among `items` (see the module documentation).
pub fn audit<'a>(items: &[Item<'a>], near_bits: u32) -> DuplicateAudit {
    let n = items.len();
    let edges = links(items, near_bits);
    let mut uf = UnionFind::new(n);
    for &(i, j) in &edges {
        uf.union(i, j);
    }
    let mut members: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for i in 0..n {
        members.entry(uf.find(i)).or_default().push(i);
    }
    let mut groups: Vec<Vec<usize>> = members.into_values().filter(|g| g.len() > 1).collect();
    groups
        .iter_mut()
        .for_each(|g| g.sort_by_key(|&i| items[i].record));
    groups.sort_by_key(|g| (std::cmp::Reverse(g.len()), items[g[0]].record));
    let names = |f: fn(&Item<'a>) -> &'a str| -> Vec<String> {
        let set: BTreeSet<&str> = items.iter().map(f).collect();
        set.into_iter().map(str::to_string).collect()
    };
    let mut split_names = names(|i| i.split);
    split_names.sort_by_key(|s| match s.as_str() {
        "train" => 0,
        "test" => 1,
        "test-pool" => 2,
        _ => 3,
    });
    let splits = matrix(&edges, |i| items[i].split.to_string(), &split_names);
    let sources = matrix(
        &edges,
        |i| items[i].source.to_string(),
        &names(|i| i.source),
    );
    let train_test = split_names
        .iter()
        .position(|s| s == "train")
        .zip(split_names.iter().position(|s| s == "test"));
    let test_in_train = train_test.map_or(0, |(tr, te)| splits.counts[te][tr]);
    let mut kinds_of: BTreeMap<usize, BTreeSet<Kind>> = BTreeMap::new();
    let mut cross_split_pairs = Vec::new();
    for &(i, j) in &edges {
        let p = pair(items, i, j);
        kinds_of.entry(uf.find(i)).or_default().insert(p.kind);
        if p.split_a != p.split_b {
            cross_split_pairs.push(p);
        }
    }
    let (mut file_groups, mut pixel_groups, mut near_only_groups) = (0, 0, 0);
    let mut cross_source_groups = 0;
    let out_groups: Vec<Group> = groups
        .iter()
        .map(|g| {
            let kinds = kinds_of.remove(&uf.find(g[0])).unwrap_or_default();
            let count = |f: fn(&Item<'a>) -> &'a str| {
                let mut m: BTreeMap<String, u64> = BTreeMap::new();
                for &i in g {
                    *m.entry(f(&items[i]).to_string()).or_default() += 1;
                }
                m
            };
            let (gs, gsrc) = (count(|i| i.split), count(|i| i.source));
            if gsrc.len() > 1 {
                cross_source_groups += 1;
            }
            if kinds.contains(&Kind::File) {
                file_groups += 1;
            } else if kinds.contains(&Kind::Pixels) {
                pixel_groups += 1;
            } else {
                near_only_groups += 1;
            }
            Group {
                records: g.iter().map(|&i| items[i].record).collect(),
                kinds,
                splits: gs,
                sources: gsrc,
            }
        })
        .collect();
    cross_split_pairs.sort_by_key(|p| (p.a, p.b));
    DuplicateAudit {
        near_bits,
        images: n as u64,
        duplicated_images: groups.iter().map(|g| g.len() as u64).sum(),
        groups: out_groups,
        file_groups,
        pixel_groups,
        near_only_groups,
        splits,
        sources,
        test_in_train,
        cross_split_pairs,
        cross_source_groups,
    }
}

impl DuplicateAudit {
    /// Findings: train/test duplicates (`cross-split-duplicates`, an error), groups across
    /// sources (`cross-source-duplicates`, a warning), duplicates within a split (info).
    pub fn findings(&self) -> Vec<Finding> {
        let mut out = Vec::new();
        if self.test_in_train > 0 {
            let pairs = self
                .cross_split_pairs
                .iter()
                .filter(|p| {
                    matches!(
                        (p.split_a.as_str(), p.split_b.as_str()),
                        ("train", "test") | ("test", "train")
                    )
                })
                .count();
            out.push(Finding {
                check: "cross-split-duplicates",
                severity: Severity::Error,
                message: format!(
                    "{} test images have a duplicate in train ({pairs} train-test pairs, exact or \
                     or near): the test set leaks into training",
                    self.test_in_train
                ),
            });
        }
        if self.cross_source_groups > 0 {
            out.push(Finding {
                check: "cross-source-duplicates",
                severity: Severity::Warning,
                message: format!(
                    "{} duplicate groups span more than one source: the same image is in two \
                     datasets (one patient may carry two ids)",
                    self.cross_source_groups
                ),
            });
        }
        let within = self.groups.len() as u64 - self.cross_source_groups;
        if within > 0 {
            out.push(Finding {
                check: "duplicates",
                severity: Severity::Info,
                message: format!(
                    "{} duplicate groups ({} images): {} identical files, {} re-encoded copies, \
                     {} near copies",
                    self.groups.len(),
                    self.duplicated_images,
                    self.file_groups,
                    self.pixel_groups,
                    self.near_only_groups
                ),
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(file: &str, pixels: &str, dhash: u64, phash: u64) -> ImageFacts {
        ImageFacts {
            file_sha256: file.into(),
            file_size: 1,
            format: "png".into(),
            bit_depth: 8,
            width: 1,
            height: 1,
            pixel_blake3: pixels.into(),
            dhash,
            phash,
            mean: 0.0,
            std: 0.0,
            histogram: [0; crate::imaging::facts::BINS],
            thumbnail: vec![0; 1024],
        }
    }

    /// A seeded pseudo-random 64-bit value.
    fn rnd(i: u64) -> u64 {
        let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
        x ^= x >> 31;
        x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x ^ (x >> 29)
    }

    #[test]
    fn the_multi_index_finds_exactly_the_pairs_all_pairs_finds() {
        // Random hashes plus planted near copies at every distance up to 9 bits.
        let mut fs = Vec::new();
        for i in 0..400u64 {
            fs.push(facts(
                &format!("f{i}"),
                &format!("p{i}"),
                rnd(i),
                rnd(i + 1000),
            ));
        }
        for d in 0..10u64 {
            let (h, p) = (rnd(d), rnd(d + 1000));
            let flip = |x: u64, k: u64| (0..k).fold(x, |x, b| x ^ (1 << (b * 7 % 64)));
            fs.push(facts("x", "y", flip(h, d), flip(p, d)));
        }
        let items: Vec<Item<'_>> = fs
            .iter()
            .enumerate()
            .map(|(i, f)| Item {
                record: i as u64,
                split: "train",
                source: "s",
                facts: f,
            })
            .collect();
        for t in [0, 3, 4, 6, 8, 11] {
            let brute: Vec<(usize, usize)> = (0..items.len())
                .flat_map(|i| (i + 1..items.len()).map(move |j| (i, j)))
                .filter(|&(i, j)| {
                    hamming(fs[i].phash, fs[j].phash) <= t
                        && hamming(fs[i].dhash, fs[j].dhash) <= 2 * t
                })
                .collect();
            assert_eq!(near_pairs(&items, t), brute, "threshold {t}");
            assert!(!brute.is_empty() || t == 0);
        }
    }

    #[test]
    fn groups_are_transitive_and_the_matrices_count_images() {
        let fs = [
            facts("a", "pa", 0, 0), // 0 train
            facts("a", "pa", 0, 0), // 1 test: same file as 0
            facts("b", "pa", 0, 0), // 2 test: re-encoded copy of 0
            // 3 train and 4 test-pool: near copies (16 and 8 bits apart), far from the rest.
            facts("c", "pc", 0xFFFF_FFFF_0000_00FF, 0xFFFF_FFFF_0000_000F),
            facts("d", "pd", 0xFFFF_FFFF_0000_FF00, 0xFFFF_FFFF_0000_0F00),
            facts("e", "pe", u64::MAX, u64::MAX), // 5 alone
        ];
        let splits = ["train", "test", "test", "train", "test-pool", "train"];
        let sources = ["x", "x", "y", "x", "x", "x"];
        let items: Vec<Item<'_>> = (0..6)
            .map(|i| Item {
                record: i as u64,
                split: splits[i],
                source: sources[i],
                facts: &fs[i],
            })
            .collect();
        let a = audit(&items, 16);
        assert_eq!(a.groups.len(), 2, "{:?}", a.groups);
        assert_eq!(a.groups[0].records, vec![0, 1, 2]);
        assert_eq!(
            a.groups[0].kinds,
            BTreeSet::from([Kind::File, Kind::Pixels])
        );
        assert_eq!(a.groups[1].records, vec![3, 4]);
        assert_eq!(a.test_in_train, 2);
        assert_eq!(a.splits.labels, vec!["train", "test", "test-pool"]);
        // train: 0 and 3 have test/test-pool mates; test: 1 and 2 are mates of each other.
        assert_eq!(
            a.splits.counts,
            vec![vec![0, 1, 1], vec![2, 2, 0], vec![1, 0, 0]]
        );
        assert_eq!(a.sources.counts, vec![vec![4, 2], vec![1, 0]]);
        assert_eq!(a.cross_source_groups, 1);
        assert_eq!(a.duplicated_images, 5);
        assert_eq!(a.cross_split_pairs.len(), 3);
        let f = a.findings();
        assert!(f.iter().any(|f| f.check == "cross-split-duplicates"));
        // At a tight threshold the near pair is gone.
        assert_eq!(audit(&items, 3).groups.len(), 1);
    }
}
