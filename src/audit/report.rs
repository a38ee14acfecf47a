//! The audit's reports: Markdown for people (`audit/report.md`) and JSON for programs
//! (`audit/report.json`, schema version [`super::REPORT_VERSION`], documented in
//! docs/formats.md).

use std::fmt::Write;

use super::confounding::Table;
use super::{Audit, Severity};

/// The JSON report (pretty, trailing newline).
pub fn json(a: &Audit) -> Vec<u8> {
    let mut s = serde_json::to_string_pretty(a).expect("the audit serialises");
    s.push('\n');
    s.into_bytes()
}

fn md_table(out: &mut String, t: &Table) {
    let _ = writeln!(out, "| class | {} | total |", t.columns.join(" | "));
    let _ = writeln!(out, "|---|{}---|", "---|".repeat(t.columns.len()));
    for (c, row) in t.classes.iter().zip(&t.counts) {
        let cells: Vec<String> = row.iter().map(u64::to_string).collect();
        let _ = writeln!(
            out,
            "| {c} | {} | {} |",
            cells.join(" | "),
            row.iter().sum::<u64>()
        );
    }
    let _ = writeln!(out, "\nCramér's V: **{:.3}**\n", t.cramers_v);
}

/// The Markdown report.
pub fn markdown(a: &Audit) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# covidx audit: {}\n", a.pipeline);
    let _ = writeln!(
        out,
        "Built by {} ({} build); report version {}.\n",
        a.tool, a.mode, a.version
    );
    let _ = writeln!(out, "## Findings\n");
    if a.findings.is_empty() {
        let _ = writeln!(out, "No finding.\n");
    }
    for f in &a.findings {
        let tag = match f.severity {
            Severity::Error => "ERROR",
            Severity::Warning => "WARNING",
            Severity::Info => "info",
        };
        let _ = writeln!(out, "- **{tag}** ({}): {}", f.check, f.message);
    }
    let c = &a.confounding;
    let _ = writeln!(
        out,
        "\n## Label and source ({} images in a split)\n",
        c.images
    );
    md_table(&mut out, &c.by_source);
    let _ = writeln!(
        out,
        "Predicting the class from the source alone: accuracy **{:.3}**, majority baseline {:.3}.\n",
        c.source_accuracy, c.majority_baseline
    );
    let _ = writeln!(
        out,
        "| class | its sources | sensitivity | specificity |\n|---|---|---|---|"
    );
    for s in &c.per_class {
        let _ = writeln!(
            out,
            "| {} | {} | {:.3} | {:.3} |",
            s.class,
            s.sources.join(", "),
            s.sensitivity,
            s.specificity
        );
    }
    let _ = writeln!(out, "\n## Label and view\n");
    md_table(&mut out, &c.by_view);
    let o = &a.overlap;
    let _ = writeln!(out, "## Patients\n");
    let _ = writeln!(
        out,
        "| split | patients | images | max per patient | mean | 1 | 2 | 3 | 4 | 5+ |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|");
    for p in &o.per_patient {
        let h: Vec<String> = p.histogram.iter().map(u64::to_string).collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:.2} | {} |",
            p.split,
            p.patients,
            p.images,
            p.max,
            p.mean,
            h.join(" | ")
        );
    }
    let _ = writeln!(
        out,
        "\nPatients in more than one split: **{}**.",
        o.across_splits.len()
    );
    for s in o.across_splits.iter().take(50) {
        let _ = writeln!(out, "- {}: {:?}", s.patient, s.images);
    }
    let _ = writeln!(
        out,
        "\nUpstream ids used by more than one source: {}.",
        o.shared_ids.len()
    );
    for s in o.shared_ids.iter().take(20) {
        let _ = writeln!(out, "- {:?}: {:?}", s.id, s.sources);
    }
    splits_md(&mut out, &a.splits);
    if let Some(im) = &a.images {
        images_md(&mut out, im);
    } else {
        let _ = writeln!(
            out,
            "\n## Images\n\nNot audited (metadata level): run `covidx audit BUILD` for \
             duplicates, image statistics and the shortcut probe."
        );
    }
    let _ = writeln!(out, "\n## Label mapping\n");
    let _ = writeln!(
        out,
        "| source | raw finding | parsed | outcome | images | patients |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for r in &a.labels.rows {
        let cell = |s: &str| s.replace('|', "\\|").replace('\n', " ");
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            r.source,
            cell(&r.finding),
            cell(&r.parsed),
            r.outcome,
            r.images,
            r.patients
        );
    }
    out
}

