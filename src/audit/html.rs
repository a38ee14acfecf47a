//! The self-contained HTML report (`audit/report.html`): one page, no network, no
//! JavaScript; charts are inline SVG, thumbnails are base64 PNGs of both images of every
//! cross-split duplicate pair (the first [`MAX_PAIRS`]): from the sources, else from the clean
//! copy in the shards, else the 32x32 facts thumbnail. Rendered with maud.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::Result;
use base64::Engine;
use maud::{html, Markup, PreEscaped, DOCTYPE};
use rayon::prelude::*;

use super::duplicates::Matrix;
use super::{Audit, Build, Severity};
use crate::imaging::facts::THUMB;
use crate::ingest::SourceRoots;
use crate::record::Split;
use crate::shards::dataset::{Dataset, Verify};

/// Cross-split pairs shown with thumbnails (the JSON report lists them all).
pub const MAX_PAIRS: usize = 200;

/// Longest side of a pair's thumbnails, in pixels.
const THUMB_SIDE: u32 = 160;

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em auto;max-width:70em;\
color:#222}table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;\
padding:.2em .5em;text-align:right}th{background:#f3f3f3}td.l,th.l{text-align:left}\
.error{color:#b00020}.warning{color:#a05a00}.info{color:#555}figure{display:inline-block;\
margin:.3em;text-align:center;font-size:.8em}img{image-rendering:pixelated;border:1px solid #999}\
.pair{border:1px solid #ddd;margin:.5em 0;padding:.3em}";

/// A PNG data URI of a grayscale image.
fn png_uri(px: &[u8], w: u32, h: u32) -> String {
    let mut buf = Vec::new();
    let img = image::GrayImage::from_raw(w, h, px.to_vec()).expect("thumbnail size");
    image::DynamicImage::ImageLuma8(img)
        .write_to(&mut std::io::Cursor::new(&mut buf), image::ImageFormat::Png)
        .expect("PNG encoding in memory");
    format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(buf)
    )
}

/// Where a pair's thumbnails come from, best first: the image in the sources, the clean copy
/// in the build's shards (when the sources are gone), the 32x32 thumbnail of its facts.
struct Thumbs<'a> {
    build: &'a Build,
    roots: Option<SourceRoots>,
    /// Clean shard copies of the wanted records: (pixels, side).
    shards: BTreeMap<u64, (Vec<u8>, u32)>,
    facts: &'a BTreeMap<u64, Vec<u8>>,
}

impl Thumbs<'_> {
    /// The thumbnail of `record` as a PNG data URI.
    fn of(&self, record: u64) -> Option<String> {
        let r = self.build.manifest.get(record)?;
        let decoded = self.roots.as_ref().and_then(|roots| {
            let (root, rel) = roots.of_path(r.source(), r.path())?;
            let bytes = root.read(rel).ok()?;
            crate::imaging::decode::decode_bytes(&bytes, Path::new(r.path())).ok()
        });
        if let Some(img) = decoded {
            let t = image::imageops::thumbnail(&img, THUMB_SIDE, THUMB_SIDE);
            let (w, h) = t.dimensions();
            return Some(png_uri(t.as_raw(), w, h));
        }
        if let Some((px, side)) = self.shards.get(&record) {
            let img = image::GrayImage::from_raw(*side, *side, px.clone())?;
            let t = image::imageops::thumbnail(&img, THUMB_SIDE, THUMB_SIDE);
            let (w, h) = t.dimensions();
            return Some(png_uri(t.as_raw(), w, h));
        }
        let small = self.facts.get(&record)?;
        Some(png_uri(small, THUMB as u32, THUMB as u32))
    }
}

/// The clean copies (copy 0) of `wanted` in the build's shards; empty for a metadata-only
/// build. Shards are mapped and their headers checked, not hashed (display only).
fn shard_copies(build: &Build, wanted: &BTreeSet<u64>) -> BTreeMap<u64, (Vec<u8>, u32)> {
    let mut out = BTreeMap::new();
    for split in [Split::Train, Split::Test] {
        let Ok(ds) = Dataset::open(&build.dir, split) else {
            continue;
        };
        let ds = ds.with_verify(Verify::HeaderOnly);
        for k in 0..ds.shard_count() {
            let Ok(shard) = ds.shard(k) else { continue };
            for slot in 0..shard.len() {
                let record = shard.record(slot);
                if shard.copy(slot) == 0 && wanted.contains(&record) {
                    out.insert(record, (shard.image(slot).to_vec(), shard.size()));
                }
            }
        }
    }
    out
}

