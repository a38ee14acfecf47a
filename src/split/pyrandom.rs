//! CPython's `random` module, exactly, for the calls COVID-Net's notebooks made to draw test
//! lists (`random.seed(n)` with an int, then `random.sample`, `random.shuffle`): the MT19937
//! generator seeded by `init_by_array` over the 32-bit words of `|n|`, `getrandbits`,
//! `_randbelow` by rejection on `getrandbits(n.bit_length())`, and `sample`'s two algorithms
//! (a shrinking pool when the population is small next to the sample, else rejection of
//! repeats through a set). Same seed and calls give the same picks as Python 3.

use std::collections::HashSet;

const N: usize = 624;
const M: usize = 397;

/// CPython's `random.Random` state (MT19937).
#[derive(Clone)]
pub struct PyRandom {
    mt: [u32; N],
    index: usize,
}

impl std::fmt::Debug for PyRandom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PyRandom")
            .field("index", &self.index)
            .finish()
    }
}

impl PyRandom {
    /// The generator after `random.seed(n)` for an int `n` (its absolute value is used, as
    /// CPython does).
    pub fn seed(n: i128) -> PyRandom {
        let mut v = n.unsigned_abs();
        let mut key = Vec::new();
        while v != 0 {
            key.push(v as u32);
            v >>= 32;
        }
        if key.is_empty() {
            key.push(0);
        }
        let mut r = PyRandom::init_genrand(19_650_218);
        r.init_by_array(&key);
        r
    }

    fn init_genrand(s: u32) -> PyRandom {
        let mut mt = [0u32; N];
        mt[0] = s;
        for i in 1..N {
            mt[i] = 1_812_433_253u32
                .wrapping_mul(mt[i - 1] ^ (mt[i - 1] >> 30))
                .wrapping_add(i as u32);
        }
        PyRandom { mt, index: N }
    }

    fn init_by_array(&mut self, key: &[u32]) {
        let mt = &mut self.mt;
        let (mut i, mut j) = (1usize, 0usize);
        for _ in 0..N.max(key.len()) {
            mt[i] = (mt[i] ^ (mt[i - 1] ^ (mt[i - 1] >> 30)).wrapping_mul(1_664_525))
                .wrapping_add(key[j])
                .wrapping_add(j as u32);
            i += 1;
            j += 1;
            if i >= N {
                mt[0] = mt[N - 1];
                i = 1;
            }
            if j >= key.len() {
                j = 0;
            }
        }
        for _ in 0..N - 1 {
            mt[i] = (mt[i] ^ (mt[i - 1] ^ (mt[i - 1] >> 30)).wrapping_mul(1_566_083_941))
                .wrapping_sub(i as u32);
            i += 1;
            if i >= N {
                mt[0] = mt[N - 1];
                i = 1;
            }
        }
        mt[0] = 0x8000_0000;
        self.index = N;
    }

    /// The next 32-bit output (`genrand_uint32`).
    pub fn next_u32(&mut self) -> u32 {
        if self.index >= N {
            let mt = &mut self.mt;
            for k in 0..N {
                let y = (mt[k] & 0x8000_0000) | (mt[(k + 1) % N] & 0x7fff_ffff);
                let mag = if y & 1 == 1 { 0x9908_b0df } else { 0 };
                mt[k] = mt[(k + M) % N] ^ (y >> 1) ^ mag;
            }
            self.index = 0;
        }
        let mut y = self.mt[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// `random.getrandbits(k)` for `1 <= k <= 64` (words least significant first, the last
    /// one shifted down to its bits, as CPython fills them).
    pub fn getrandbits(&mut self, k: u32) -> u64 {
        assert!((1..=64).contains(&k), "getrandbits({k}) outside 1..=64");
        if k <= 32 {
            return (self.next_u32() >> (32 - k)) as u64;
        }
        let low = self.next_u32() as u64;
        let high = (self.next_u32() >> (64 - k)) as u64;
        (high << 32) | low
    }

    /// `random.random()`: a 53-bit float in [0, 1).
    pub fn random(&mut self) -> f64 {
        let a = (self.next_u32() >> 5) as f64;
        let b = (self.next_u32() >> 6) as f64;
        (a * 67_108_864.0 + b) * (1.0 / 9_007_199_254_740_992.0)
    }

    /// `random._randbelow(n)`: uniform in `0..n` (0 for `n == 0`, as CPython).
    pub fn randbelow(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        let k = 64 - n.leading_zeros();
        loop {
            let r = self.getrandbits(k);
            if r < n {
                return r;
            }
        }
    }

    /// `random.sample(population, k)` over a population of `n` items: the picked indices, in
    /// pick order. `None` when `k > n` (Python raises ValueError).
    pub fn sample(&mut self, n: usize, k: usize) -> Option<Vec<usize>> {
        if k > n {
            return None;
        }
        let mut setsize = 21usize;
        if k > 5 {
            // `4 ** ceil(log(k * 3, 4))`, in C doubles as CPython computes it.
            let e = ((k * 3) as f64).ln() / 4f64.ln();
            setsize += 4usize.pow(e.ceil() as u32);
        }
        let mut out = Vec::with_capacity(k);
        if n <= setsize {
            let mut pool: Vec<usize> = (0..n).collect();
            for i in 0..k {
                let j = self.randbelow((n - i) as u64) as usize;
                out.push(pool[j]);
                pool[j] = pool[n - i - 1];
            }
        } else {
            let mut selected = HashSet::with_capacity(k);
            for _ in 0..k {
                let mut j = self.randbelow(n as u64) as usize;
                while selected.contains(&j) {
                    j = self.randbelow(n as u64) as usize;
                }
                selected.insert(j);
                out.push(j);
            }
        }
        Some(out)
    }

    /// `random.shuffle(x)` in place.
    pub fn shuffle<T>(&mut self, x: &mut [T]) {
        for i in (1..x.len()).rev() {
            let j = self.randbelow(i as u64 + 1) as usize;
            x.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_outputs_of_mt19937() {
        // Matsumoto and Nishimura's mt19937ar.c test vector: init_by_array({0x123, 0x234,
        // 0x345, 0x456}), first outputs 1067595299 955945823 477289528 4107218783 4228976476.
        let mut r = PyRandom::init_genrand(19_650_218);
        r.init_by_array(&[0x123, 0x234, 0x345, 0x456]);
        let got: Vec<u32> = (0..5).map(|_| r.next_u32()).collect();
        assert_eq!(
            got,
            [1067595299, 955945823, 477289528, 4107218783, 4228976476]
        );
    }

    #[test]
    fn python_values_known_by_heart() {
        // python3 -c "import random; random.seed(0); print(random.random())"
        assert_eq!(PyRandom::seed(0).random(), 0.8444218515250481);
        // random.seed(42); random.random() -> 0.6394267984578837
        assert_eq!(PyRandom::seed(42).random(), 0.6394267984578837);
        // The sign is dropped: seed(-42) == seed(42).
        assert_eq!(PyRandom::seed(-42).random(), 0.6394267984578837);
        // random.seed(0); random.sample(range(10), 3) -> [6, 9, 0]
        assert_eq!(PyRandom::seed(0).sample(10, 3), Some(vec![6, 9, 0]));
        assert_eq!(PyRandom::seed(0).sample(3, 4), None);
    }
}
