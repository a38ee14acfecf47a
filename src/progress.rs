//! Progress display shared by the long-running stages (image stage, audit, trainer): a bar
//! with rate and ETA on a terminal, a plain line every few seconds otherwise, nothing when
//! disabled. Thread-safe: workers call [`Reporter::add`] from any thread.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often the plain (non-terminal) display prints a line.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

struct Plain {
    done: u64,
    last: Instant,
}

/// A progress display for `total` units of work (`unit` names them: "records", "images").
pub struct Reporter {
    what: String,
    unit: String,
    total: u64,
    bar: Option<indicatif::ProgressBar>,
    plain: Option<Mutex<Plain>>,
    start: Instant,
}

impl Reporter {
    /// A display labelled `what` (e.g. `images`) counting `unit`s; `enabled = false` shows
    /// nothing.
    pub fn new(what: &str, unit: &str, total: u64, enabled: bool) -> Reporter {
        let terminal = std::io::stderr().is_terminal();
        let bar = (enabled && terminal).then(|| {
            let bar = indicatif::ProgressBar::new(total);
            let template =
                format!("{{spinner}} {what} {{bar:30}} {{pos}}/{{len}} {{per_sec}} ETA {{eta}}");
            if let Ok(style) = indicatif::ProgressStyle::with_template(&template) {
                bar.set_style(style);
            }
            bar
        });
        Reporter {
            what: what.to_string(),
            unit: unit.to_string(),
            total,
            bar,
            plain: (enabled && !terminal).then(|| {
                Mutex::new(Plain {
                    done: 0,
                    last: Instant::now(),
                })
            }),
            start: Instant::now(),
        }
    }

    /// Counts `n` more units done.
    pub fn add(&self, n: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(n);
        } else if let Some(plain) = &self.plain {
            let mut p = plain.lock().unwrap_or_else(|e| e.into_inner());
            p.done += n;
            if p.last.elapsed() > PLAIN_EVERY || p.done == self.total {
                let secs = self.start.elapsed().as_secs_f64().max(1e-9);
                eprintln!(
                    "{}: {}/{} {}, {:.1} {}/s",
                    self.what,
                    p.done,
                    self.total,
                    self.unit,
                    p.done as f64 / secs,
                    self.unit
                );
                p.last = Instant::now();
            }
        }
    }

    /// Removes the bar (plain lines stay as printed).
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