/// A heatmap of a square matrix (darker: more images), with its numbers.
fn heatmap(m: &Matrix, id: &str) -> Markup {
    let cell = 56;
    let pad = 110;
    let n = m.labels.len();
    let max = m.counts.iter().flatten().copied().max().unwrap_or(0).max(1);
    let size = pad + cell * n + 10;
    html! {
        svg id=(id) xmlns="http://www.w3.org/2000/svg" width=(size) height=(size)
            role="img" {
            @for (j, l) in m.labels.iter().enumerate() {
                text x=(pad + cell * j + cell / 2) y=(pad - 8) text-anchor="middle"
                    font-size="11" { (l) }
            }
            @for (i, row) in m.counts.iter().enumerate() {
                text x=(pad - 6) y=(pad + cell * i + cell / 2 + 4) text-anchor="end"
                    font-size="11" { (m.labels[i]) }
                @for (j, &v) in row.iter().enumerate() {
                    @let shade = 255 - (v * 200 / max) as u32;
                    rect x=(pad + cell * j) y=(pad + cell * i) width=(cell) height=(cell)
                        fill=(format!("rgb(255,{shade},{shade})")) stroke="#999" {}
                    text x=(pad + cell * j + cell / 2) y=(pad + cell * i + cell / 2 + 4)
                        text-anchor="middle" font-size="12" class="count" { (v) }
                }
            }
        }
    }
}

/// Horizontal bars of a value in [0, 1] against its baseline.
fn bars(rows: &[(String, f64, f64)]) -> Markup {
    let (w, h) = (300.0, 18);
    html! {
        svg xmlns="http://www.w3.org/2000/svg" width="560" height=(rows.len() * (h + 6) + 10) {
            @for (i, (label, v, base)) in rows.iter().enumerate() {
                @let y = i * (h + 6) + 5;
                text x="0" y=(y + 13) font-size="12" { (label) }
                rect x="200" y=(y) width=(format!("{:.1}", v * w)) height=(h) fill="#4a7ab5" {}
                line x1=(format!("{:.1}", 200.0 + base * w)) x2=(format!("{:.1}", 200.0 + base * w))
                    y1=(y) y2=(y + h) stroke="#d33" stroke-width="2" {}
                text x=(format!("{:.1}", 206.0 + w)) y=(y + 13) font-size="12" {
                    (format!("{v:.3} (baseline {base:.3})"))
                }
            }
        }
    }
}

/// A small histogram (share of pixels per grey bin).
fn histogram(h: &[f64]) -> Markup {
    let max = h.iter().copied().fold(0.0, f64::max).max(1e-12);
    html! {
        svg xmlns="http://www.w3.org/2000/svg" width=(h.len() * 4) height="40" {
            @for (i, &v) in h.iter().enumerate() {
                @let bh = v / max * 38.0;
                rect x=(i * 4) y=(format!("{:.1}", 40.0 - bh)) width="3"
                    height=(format!("{bh:.1}")) fill="#555" {}
            }
        }
    }
}

