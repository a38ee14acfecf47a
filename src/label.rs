//! Label stage: raw finding -> class through the pipeline's mapping table. Every decision is
//! kept on the record (`parsed`, `label` or an exclusion with its reason).

use anyhow::{bail, Result};
use rayon::prelude::*;

use crate::config::{ParseRule, Pipeline, Source, UnknownFinding};
use crate::record::{Exclusion, Record};

/// Applies a parse rule to one raw finding.
pub fn parse_finding(rule: ParseRule, raw: &str) -> &str {
    let raw = raw.trim();
    let out = match rule {
        ParseRule::Whole => raw,
        ParseRule::FirstComma => raw.split(',').next().unwrap_or(raw),
        ParseRule::LastPath => raw.rsplit('/').next().unwrap_or(raw),
        ParseRule::Auto => {
            let last = raw.rsplit('/').next().unwrap_or(raw);
            last.split(',').next().unwrap_or(last)
        }
    };
    out.trim()
}

/// Labels every candidate record with its source's parse rule (default `labels.parse`). A cell
/// with several findings (the source's `finding_separator`) takes the one class its mapped
/// findings agree on; unmapped parts are ignored when another part maps, and parts mapping to
/// different classes exclude the record as `ambiguous-finding`. A finding nothing maps takes
/// the source's `unmapped` class when it has one. Then the source's `drop` rules apply.
pub fn apply(pipeline: &Pipeline, sources: &[Source], records: &mut [Record]) -> Result<()> {
    // Records are independent: labelled in parallel; the first error in record order wins.
    let first_error = records
        .par_iter_mut()
        .filter(|r| r.is_candidate())
        .map(|rec| label_one(pipeline, sources, rec))
        .filter_map(Result::err)
        .find_first(|_| true);
    first_error.map_or(Ok(()), Err)
}

/// Labels one candidate record (see [`apply`]).
fn label_one(pipeline: &Pipeline, sources: &[Source], rec: &mut Record) -> Result<()> {
    let labels = &pipeline.labels;
    let src = sources.iter().find(|s| s.name == rec.source);
    let config = src.map(|s| &s.config);
    let sep = config.and_then(|c| c.finding_separator.as_deref());
    let rule = config.and_then(|c| c.parse).unwrap_or(labels.parse);
    let parts: Vec<&str> = match sep {
        Some(sep) if !sep.is_empty() => rec.finding.split(sep).collect(),
        _ => vec![rec.finding.as_str()],
    };
    let parsed: Vec<&str> = parts.iter().map(|p| parse_finding(rule, p)).collect();
    let mut classes: Vec<usize> = parsed
        .iter()
        .filter_map(|p| labels.map.get(*p))
        .filter_map(|c| pipeline.class_index(c))
        .collect();
    classes.sort_unstable();
    classes.dedup();
    let joined = parsed.join("|");
    let unmapped = config
        .and_then(|c| c.unmapped.as_deref())
        .and_then(|c| pipeline.class_index(c));
    match (classes.as_slice(), unmapped) {
        ([one], _) => rec.label = Some(*one),
        ([], Some(class)) => rec.label = Some(class),
        ([], None) => {
            if labels.unknown == UnknownFinding::Error {
                bail!(
                    "{}: field \"finding\": {:?} (parsed {:?}) is not in the label mapping \
                     (labels.map), and labels.unknown = \"error\"",
                    rec.origin(),
                    rec.finding,
                    joined
                );
            }
            let detail = format!("finding {joined:?} is not in labels.map");
            rec.exclude(Exclusion::UnmappedFinding, detail);
        }
        (many, _) => {
            let names: Vec<&str> = many.iter().map(|&c| pipeline.classes[c].as_str()).collect();
            let detail = format!("findings {joined:?} map to several classes {names:?}");
            rec.exclude(Exclusion::AmbiguousFinding, detail);
        }
    }
    rec.parsed = joined;
    if let (Some(config), Some(label)) = (config, rec.label) {
        if let Some(detail) = dropped(pipeline, config, rec, label) {
            rec.label = None;
            rec.exclude(Exclusion::DroppedByRule, detail);
        }
    }
    Ok(())
}

/// The first of the source's `drop` rules that matches a labelled record, as a detail.
fn dropped(
    pipeline: &Pipeline,
    config: &crate::config::SourceConfig,
    rec: &Record,
    label: usize,
) -> Option<String> {
    use crate::config::RecordField as F;
    config.drop.iter().find_map(|rule| {
        if rule
            .class
            .as_ref()
            .is_some_and(|c| c != &pipeline.classes[label])
        {
            return None;
        }
        let (name, value) = match rule.field {
            F::Url => ("url", &rec.url),
            F::Patient => ("patient", &rec.patient),
            F::Image => ("image", &rec.image),
            F::Finding => ("finding", &rec.finding),
            F::View => ("view", &rec.view),
            F::Modality => ("modality", &rec.modality),
        };
        let hit = rule.contains.iter().find(|s| value.contains(s.as_str()))?;
        Some(format!(
            "{name} {value:?} contains {hit:?} (a drop rule of the source)"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_rules_read_both_cohen_schemas() {
        assert_eq!(
            parse_finding(ParseRule::FirstComma, "COVID-19, ARDS"),
            "COVID-19"
        );
        assert_eq!(
            parse_finding(ParseRule::LastPath, "Pneumonia/Viral/COVID-19"),
            "COVID-19"
        );
        assert_eq!(
            parse_finding(ParseRule::LastPath, "Pneumonia/Viral/Herpes "),
            "Herpes"
        );
        assert_eq!(
            parse_finding(ParseRule::Auto, "Pneumonia/Viral/SARS"),
            "SARS"
        );
        assert_eq!(parse_finding(ParseRule::Auto, "COVID-19, ARDS"), "COVID-19");
        assert_eq!(parse_finding(ParseRule::Auto, "todo"), "todo");
        assert_eq!(
            parse_finding(ParseRule::Whole, " No Finding "),
            "No Finding"
        );
    }
}
