//! Metadata tables: decoding (UTF-8 / ISO-8859-1), CSV parsing that tolerates upstream's
//! ragged rows, and column lookup with errors that name the file, line and column.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use csv::StringRecord;

use crate::config::Encoding;

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
        // A configured path (not one from metadata): checked lexically, and symlinks are
        // followed, so a source directory may link to where the dataset really lives.
        let mut ctx = super::ReadContext {
            root: sources,
            inputs,
        };
        let bytes = super::read_input(&mut ctx, rel)?;
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
        check_quotes(text.as_bytes(), file, delimiter)?;
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

/// Checks the quoting of CSV text the way the csv crate reads it (a `"` at the start of a
/// field opens a quoted field, `""` inside is a quote, the next lone `"` closes it). Two faults
/// would otherwise make rows vanish without an error: a quoted field never closed (the csv
/// crate runs it to the end of the file) and text right after a closing quote (the sign of an
/// unbalanced quote that swallowed the rows up to the next one). Both are errors naming the
/// file and the line where the quoted field opened.
pub fn check_quotes(text: &[u8], file: &str, delimiter: u8) -> Result<()> {
    let line_of = |at: usize| 1 + memchr::memchr_iter(b'\n', &text[..at]).count();
    let mut from = 0;
    // Only quotes matter: memchr jumps from one to the next.
    while let Some(q) = memchr::memchr(b'"', &text[from..]).map(|i| from + i) {
        let field_start =
            q == 0 || matches!(text[q - 1], b'\n' | b'\r') || text[q - 1] == delimiter;
        if !field_start {
            // A quote inside an unquoted field is literal.
            from = q + 1;
            continue;
        }
        // Find the closing quote: the next lone `"` (`""` is an escaped quote).
        let mut at = q + 1;
        let close = loop {
            match memchr::memchr(b'"', &text[at..]).map(|i| at + i) {
                None => bail!(
                    "{file}:{}: a quoted field opened on this line is never closed \
                     (it would swallow the rest of the file)",
                    line_of(q)
                ),
                Some(i) if text.get(i + 1) == Some(&b'"') => at = i + 2,
                Some(i) => break i,
            }
        };
        match text.get(close + 1) {
            None | Some(b'\n' | b'\r') => {}
            Some(&d) if d == delimiter => {}
            Some(&c) => bail!(
                "{file}:{}: text ({:?}) right after the closing quote of a field opened on \
                 line {}: a quote is unbalanced",
                line_of(close),
                c as char,
                line_of(q)
            ),
        }
        from = close + 1;
    }
    Ok(())
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
    fn unterminated_quote_is_an_error_naming_file_and_line() {
        // The csv crate would run the quoted field to EOF and lose the row on line 3.
        let err = Table::parse("a,b\n1,\"x\n2,y\n", "m.csv", b',').unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.starts_with("m.csv:2: a quoted field"), "{msg}");
        assert!(msg.contains("never closed"), "{msg}");
    }

    #[test]
    fn a_quote_that_swallows_rows_until_the_next_quote_is_an_error() {
        let text = "a,b\n1,\"x\n2,y\n3,\"z\"\n";
        let msg = format!("{:#}", Table::parse(text, "m.csv", b',').unwrap_err());
        assert!(msg.starts_with("m.csv:4: text ('z') right after"), "{msg}");
        assert!(msg.contains("opened on line 2"), "{msg}");
    }

    #[test]
    fn well_formed_quotes_pass() {
        for text in [
            "a,b\n\"x \"\"q\"\" y\",2\n",
            "a,b\r\n\"multi\r\nline\",2\r\n",
            "a,b\nin\"side,2\n",
            "a;b\n\"x\";\"y\"",
        ] {
            let delim = if text.contains(';') { b';' } else { b',' };
            check_quotes(text.as_bytes(), "m.csv", delim).unwrap();
        }
    }
}