/// The whole page.
pub fn page(build: &Build, a: &Audit) -> Result<String> {
    let c = &a.confounding;
    let pairs_html = match &a.images {
        Some(im) => {
            let shown: Vec<_> = im
                .duplicates
                .cross_split_pairs
                .iter()
                .take(MAX_PAIRS)
                .collect();
            let records: BTreeSet<u64> = shown.iter().flat_map(|p| [p.a, p.b]).collect();
            let source = Thumbs {
                build,
                roots: im
                    .sources_dir
                    .as_deref()
                    .map(|dir| SourceRoots::new(dir, &build.pipeline.resolved_sources())),
                shards: shard_copies(build, &records),
                facts: &im.thumbnails,
            };
            let thumbs: BTreeMap<u64, Option<String>> =
                records.par_iter().map(|&r| (r, source.of(r))).collect();
            let m = &build.manifest;
            let who = |r: u64| {
                m.get(r)
                    .map(|m| format!("#{r} {} {}", m.source(), m.path()))
                    .unwrap_or_default()
            };
            html! {
                @for p in &shown {
                    div class="pair" {
                        @for (r, split) in [(p.a, &p.split_a), (p.b, &p.split_b)] {
                            figure {
                                @if let Some(Some(uri)) = thumbs.get(&r) {
                                    img src=(uri) width=(THUMB_SIDE) alt=(who(r));
                                }
                                figcaption { (split) ": " (who(r)) }
                            }
                        }
                        span { (format!("{:?}", p.kind)) ", dHash " (p.dhash_bits) ", pHash " (p.phash_bits) " bits" }
                    }
                }
            }
        }
        None => html! {},
    };
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "covidx audit: " (a.pipeline) }
                style { (PreEscaped(STYLE)) }
            }
            body {
                h1 { "covidx audit: " (a.pipeline) }
                p { "Built by " (a.tool) " (" (a.mode) " build); report version " (a.version) "." }
                h2 { "Findings" }
                @if a.findings.is_empty() { p { "No finding." } }
                ul id="findings" {
                    @for f in &a.findings {
                        @let class = match f.severity { Severity::Error => "error", Severity::Warning => "warning", Severity::Info => "info" };
                        li class=(class) { b { (class.to_uppercase()) } " (" (f.check) "): " (f.message) }
                    }
                }
                @if let Some(im) = &a.images {
                    h2 id="leakage" { "Duplicates across splits" }
                    p {
                        "Test images with a duplicate in train: " b id="test-in-train" { (im.duplicates.test_in_train) }
                        ". " (im.duplicates.images) " images compared; " (im.duplicates.groups.len())
                        " duplicate groups (identical files or pixels, or near copies: pHash within " (im.duplicates.near_bits) " bits and dHash within " (2 * im.duplicates.near_bits) ")."
                    }
                    p { "Images of the row split with a duplicate in the column split:" }
                    (heatmap(&im.duplicates.splits, "split-matrix"))
                    h3 { "By source" }
                    (heatmap(&im.duplicates.sources, "source-matrix"))
                    h3 { "Pairs across splits (" (im.duplicates.cross_split_pairs.len()) ")" }
                    div id="pairs" { (pairs_html) }
                    h2 { "Images per source" }
                    table {
                        tr { th class="l" { "source" } th { "images" } th class="l" { "formats" } th { "width (median)" } th { "height (median)" } th { "file size (median)" } th { "mean grey (median)" } th class="l" { "histogram" } }
                        @for s in &im.sources {
                            tr {
                                td class="l" { (s.source) } td { (s.images) }
                                td class="l" { (format!("{:?} bits {:?}", s.formats, s.bit_depths)) }
                                td { (s.width.median) } td { (s.height.median) }
                                td { (s.file_size.median) } td { (format!("{:.1}", s.mean.median)) }
                                td class="l" { (histogram(&s.histogram)) }
                            }
                        }
                    }
                    h2 { "Shortcut probe" }
                    @match &im.probe.skipped {
                        Some(why) => p { "Not run: " (why) "." },
                        None => {
                            p { (im.probe.images) " images of " (im.probe.patients) " patients; balanced accuracy of a logistic regression, 5 folds grouped by patient; the red line is the majority baseline." }
                            (bars(&im.probe.results.iter().map(|r| (format!("{} from {}", r.target, r.features), r.balanced_accuracy, r.baseline_balanced_accuracy)).collect::<Vec<_>>()))
                        }
                    }
                    @if !im.unreadable.is_empty() {
                        h2 { "Unreadable images" }
                        table {
                            tr { th { "record" } th class="l" { "split" } th class="l" { "path" } th class="l" { "reason" } th class="l" { "detail" } }
                            @for u in &im.unreadable {
                                tr { td { (u.record) } td class="l" { (u.split) } td class="l" { (u.path) } td class="l" { (u.reason) } td class="l" { (u.detail) } }
                            }
                        }
                    }
                }
                h2 { "Label and source" }
                p { "Cramér's V " b { (format!("{:.3}", c.by_source.cramers_v)) } "; the class predicted from the source alone: accuracy " (format!("{:.3}", c.source_accuracy)) " against " (format!("{:.3}", c.majority_baseline)) " for the majority class." }
                table id="class-source" {
                    tr { th class="l" { "class" } @for col in &c.by_source.columns { th { (col) } } }
                    @for (cl, row) in c.by_source.classes.iter().zip(&c.by_source.counts) {
                        tr { td class="l" { (cl) } @for v in row { td { (v) } } }
                    }
                }
                h2 { "Splits" }
                table {
                    tr { th class="l" { "class" } th class="l" { "split" } th { "images" } th { "patients" } }
                    @for s in &a.splits.cells {
                        tr { td class="l" { (s.class) } td class="l" { (s.split) } td { (s.images) } td { (s.patients) } }
                    }
                }
                h2 { "Label mapping" }
                table {
                    tr { th class="l" { "source" } th class="l" { "raw finding" } th class="l" { "parsed" } th class="l" { "outcome" } th { "images" } th { "patients" } }
                    @for r in &a.labels.rows {
                        tr { td class="l" { (r.source) } td class="l" { (r.finding) } td class="l" { (r.parsed) } td class="l" { (r.outcome) } td { (r.images) } td { (r.patients) } }
                    }
                }
            }
        }
    };
    Ok(markup.into_string())
}
