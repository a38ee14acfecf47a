//! The image level of `covidx audit` on generated fixtures with planted problems: a
//! re-encoded, pixel-identical copy across train and test, a near copy (noise and a one-pixel
//! shift) across train and test, the same file in two sources, an empty image file, and a
//! class confounded with its source through a corner marker the shortcut probe must find; a
//! clean fixture has no finding. Facts come from the image stage (full build) or are decoded by
//! the audit (metadata-only build) and cached; both give the same duplicates. The HTML report
//! is rendered in headless Chromium and checked from its DOM and a screenshot.

use std::path::Path;
use std::process::Command;

use covidx::audit::{self, duplicates::Kind, Build, Options};
use covidx::build_dir::BuildDir;
use covidx::builder::{build, BuildOptions};
use image::GrayImage;

const SIDE: u32 = 96;
const PATIENTS: usize = 16;

/// A seeded synthetic radiograph: a gradient and six bright or dark bumps at seeded places
/// (structurally different for different seeds); `marked` adds a bright corner label.
fn radiograph(seed: u64, marked: bool) -> GrayImage {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5DEE_CE66;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s % 10_000) as f64 / 10_000.0
    };
    let bumps: Vec<[f64; 4]> = (0..6)
        .map(|_| [next(), next(), 0.08 + 0.15 * next(), 160.0 * next() - 80.0])
        .collect();
    let (gx, gy) = (next() - 0.5, next() - 0.5);
    GrayImage::from_fn(SIDE, SIDE, |x, y| {
        let (fx, fy) = (x as f64 / SIDE as f64, y as f64 / SIDE as f64);
        if marked && fx < 0.12 && fy < 0.12 {
            return image::Luma([250]);
        }
        let mut v = 120.0 + 90.0 * (gx * fx + gy * fy);
        for [cx, cy, r, a] in &bumps {
            let d2 = ((fx - cx).powi(2) + (fy - cy).powi(2)) / (r * r);
            v += a * (-d2).exp();
        }
        image::Luma([v.clamp(0.0, 255.0) as u8])
    })
}

fn png(img: &GrayImage, best: bool) -> Vec<u8> {
    use image::codecs::png::{CompressionType, FilterType, PngEncoder};
    let mut out = Vec::new();
    let (c, f) = if best {
        (CompressionType::Best, FilterType::Paeth)
    } else {
        (CompressionType::Fast, FilterType::NoFilter)
    };
    img.write_with_encoder(PngEncoder::new_with_quality(&mut out, c, f))
        .unwrap();
    out
}

/// `img` shifted right and down by one pixel, with +-2 grey levels of fixed noise.
fn near_copy(img: &GrayImage) -> GrayImage {
    GrayImage::from_fn(SIDE, SIDE, |x, y| {
        let v = img.get_pixel(x.saturating_sub(1), y.saturating_sub(1))[0] as i32;
        let noise = ((x * 31 + y * 17) % 5) as i32 - 2;
        image::Luma([(v + noise).clamp(0, 255) as u8])
    })
}

