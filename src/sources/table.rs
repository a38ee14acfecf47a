//! Metadata tables: decoding (UTF-8 / ISO-8859-1), CSV parsing that tolerates upstream's
//! ragged rows, and column lookup with errors that name the file, line and column.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use csv::StringRecord;

use crate::config::Encoding;
use crate::fsutil;

/// SHA-256 of every input file a build read, keyed by its path relative to `--sources`.
pub type InputHashes = BTreeMap<String, String>;

/// A parsed metadata CSV.
#[derive(Debug)]
pub struct Table {
    /// Path relative to `--sources`, for messages and the manifest.
    pub file: String,
    /// Header names, trimmed. A trailing comma in the header gives an empty last name.
    pub header: Vec<String>,
    /// Data rows, in file order.
    pub rows: Vec<Row>,
}

/// One data row.
#[derive(Debug)]
pub struct Row {
    /// 1-based line where the row starts (a quoted field may span several lines).
    pub line: u64,
    /// The fields as parsed.
    pub fields: StringRecord,
}

impl Row {
    /// Field `idx`, or `None` when the row is shorter than the header.
    pub fn get(&self, idx: usize) -> Option<&str> {
        self.fields.get(idx)
    }
}

/// Decodes metadata bytes; invalid UTF-8 is an error naming the file, line and byte offset.
pub fn decode(bytes: &[u8], encoding: Encoding, file: &str) -> Result<String> {
    match encoding {
        Encoding::Latin1 => Ok(bytes.iter().map(|&b| b as char).collect()),
        Encoding::Utf8 => {
            let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
            match std::str::from_utf8(bytes) {
                Ok(s) => Ok(s.to_string()),
                Err(e) => {
                    let at = e.valid_up_to();
                    let line = bytes[..at].iter().filter(|&&b| b == b'\n').count() + 1;
                    bail!(
                        "{file}:{line}: invalid UTF-8 at byte {at} (0x{:02X}); if the file is \
                         ISO-8859-1, set encoding = \"latin-1\" for this source",
                        bytes[at]
                    )
                }
            }
        }
    }
}

/// Maps byte offsets (non-decreasing) to 1-based line numbers. The csv crate reports a
/// record's start before the `\n` of a preceding CRLF (and before skipped blank lines), so
/// line terminators at the offset are skipped first.
struct LineCounter<'a> {
    text: &'a [u8],
    at: usize,
    line: u64,
}

impl<'a> LineCounter<'a> {
    fn new(text: &'a [u8]) -> Self {
        LineCounter {
            text,
            at: 0,
            line: 1,
        }
    }

    fn line_of(&mut self, byte: usize) -> u64 {
        let mut start = byte.min(self.text.len());
        while start < self.text.len() && matches!(self.text[start], b'\r' | b'\n') {
            start += 1;
        }
        if start >= self.at {
            self.line += self.text[self.at..start]
                .iter()
                .filter(|&&b| b == b'\n')
                .count() as u64;
            self.at = start;
        }
        self.line
    }
}

impl Table {
    /// Reads `sources/rel`, records its hash in `inputs`, and parses it.
    pub fn load(
        sources: &Path,
        rel: &str,
        encoding: Encoding,
        delimiter: u8,
        inputs: &mut InputHashes,
    ) -> Result<Table> {
        let path = fsutil::safe_join(sources, rel)?;
        let bytes = std::fs::read(&path).with_context(|| {
            format!(
                "required input {rel} is missing or unreadable (expected at {})",
                path.display()
            )
        })?;
        inputs.insert(rel.to_string(), fsutil::sha256_hex(&bytes));
        let text = decode(&bytes, encoding, rel)?;
        Table::parse(&text, rel, delimiter)
    }

