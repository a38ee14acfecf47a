//! Metadata tables: decoding (UTF-8 / ISO-8859-1), CSV parsing that tolerates upstream's
//! ragged rows, and column lookup with errors that name the file, line and column.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use csv::ByteRecord;
use rayon::prelude::*;

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
    /// The parsed fields of the rows of one piece of the file, shared by those rows (no
    /// allocation per row).
    block: Arc<Block>,
    /// Index in `block.bounds` of this row's first field's start.
    first: u32,
    /// Number of fields.
    len: u32,
}

/// The parsed fields of consecutive rows, back to back: field `k` of a row whose first bound
/// is `first` is `text[bounds[first + k]..bounds[first + k + 1]]`.
#[derive(Debug)]
struct Block {
    text: String,
    bounds: Vec<u32>,
}

impl Row {
    /// Field `idx`, or `None` when the row is shorter than the header.
    pub fn get(&self, idx: usize) -> Option<&str> {
        if idx >= self.len as usize {
            return None;
        }
        let at = self.first as usize + idx;
        let b = &self.block.bounds;
        self.block.text.get(b[at] as usize..b[at + 1] as usize)
    }

    /// Number of fields (rows may be longer or shorter than the header).
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// True when the row has no field.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The fields in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        let (first, text) = (self.first as usize, &self.block.text);
        self.block.bounds[first..=first + self.len()]
            .windows(2)
            .map(move |w| &text[w[0] as usize..w[1] as usize])
    }
}

/// Decodes metadata bytes; invalid UTF-8 is an error naming the file, line and byte offset.
pub fn decode(bytes: &[u8], encoding: Encoding, file: &str) -> Result<String> {
    decode_str(bytes, encoding, file).map(Cow::into_owned)
}