/// Writes two generic sources (`a`: normal, `b`: covid), `PATIENTS` patients each with one
/// image, the first four of each pinned to test. With `plant`, the problems of the module
/// documentation are planted. Returns the build options (full build, 32 px shards).
fn fixture(dir: &Path, plant: bool, metadata_only: bool) -> BuildOptions {
    // Planted: a holds the normal images, b the covid ones (confounded); clean: both classes
    // alternate in both sources.
    let finding = |name: &str, i: usize| match (plant, name) {
        (true, "a") => "n",
        (true, _) => "c",
        (false, _) if i.is_multiple_of(2) => "n",
        (false, _) => "c",
    };
    for (name, base) in [("a", 0u64), ("b", 1000)] {
        let d = dir.join("sources").join(name);
        std::fs::create_dir_all(d.join("images")).unwrap();
        let mut csv = String::from("pid,img,finding\n");
        for i in 0..PATIENTS {
            let file = format!("{name}{i}.png");
            let marked = plant && name == "b";
            let img = radiograph(base + i as u64, marked);
            let bytes = match (plant, name, i) {
                // a10 (train): a0 (test) re-encoded: other bytes, the same pixels.
                (true, "a", 10) => png(&radiograph(0, false), false),
                // b10 (train): b1 (test) shifted by a pixel, with noise.
                (true, "b", 10) => png(&near_copy(&radiograph(1001, true)), true),
                // a3 (test): an empty file.
                (true, "a", 3) => Vec::new(),
                // b13 (train): the very file of a13 (train), in the other source.
                (true, "b", 13) => png(&radiograph(13, false), true),
                _ => png(&img, true),
            };
            std::fs::write(d.join("images").join(&file), bytes).unwrap();
            csv.push_str(&format!("{name}{i},{file},{}\n", finding(name, i)));
        }
        std::fs::write(d.join("m.csv"), csv).unwrap();
    }
    let source = |name: &str| {
        let pinned = |f: &str| -> String {
            let ids: Vec<String> = (0..4)
                .filter(|&i| finding(name, i) == f)
                .map(|i| format!("\"{name}{i}\""))
                .collect();
            ids.join(", ")
        };
        let mut classes = Vec::new();
        for (f, class) in [("n", "normal"), ("c", "covid")] {
            if !pinned(f).is_empty() {
                classes.push(format!("{class} = [{}]", pinned(f)));
            }
        }
        format!(
            "[[sources]]\nname = \"{name}\"\nkind = \"csv\"\ndir = \"{name}\"\nmetadata = \
             \"m.csv\"\ncolumns = {{ patient = \"pid\", image = \"img\", finding = \"finding\" \
             }}\ntest_patients = {{ {} }}\n",
            classes.join(", ")
        )
    };
    let pipeline = format!(
        "name = \"audit-images\"\nseed = 5\nclasses = [\"normal\", \"covid\"]\n[labels]\nparse \
         = \"whole\"\nmap = {{ n = \"normal\", c = \"covid\" }}\n{}{}[split]\nmethod = \
         \"pinned\"\n[images]\nenabled = true\nsize = 32\ncopies = 0\n",
        source("a"),
        source("b")
    );
    std::fs::write(dir.join("p.toml"), pipeline).unwrap();
    BuildOptions {
        metadata_only,
        ..BuildOptions::new(dir.join("p.toml"), dir.join("sources"), dir.join("out"))
    }
}

fn audited(opts: &BuildOptions) -> audit::Audit {
    let outcome = build(opts).unwrap();
    assert!(
        outcome.audit_failed.is_empty(),
        "{:?}",
        outcome.audit_failed
    );
    let b = Build::open(&BuildDir::new(&opts.out)).unwrap();
    let opts = Options {
        images: true,
        ..Options::default()
    };
    let a = audit::audit(&b, &opts).unwrap();
    audit::write_reports(&b, &a, &["md", "json", "html"]).unwrap();
    a
}

