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