/// [`decode`] without a copy where the bytes are UTF-8 already.
pub fn decode_str<'b>(bytes: &'b [u8], encoding: Encoding, file: &str) -> Result<Cow<'b, str>> {
    match encoding {
        Encoding::Latin1 => Ok(Cow::Owned(bytes.iter().map(|&b| b as char).collect())),
        Encoding::Utf8 => {
            let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
            match std::str::from_utf8(bytes) {
                Ok(s) => Ok(Cow::Borrowed(s)),
                Err(e) => {
                    let at = e.valid_up_to();
                    let line = memchr::memchr_iter(b'\n', &bytes[..at]).count() + 1;
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

impl LineCounter<'_> {
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
        let bytes = super::read_input_bytes(sources, rel)?;
        // The input's hash is taken beside the parse.
        let (hash, table) = rayon::join(
            || crate::fsutil::sha256_hex(&bytes),
            || Table::parse(&decode_str(&bytes, encoding, rel)?, rel, delimiter),
        );
        inputs.insert(rel.to_string(), hash);
        table
    }

    /// Parses decoded CSV text. Rows may be longer or shorter than the header (upstream has
    /// both); readers decide per row. A large table is parsed in parallel, in pieces cut at
    /// record boundaries (a line break outside any quoted field), with the same rows and line
    /// numbers as one pass.
    pub fn parse(text: &str, file: &str, delimiter: u8) -> Result<Table> {
        Table::parse_in_pieces(text, file, delimiter, PIECE)
    }

    /// [`Table::parse`] with pieces of about `piece` bytes.
    fn parse_in_pieces(text: &str, file: &str, delimiter: u8, piece: usize) -> Result<Table> {
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
        let body = reader.position().byte() as usize;
        let multiline = check_quotes(text.as_bytes(), file, delimiter)?;
        let cuts = cut_points(text.as_bytes(), body, &multiline, piece);
        // The line each piece starts on: line breaks counted per piece, then summed.
        let breaks =
            |a: usize, b: usize| memchr::memchr_iter(b'\n', &text.as_bytes()[a..b]).count();
        let counts = cuts
            .par_windows(2)
            .map(|w| breaks(w[0], w[1]) as u64)
            .collect::<Vec<_>>();
        let mut first = 1 + breaks(0, body) as u64;
        let starts = counts
            .iter()
            .map(|n| {
                first += n;
                first - n
            })
            .collect::<Vec<_>>();
        let pieces = cuts
            .par_windows(2)
            .zip(starts)
            .map(|(w, line)| parse_piece(text, (w[0], w[1]), line, file, delimiter))
            .collect::<Result<Vec<_>>>()?;
        let mut rows = Vec::with_capacity(pieces.iter().map(Vec::len).sum());
        for piece in pieces {
            rows.extend(piece);
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

/// Bytes per piece of a table parsed in parallel (smaller tables are one piece).
const PIECE: usize = 1 << 20;

/// Where the pieces of `text[body..]` start and end: `body`, the first byte after a line
/// break about every `piece` bytes that is outside every quoted field spanning lines
/// (`multiline`, sorted `[open, close]` byte ranges), and the end.
fn cut_points(text: &[u8], body: usize, multiline: &[(usize, usize)], piece: usize) -> Vec<usize> {
    let mut cuts = vec![body];
    let mut at = body.saturating_add(piece);
    while at < text.len() {
        // Past any quoted field that holds `at`, then to the next line break.
        let i = multiline.partition_point(|&(_, close)| close < at);
        if let Some(&(open, close)) = multiline.get(i) {
            if open <= at {
                at = close + 1;
            }
        }
        let Some(nl) = memchr::memchr(b'\n', &text[at.min(text.len())..]) else {
            break;
        };
        let cut = at + nl + 1;
        // A line break inside a later quoted field is not a record boundary: look again.
        let j = multiline.partition_point(|&(_, close)| close < cut);
        if multiline.get(j).is_some_and(|&(open, _)| open < cut) {
            at = multiline[j].1 + 1;
            continue;
        }
        if cut >= text.len() {
            break;
        }
        cuts.push(cut);
        at = cut.saturating_add(piece);
    }
    cuts.push(text.len());
    cuts
}

/// The rows of `text[start..end]`, a run of whole records whose first byte is on line `line`.
fn parse_piece(
    text: &str,
    (start, end): (usize, usize),
    line: u64,
    file: &str,
    delimiter: u8,
) -> Result<Vec<Row>> {
    let bytes = &text.as_bytes()[..end];
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .has_headers(false)
        .delimiter(delimiter)
        .from_reader(&bytes[start..]);
    // (line, first bound, field count) of each row, then the rows sharing one block.
    let mut spans: Vec<(u64, u32, u32)> = Vec::new();
    let mut text: Vec<u8> = Vec::with_capacity(end - start);
    let mut bounds: Vec<u32> = Vec::new();
    // Offsets are u32: the fields' text is at most the piece's bytes, and a row (at least one
    // byte) adds at most one bound per byte plus its start, so checking the piece once is enough.
    if u32::try_from(2 * (end - start) + 2).is_err() {
        bail!("{file}: a piece of over 2 GiB between two record boundaries");
    }
    // A blank line (one field of whitespace, as `str::trim` sees it) is no row.
    let blank = |f: &[u8]| std::str::from_utf8(f).is_ok_and(|f| f.trim().is_empty());
    let mut fields = ByteRecord::new();
    let mut lines = LineCounter {
        text: bytes,
        at: start,
        line,
    };
    loop {
        match reader.read_byte_record(&mut fields) {
            Ok(true) => {
                let byte = fields.position().map(|p| p.byte()).unwrap_or(0) as usize;
                let line = lines.line_of(start + byte);
                if fields.len() == 1 && fields.get(0).is_some_and(blank) {
                    continue;
                }
                spans.push((line, bounds.len() as u32, fields.len() as u32));
                bounds.push(text.len() as u32);
                for f in &fields {
                    text.extend_from_slice(f);
                    bounds.push(text.len() as u32);
                }
            }
            Ok(false) => break,
            Err(e) => {
                let at = e.position().map(|p| p.byte() as usize).unwrap_or(0);
                bail!("{file}:{}: malformed CSV: {e}", lines.line_of(start + at));
            }
        }
    }
    // The fields are cut from UTF-8 text at ASCII bytes (delimiters, quotes, line breaks),
    // so they are UTF-8; checked once per piece all the same.
    let text = String::from_utf8(text).map_err(|e| {
        anyhow::anyhow!(
            "{file}: parsed fields are not UTF-8 at byte {}",
            e.utf8_error().valid_up_to()
        )
    })?;
    let block = Arc::new(Block { text, bounds });
    Ok(spans
        .into_iter()
        .map(|(line, first, len)| Row {
            line,
            block: Arc::clone(&block),
            first,
            len,
        })
        .collect())
}

/// Checks the quoting of CSV text the way the csv crate reads it (a `"` at the start of a
/// field opens a quoted field, `""` inside is a quote, the next lone `"` closes it). Two faults
/// would otherwise make rows vanish without an error: a quoted field never closed (the csv
/// crate runs it to the end of the file) and text right after a closing quote (the sign of an
/// unbalanced quote that swallowed the rows up to the next one). Both are errors naming the
/// file and the line where the quoted field opened.
///
/// Returns the `[open, close]` byte ranges of the quoted fields that hold a line break, in
/// order: the places a table must not be cut.
pub fn check_quotes(text: &[u8], file: &str, delimiter: u8) -> Result<Vec<(usize, usize)>> {
    let line_of = |at: usize| 1 + memchr::memchr_iter(b'\n', &text[..at]).count();
    let mut multiline = Vec::new();
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
        if memchr::memchr2(b'\n', b'\r', &text[q..close]).is_some() {
            multiline.push((q, close));
        }
        from = close + 1;
    }
    Ok(multiline)
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
    fn whitespace_lines_are_no_rows_and_ragged_rows_keep_every_field() {
        let text = "id,file\n1,a.png\n   \n\t\n\u{a0}\u{3000}\n\" \"\n , \n2,b.png,x,,y\n";
        let t = Table::parse(text, "m.csv", b',').unwrap();
        let rows: Vec<(u64, Vec<&str>)> = t
            .rows
            .iter()
            .map(|r| (r.line, r.iter().collect()))
            .collect();
        assert_eq!(
            rows,
            vec![
                (2, vec!["1", "a.png"]),
                (7, vec![" ", " "]),
                (8, vec!["2", "b.png", "x", "", "y"]),
            ]
        );
        assert_eq!(
            (t.rows[2].len(), t.rows[2].get(4), t.rows[2].get(5)),
            (5, Some("y"), None)
        );
    }

    #[test]
    fn a_table_parsed_in_pieces_is_the_table_parsed_whole() {
        // Rows with quoted line breaks (LF and CRLF), escaped quotes, blank lines, ragged and
        // short rows: cut every few bytes, the rows and their lines are those of one pass.
        let mut text = String::from("id,note,file,\n");
        for i in 0..200 {
            let row = match i % 7 {
                0 => format!("{i},\"two\nlines\",a{i}.png,\n"),
                1 => format!("{i},\"crlf\r\nnote \"\"q\"\"\",b{i}.png,\r\n"),
                2 => "\n\r\n".to_string(),
                3 => format!("{i},x,c{i}.png,extra,more\n"),
                4 => format!("{i},short\n"),
                5 => format!("{i},\"\n\n\n\",d{i}.png,\n"),
                _ => format!("{i},plain,e{i}.png,\r\n"),
            };
            text.push_str(&row);
        }
        let whole = Table::parse_in_pieces(&text, "m.csv", b',', usize::MAX).unwrap();
        let rows = |t: &Table| {
            t.rows
                .iter()
                .map(|r| (r.line, r.iter().map(str::to_string).collect::<Vec<_>>()))
                .collect::<Vec<_>>()
        };
        assert_eq!(whole.rows.len(), 200 - 200 / 7 - 1);
        for piece in [1, 2, 3, 5, 8, 13, 40, 100, 1000] {
            let cut = Table::parse_in_pieces(&text, "m.csv", b',', piece).unwrap();
            assert_eq!(cut.header, whole.header, "piece {piece}");
            assert_eq!(rows(&cut), rows(&whole), "piece {piece}");
        }
        // The lines are the file's: row 0 on line 2, row 1 (after a two-line field) on 4.
        assert_eq!((whole.rows[0].line, whole.rows[1].line), (2, 4));
        let multiline = check_quotes(text.as_bytes(), "m.csv", b',').unwrap();
        let cuts = cut_points(text.as_bytes(), 14, &multiline, 3);
        assert!(cuts.len() > 100, "{}", cuts.len());
        for c in &cuts[1..cuts.len() - 1] {
            assert_eq!(text.as_bytes()[c - 1], b'\n');
            assert!(
                !multiline.iter().any(|&(o, e)| o < *c && *c <= e),
                "cut {c} in a field"
            );
        }
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
