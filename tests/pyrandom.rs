//! `split::pyrandom` against CPython itself: the same seeds and calls give the same numbers
//! (`random.seed(n)`, `getrandbits`, `random`, `sample` on both of its algorithms, `shuffle`,
//! and a notebook-like sequence of samples from one generator). Needs a `python3` (any
//! Python 3; `COVIDX_PYTHON` overrides); without one the test prints SKIPPED.

use std::process::Command;

use covidx::split::pyrandom::PyRandom;

const SCRIPT: &str = r#"
import json, random, sys
seeds = [0, 1, 7, 42, 2**32 - 1, 2**32, 2**40 + 3, -5, 12345678901234567890]
sizes = [(10, 3), (21, 21), (22, 5), (26, 6), (27, 6), (100, 6), (100, 30), (1000, 20),
         (1000, 70), (50, 50), (5000, 10), (300, 200), (7, 0), (85, 21), (86, 22)]
out = []
for s in seeds:
    case = {"seed": str(s)}
    random.seed(s)
    case["bits"] = [str(random.getrandbits(k)) for k in [1, 5, 31, 32, 33, 63, 64] * 3]
    case["random"] = [random.random() for _ in range(5)]
    case["below"] = [random._randbelow(n) for n in [1, 2, 3, 1000, 2**31 + 7, 10**12]]
    samples = []
    for n, k in sizes:
        random.seed(s)
        samples.append(random.sample(range(n), k))
    case["sample"] = samples
    shuffles = []
    for n in [0, 1, 2, 10, 100]:
        random.seed(s)
        x = list(range(n))
        random.shuffle(x)
        shuffles.append(x)
    case["shuffle"] = shuffles
    random.seed(s)
    case["sequence"] = [random.sample(range(64), 20), random.sample(range(100), 10),
                        random.sample(range(100), 70)]
    out.append(case)
print(json.dumps({"cases": out, "sizes": sizes}))
"#;

#[test]
fn draws_equal_cpython() {
    let py = std::env::var("COVIDX_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = match Command::new(&py).arg("-c").arg(SCRIPT).output() {
        Ok(o) if o.status.success() => o,
        _ => {
            println!("SKIPPED draws_equal_cpython: no working {py}");
            return;
        }
    };
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let sizes: Vec<(usize, usize)> = v["sizes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p[0].as_u64().unwrap() as usize,
                p[1].as_u64().unwrap() as usize,
            )
        })
        .collect();
    let ints = |x: &serde_json::Value| -> Vec<u64> {
        x.as_array()
            .unwrap()
            .iter()
            .map(|i| {
                i.as_u64()
                    .unwrap_or_else(|| i.as_str().unwrap().parse().unwrap())
            })
            .collect()
    };
    let usizes =
        |x: &serde_json::Value| -> Vec<usize> { ints(x).into_iter().map(|i| i as usize).collect() };
    for case in v["cases"].as_array().unwrap() {
        let seed: i128 = case["seed"].as_str().unwrap().parse().unwrap();
        let mut r = PyRandom::seed(seed);
        let ks = [1, 5, 31, 32, 33, 63, 64].repeat(3);
        let bits: Vec<u64> = ks.iter().map(|&k| r.getrandbits(k)).collect();
        assert_eq!(bits, ints(&case["bits"]), "getrandbits, seed {seed}");
        let floats: Vec<f64> = (0..5).map(|_| r.random()).collect();
        let want: Vec<f64> = case["random"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_f64().unwrap())
            .collect();
        assert_eq!(floats, want, "random(), seed {seed}");
        let below: Vec<u64> = [1u64, 2, 3, 1000, 2u64.pow(31) + 7, 10u64.pow(12)]
            .iter()
            .map(|&n| r.randbelow(n))
            .collect();
        assert_eq!(below, ints(&case["below"]), "_randbelow, seed {seed}");
        for (&(n, k), want) in sizes.iter().zip(case["sample"].as_array().unwrap()) {
            let got = PyRandom::seed(seed).sample(n, k).unwrap();
            assert_eq!(got, usizes(want), "sample({n}, {k}), seed {seed}");
        }
        for (n, want) in [0usize, 1, 2, 10, 100]
            .iter()
            .zip(case["shuffle"].as_array().unwrap())
        {
            let mut x: Vec<usize> = (0..*n).collect();
            PyRandom::seed(seed).shuffle(&mut x);
            assert_eq!(x, usizes(want), "shuffle({n}), seed {seed}");
        }
        let mut r = PyRandom::seed(seed);
        let seq = case["sequence"].as_array().unwrap();
        for ((n, k), want) in [(64, 20), (100, 10), (100, 70)].into_iter().zip(seq) {
            assert_eq!(
                r.sample(n, k).unwrap(),
                usizes(want),
                "sequence sample({n}, {k}), seed {seed}"
            );
        }
    }
}