fn splits_md(out: &mut String, s: &super::splits::SplitAudit) {
    let _ = writeln!(
        out,
        "\n## Splits\n\n| class | split | images | patients |\n|---|---|---|---|"
    );
    for c in &s.cells {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            c.class, c.split, c.images, c.patients
        );
    }
    let _ = writeln!(
        out,
        "\nTest pool: {} records, {} of them in test.",
        s.test_pool, s.test_pool_used
    );
    if let Some(l) = &s.pinned_test_list {
        let _ = writeln!(
            out,
            "Pinned test list `{l}`: {} entries, each matched to a record by the build.",
            s.pinned_entries
        );
    }
}

fn matrix_md(out: &mut String, m: &super::duplicates::Matrix) {
    let _ = writeln!(out, "| | {} |", m.labels.join(" | "));
    let _ = writeln!(out, "|---|{}", "---|".repeat(m.labels.len()));
    for (l, row) in m.labels.iter().zip(&m.counts) {
        let cells: Vec<String> = row.iter().map(u64::to_string).collect();
        let _ = writeln!(out, "| {l} | {} |", cells.join(" | "));
    }
}

fn images_md(out: &mut String, im: &super::ImageAudit) {
    let p = &im.provenance;
    let _ = writeln!(
        out,
        "\n## Images\n\n{} records in scope: facts of {} from the build, {} from the cache, {} \
         decoded now; {} unreadable.\n",
        p.in_scope, p.from_build, p.from_cache, p.decoded, p.unreadable
    );
    let d = &im.duplicates;
    let _ = writeln!(
        out,
        "### Duplicates\n\n{} images compared; {} groups ({} images): {} with identical files, \
         {} re-encoded copies, {} near copies (pHash within {} bits, dHash within twice that).\n\n\
         **Test images with a duplicate in train: {}.**\n",
        d.images,
        d.groups.len(),
        d.duplicated_images,
        d.file_groups,
        d.pixel_groups,
        d.near_only_groups,
        d.near_bits,
        d.test_in_train
    );
    let _ = writeln!(
        out,
        "Images of the row with a duplicate in the column, by split:\n"
    );
    matrix_md(out, &d.splits);
    let _ = writeln!(out, "\nBy source:\n");
    matrix_md(out, &d.sources);
    if !d.cross_split_pairs.is_empty() {
        let _ = writeln!(
            out,
            "\nPairs across splits ({}, the first 100):\n\n| a | split | source | b | split | \
             source | kind | dHash | pHash |\n|---|---|---|---|---|---|---|---|---|",
            d.cross_split_pairs.len()
        );
        for x in d.cross_split_pairs.iter().take(100) {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {:?} | {} | {} |",
                x.a,
                x.split_a,
                x.source_a,
                x.b,
                x.split_b,
                x.source_b,
                x.kind,
                x.dhash_bits,
                x.phash_bits
            );
        }
    }
    let _ = writeln!(
        out,
        "\n### Images per source\n\n| source | images | formats | bit depths | width | height | \
         file size | mean grey | std grey |\n|---|---|---|---|---|---|---|---|---|"
    );
    for s in &im.sources {
        let spread =
            |x: &super::stats::Spread| format!("{:.0} / {:.0} / {:.0}", x.min, x.median, x.max);
        let _ = writeln!(
            out,
            "| {} | {} | {:?} | {:?} | {} | {} | {} | {} | {} |",
            s.source,
            s.images,
            s.formats,
            s.bit_depths,
            spread(&s.width),
            spread(&s.height),
            spread(&s.file_size),
            spread(&s.mean),
            spread(&s.std)
        );
    }
    let _ = writeln!(out, "\n(min / median / max)\n\n### Shortcut probe\n");
    let pr = &im.probe;
    match &pr.skipped {
        Some(why) => {
            let _ = writeln!(out, "Not run: {why}.");
        }
        None => {
            let _ = writeln!(
                out,
                "{} images of {} patients, 5-fold cross-validation grouped by patient.\n\n\
                 | target | features | balanced accuracy | baseline | accuracy | baseline |\n\
                 |---|---|---|---|---|---|",
                pr.images, pr.patients
            );
            for r in &pr.results {
                let _ = writeln!(
                    out,
                    "| {} | {} | {:.3} | {:.3} | {:.3} | {:.3} |",
                    r.target,
                    r.features,
                    r.balanced_accuracy,
                    r.baseline_balanced_accuracy,
                    r.accuracy,
                    r.baseline_accuracy
                );
            }
        }
    }
    if let Some(x) = &im.against {
        let _ = writeln!(
            out,
            "\n### Against {} ({})\n\n{} of its images compared; images of this build with a \
             duplicate there, by split: {:?}.",
            x.build, x.pipeline, x.images, x.matched
        );
    }
    if !im.unreadable.is_empty() {
        let _ = writeln!(
            out,
            "\n### Unreadable images\n\n| record | split | source | path | reason | detail |\n\
             |---|---|---|---|---|---|"
        );
        for u in &im.unreadable {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                u.record,
                u.split,
                u.source,
                u.path,
                u.reason,
                u.detail.replace('|', "\\|")
            );
        }
    }
}