/// Every file under `dir` with its bytes.
fn tree(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// The manifest row of image `file`.
fn record(out: &Path, file: &str) -> u64 {
    let m = covidx::manifest::Manifest::read(&BuildDir::new(out).manifest()).unwrap();
    let record = m.rows().find(|r| r.image() == file).unwrap().record();
    record
}

#[test]
fn a_clean_fixture_has_no_finding() {
    let tmp = tempfile::tempdir().unwrap();
    let a = audited(&fixture(tmp.path(), false, false));
    assert!(a.findings.is_empty(), "{:#?}", a.findings);
    let im = a.images.as_ref().unwrap();
    assert_eq!(im.provenance.in_scope, 2 * PATIENTS as u64);
    assert_eq!(im.provenance.from_build, 2 * PATIENTS as u64);
    assert!(
        im.duplicates.groups.is_empty(),
        "{:?}",
        im.duplicates.groups
    );
    assert!(im.unreadable.is_empty());
    assert!(im.probe.skipped.is_none());
}

#[test]
fn planted_problems_are_each_found_from_the_stage_and_from_the_sources() {
    let tmp = tempfile::tempdir().unwrap();
    let full = audited(&fixture(&tmp.path().join("full"), true, false));
    let meta_opts = fixture(&tmp.path().join("meta"), true, true);
    let sources_before = tree(&meta_opts.sources);
    let meta = audited(&meta_opts);
    for a in [&full, &meta] {
        let checks: Vec<&str> = a.findings.iter().map(|f| f.check).collect();
        for want in [
            "cross-split-duplicates",
            "cross-source-duplicates",
            "unreadable-images",
            "source-confounding",
        ] {
            assert!(checks.contains(&want), "{want} missing from {checks:?}");
        }
        let im = a.images.as_ref().unwrap();
        let d = &im.duplicates;
        assert_eq!(d.test_in_train, 2, "{:#?}", d.groups);
        // The headline matrix: train x test in both directions.
        let (tr, te) = (0, 1);
        assert_eq!(d.splits.labels[..2], ["train", "test"]);
        assert_eq!((d.splits.counts[te][tr], d.splits.counts[tr][te]), (2, 2));
        assert_eq!(d.pixel_groups, 1);
        assert_eq!(d.file_groups, 1);
        assert_eq!(d.near_only_groups, 1);
        assert_eq!(d.cross_source_groups, 1);
        let kinds: Vec<Kind> = d.cross_split_pairs.iter().map(|p| p.kind).collect();
        assert_eq!(
            kinds,
            vec![Kind::Pixels, Kind::Near],
            "{:#?}",
            d.cross_split_pairs
        );
        assert!(d.cross_split_pairs[1].phash_bits <= d.near_bits);
        assert_eq!(im.unreadable.len(), 1);
        assert_eq!(im.unreadable[0].reason, "empty");
        let border = im
            .probe
            .results
            .iter()
            .find(|r| r.target == "class" && r.features == "border")
            .unwrap();
        assert!(border.balanced_accuracy > 0.9, "{border:?}");
        // Per-source statistics: every readable image, as PNG of 96 px.
        let a_stats = im.sources.iter().find(|s| s.source == "a").unwrap();
        assert_eq!(a_stats.images, PATIENTS as u64 - 1);
        assert_eq!(a_stats.width.median, SIDE as f64);
        assert_eq!(a_stats.formats.get("png"), Some(&(PATIENTS as u64 - 1)));
    }
    // The same pairs by record (the manifests are alike), whichever way the facts came.
    let pairs = |a: &audit::Audit| {
        a.images
            .as_ref()
            .unwrap()
            .duplicates
            .cross_split_pairs
            .clone()
    };
    assert_eq!(pairs(&full), pairs(&meta));
    let out = &meta_opts.out;
    let p = &pairs(&meta)[0];
    assert_eq!((p.a, p.b), (record(out, "a0.png"), record(out, "a10.png")));
    let m = meta.images.as_ref().unwrap();
    assert_eq!(m.provenance.from_build, 0);
    assert_eq!(m.provenance.decoded, 2 * PATIENTS as u64 - 1);
    // A second audit reads the cache instead of decoding.
    let b = Build::open(&BuildDir::new(out)).unwrap();
    let again = audit::audit(
        &b,
        &Options {
            images: true,
            ..Options::default()
        },
    )
    .unwrap();
    let g = again.images.as_ref().unwrap();
    assert_eq!(
        (g.provenance.decoded, g.provenance.from_cache),
        (0, 2 * PATIENTS as u64 - 1)
    );
    assert_eq!(g.duplicates, m.duplicates);

    // --fail-on from the command line: the duplicate checks fail, and name themselves.
    let cli = Command::new(env!("CARGO_BIN_EXE_covidx"))
        .args(["-q", "audit", out.to_str().unwrap(), "--fail-on"])
        .arg("cross-split-duplicates,cross-source-duplicates,overlap")
        .output()
        .unwrap();
    assert_eq!(cli.status.code(), Some(1));
    let err = String::from_utf8_lossy(&cli.stderr);
    assert!(
        err.contains("audit failed: cross-split-duplicates, cross-source-duplicates"),
        "{err}"
    );
    // The JSON report carries the leakage matrix.
    let json: serde_json::Value = serde_json::from_slice(
        &std::fs::read(BuildDir::new(out).path(covidx::build_dir::AUDIT_JSON)).unwrap(),
    )
    .unwrap();
    assert_eq!(json["images"]["duplicates"]["test_in_train"], 2);
    // The sources are only read: every file is as the fixture wrote it.
    assert_eq!(tree(&meta_opts.sources), sources_before);
    let html =
        std::fs::read_to_string(BuildDir::new(out).path(covidx::build_dir::AUDIT_HTML)).unwrap();
    render_in_chromium(
        &BuildDir::new(out).path(covidx::build_dir::AUDIT_HTML),
        &html,
    );
}

/// Renders the report in headless Chromium: the DOM must show the leakage matrix and a
/// duplicate pair with both thumbnails, and a screenshot must be written.
fn render_in_chromium(page: &Path, html: &str) {
    assert!(html.contains("id=\"split-matrix\""));
    assert!(!html.contains("<script"), "the report needs no JavaScript");
    assert!(
        !html.contains("src=\"http") && !html.contains("href=\"http"),
        "the report loads nothing from the network"
    );
    let Some(chromium) = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|c| Command::new(c).arg("--version").output().is_ok())
    else {
        eprintln!("SKIPPED: headless Chromium check (no chromium on PATH; .ci/run installs it)");
        return;
    };
    let profile = tempfile::tempdir().unwrap();
    let shot = profile.path().join("shot.png");
    let args = |extra: &[String]| -> std::process::Output {
        Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(format!("file://{}", page.display()))
            .output()
            .unwrap()
    };
    let dom = args(&["--dump-dom".to_string()]);
    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(
        dom.contains("id=\"split-matrix\""),
        "no leakage matrix in the DOM"
    );
    assert!(
        dom.contains("id=\"test-in-train\">2<"),
        "headline number missing"
    );
    let pairs = dom.split("class=\"pair\"").count() - 1;
    assert_eq!(pairs, 2, "two cross-split pairs");
    let first = dom.split("class=\"pair\"").nth(1).unwrap();
    assert_eq!(
        first.matches("src=\"data:image/png;base64,").count(),
        2,
        "both thumbnails of the first pair"
    );
    let out = args(&[
        format!("--screenshot={}", shot.display()),
        "--window-size=1200,2400".to_string(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
}

/// The sizes of the thumbnails of the HTML report's duplicate pairs.
fn pair_thumbnail_sides(html: &str) -> Vec<(u32, u32)> {
    use base64::Engine;
    let pairs = &html[html.find("id=\"pairs\"").expect("the pairs section")..];
    pairs
        .split("src=\"data:image/png;base64,")
        .skip(1)
        .map(|rest| {
            let b64 = &rest[..rest.find('"').unwrap()];
            let png = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap();
            let img = image::load_from_memory(&png).unwrap();
            (img.width(), img.height())
        })
        .collect()
}

#[test]
fn pair_thumbnails_fall_back_to_the_shards_then_to_the_facts() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = fixture(&tmp.path().join("full"), true, false);
    audited(&opts);
    let dir = BuildDir::new(&opts.out);
    let b = Build::open(&dir).unwrap();
    let gone = tmp.path().join("sources-gone");
    std::fs::create_dir_all(&gone).unwrap();
    let report = |b: &Build| {
        let opts = Options {
            images: true,
            sources: Some(gone.clone()),
            ..Options::default()
        };
        let a = audit::audit(b, &opts).unwrap();
        audit::write_reports(b, &a, &["html"]).unwrap();
        std::fs::read_to_string(dir.path(covidx::build_dir::AUDIT_HTML)).unwrap()
    };
    // The sources are gone: the clean copies in the shards (32 px) scaled to 160.
    let sides = pair_thumbnail_sides(&report(&b));
    assert_eq!(sides, vec![(160, 160); 4]);
    // The shards are gone too: the 32x32 thumbnails of the image facts.
    for split in ["train", "test"] {
        for e in std::fs::read_dir(dir.path("shards").join(split)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "safetensors") {
                std::fs::remove_file(p).unwrap();
            }
        }
    }
    let sides = pair_thumbnail_sides(&report(&b));
    assert_eq!(sides, vec![(32, 32); 4]);
}