    /// Parses decoded CSV text. Rows may be longer or shorter than the header (upstream has
    /// both); readers decide per row.
    pub fn parse(text: &str, file: &str, delimiter: u8) -> Result<Table> {
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .has_headers(true)
            .delimiter(delimiter)
            .from_reader(text.as_bytes());
        let header = reader
            .headers()
            .with_context(|| format!("{file}: reading the header"))?
            .iter()
            .map(|h| h.trim().to_string())
            .collect::<Vec<_>>();
        if header.iter().all(|h| h.is_empty()) {
            bail!("{file}: empty header");
        }
        let mut rows = Vec::new();
        let mut fields = StringRecord::new();
        let mut lines = LineCounter::new(text.as_bytes());
        loop {
            match reader.read_record(&mut fields) {
                Ok(true) => {
                    let byte = fields.position().map(|p| p.byte()).unwrap_or(0);
                    let line = lines.line_of(byte as usize);
                    if fields.len() == 1 && fields.get(0).is_some_and(|f| f.trim().is_empty()) {
                        continue;
                    }
                    rows.push(Row {
                        line,
                        fields: fields.clone(),
                    });
                }
                Ok(false) => break,
                Err(e) => {
                    let line = e.position().map(|p| p.line()).unwrap_or(0);
                    bail!("{file}:{line}: malformed CSV: {e}");
                }
            }
        }
        Ok(Table {
            file: file.to_string(),
            header,
            rows,
        })
    }

    /// Index of a required column; an error lists the header when it is absent.
    pub fn column(&self, name: &str) -> Result<usize> {
        self.optional_column(name).with_context(|| {
            format!(
                "{}: required column {name:?} not found; header has {:?}",
                self.file,
                self.header
                    .iter()
                    .filter(|h| !h.is_empty())
                    .collect::<Vec<_>>()
            )
        })
    }

    /// Index of an optional column.
    pub fn optional_column(&self, name: &str) -> Option<usize> {
        self.header.iter().position(|h| h == name)
    }

    /// Number of named columns (a trailing empty header name is not counted).
    pub fn width(&self) -> usize {
        let mut n = self.header.len();
        while n > 0 && self.header[n - 1].is_empty() {
            n -= 1;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_utf8_names_file_line_and_byte() {
        let err = decode(b"a,b\nc,\xE9\n", Encoding::Utf8, "m.csv").unwrap_err();
        let msg = format!("{err}");
        assert!(
            msg.starts_with("m.csv:2: invalid UTF-8 at byte 6 (0xE9)"),
            "{msg}"
        );
        assert_eq!(decode(b"\xE9", Encoding::Latin1, "m").unwrap(), "\u{e9}");
        assert_eq!(decode(b"\xEF\xBB\xBFa", Encoding::Utf8, "m").unwrap(), "a");
    }

    #[test]
    fn multiline_quotes_crlf_trailing_comma_and_ragged_rows() {
        let text =
            "id,note,file,\r\n1,\"two\r\nlines\",a.png,\r\n\r\n2,x,b.png,extra,more\r\n3,short\r\n";
        let t = Table::parse(text, "m.csv", b',').unwrap();
        assert_eq!(t.header, vec!["id", "note", "file", ""]);
        assert_eq!(t.width(), 3);
        assert_eq!(t.rows.len(), 3);
        assert_eq!(t.rows[0].line, 2);
        assert_eq!(t.rows[0].get(1), Some("two\r\nlines"));
        assert_eq!(t.rows[1].line, 5);
        assert_eq!(t.rows[1].get(2), Some("b.png"));
        assert_eq!(t.rows[2].get(2), None);
        let err = format!("{:#}", t.column("imagename").unwrap_err());
        assert!(
            err.contains("m.csv: required column \"imagename\""),
            "{err}"
        );
    }

    #[test]
    fn unterminated_quote_is_reported_with_line() {
        // csv treats an unterminated quote as running to EOF; the row is then ragged, not lost.
        let t = Table::parse("a,b\n1,\"x\n2,y\n", "m.csv", b',').unwrap();
        assert_eq!(t.rows.len(), 1);
        assert_eq!(t.rows[0].line, 2);
    }
}
