//! Minimal reader for 1-D NumPy string arrays (`.npy`, dtype `<U*`, `>U*` or `|S*`), the
//! format of COVID-Net's pinned RSNA test pools (`rsna_test_patients_*.npy`, `<U36`).

use anyhow::{bail, Context, Result};

/// Header of a `.npy` file: dtype descriptor, shape, and the data bytes.
fn parse<'a>(bytes: &'a [u8], file: &str) -> Result<(String, Vec<usize>, &'a [u8])> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        bail!("{file}: not a .npy file (bad magic)");
    }
    let major = bytes[6];
    let (header_len, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                bail!("{file}: truncated .npy header");
            }
            (
                u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize,
                12,
            )
        }
        v => bail!("{file}: unsupported .npy version {v}"),
    };
    let header = bytes
        .get(start..start + header_len)
        .with_context(|| format!("{file}: truncated .npy header"))?;
    let header = std::str::from_utf8(header).with_context(|| format!("{file}: header not text"))?;
    let descr = dict_value(header, "descr").with_context(|| format!("{file}: no 'descr'"))?;
    let descr = descr.trim_matches(|c| c == '\'' || c == '"').to_string();
    if dict_value(header, "fortran_order").is_some_and(|v| v.trim() == "True") {
        bail!("{file}: Fortran-ordered arrays are not supported");
    }
    let shape = dict_value(header, "shape").with_context(|| format!("{file}: no 'shape'"))?;
    let dims: Vec<usize> = shape
        .trim_matches(|c| c == '(' || c == ')')
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>())
        .collect::<std::result::Result<_, _>>()
        .with_context(|| format!("{file}: bad shape {shape}"))?;
    Ok((descr, dims, &bytes[start + header_len..]))
}

/// Reads a little-endian float64 array of any shape, flattened in C order.
pub fn read_f64(bytes: &[u8], file: &str) -> Result<Vec<f64>> {
    let (descr, dims, data) = parse(bytes, file)?;
    if descr != "<f8" {
        bail!("{file}: dtype {descr:?}, expected <f8");
    }
    let n = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .and_then(|n| n.checked_mul(8).map(|_| n))
        .with_context(|| format!("{file}: shape {dims:?} is too large"))?;
    if data.len() < n * 8 {
        bail!("{file}: truncated data");
    }
    Ok(data[..n * 8]
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect())
}

/// Parses a `.npy` file holding a 1-D array of fixed-width strings.
pub fn read_strings(bytes: &[u8], file: &str) -> Result<Vec<String>> {
    let (descr, dims, data) = parse(bytes, file)?;
    let [n] = dims[..] else {
        bail!("{file}: expected a 1-D array, shape is {dims:?}");
    };
    let descr = descr.as_str();
    if descr.len() < 3 || !descr.is_char_boundary(2) {
        bail!("{file}: unsupported dtype {descr:?} (expected a string array, e.g. <U36)");
    }
    let (kind, width) = descr.split_at(2);
    let width: usize = width
        .parse()
        .with_context(|| format!("{file}: unsupported dtype {descr:?}"))?;
    let item = match kind {
        "<U" | ">U" => width.checked_mul(4),
        "|S" => Some(width),
        _ => bail!("{file}: unsupported dtype {descr:?} (expected a string array, e.g. <U36)"),
    };
    let total = item.and_then(|item| item.checked_mul(n));
    let (Some(item), Some(total)) = (item, total) else {
        bail!("{file}: {n} items of dtype {descr:?} is too large");
    };
    if item == 0 {
        bail!("{file}: dtype {descr:?} has zero width");
    }
    if data.len() < total {
        bail!(
            "{file}: data holds {} bytes, {n} x {item} expected",
            data.len()
        );
    }
    (0..n)
        .map(|i| {
            let chunk = &data[i * item..(i + 1) * item];
            let s = match kind {
                "|S" => String::from_utf8_lossy(chunk).into_owned(),
                _ => chunk
                    .chunks_exact(4)
                    .map(|c| {
                        let b = [c[0], c[1], c[2], c[3]];
                        let v = if kind == "<U" {
                            u32::from_le_bytes(b)
                        } else {
                            u32::from_be_bytes(b)
                        };
                        char::from_u32(v)
                            .with_context(|| format!("{file}: item {i}: invalid code point {v}"))
                    })
                    .collect::<Result<String>>()?,
            };
            Ok(s.trim_end_matches('\0').to_string())
        })
        .collect()
}

/// The text after `'key':` in a NumPy header dict, up to the next top-level comma.
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let at = header.find(&format!("'{key}'"))? + key.len() + 2;
    let rest = header[at..].trim_start().strip_prefix(':')?.trim_start();
    let mut depth = 0;
    for (i, c) in rest.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(&rest[..=i]);
                }
            }
            ',' | '}' if depth == 0 => return Some(rest[..i].trim()),
            _ => {}
        }
    }
    None
}

/// Writes a 1-D `<U{width}` array (used by the demo and tests to produce real `.npy` pools).
pub fn write_strings(items: &[String]) -> Vec<u8> {
    let width = items
        .iter()
        .map(|s| s.chars().count())
        .max()
        .unwrap_or(1)
        .max(1);
    let dict = format!(
        "{{'descr': '<U{width}', 'fortran_order': False, 'shape': ({},), }}",
        items.len()
    );
    let mut header = dict.into_bytes();
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(b' ');
    }
    header.push(b'\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(&header);
    for s in items {
        let mut n = 0;
        for c in s.chars() {
            out.extend_from_slice(&(c as u32).to_le_bytes());
            n += 1;
        }
        out.resize(out.len() + (width - n) * 4, 0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        let items = vec![
            "abc".to_string(),
            "0004cfab-14fd".to_string(),
            String::new(),
        ];
        let bytes = write_strings(&items);
        assert_eq!(read_strings(&bytes, "p.npy").unwrap(), items);
        assert!(read_strings(b"nonsense!!!", "p.npy")
            .unwrap_err()
            .to_string()
            .contains("p.npy"));
        let mut bad = bytes.clone();
        bad.truncate(bytes.len() - 8);
        assert!(read_strings(&bad, "p.npy").is_err());
    }

    /// A header claiming an enormous shape or width is an error, not an overflow or a huge
    /// allocation.
    #[test]
    fn huge_shapes_and_widths_are_errors() {
        let npy = |descr: &str, shape: &str| {
            let dict =
                format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
            let mut out = b"\x93NUMPY\x01\x00".to_vec();
            out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
            out.extend_from_slice(dict.as_bytes());
            out.extend_from_slice(&[0; 64]);
            out
        };
        let huge = format!("({},)", usize::MAX);
        for (descr, shape) in [
            ("<U36", huge.as_str()),
            ("<U18446744073709551615", "(2,)"),
            ("|S4", huge.as_str()),
            ("|S0", "(3,)"),
        ] {
            let err = format!(
                "{:#}",
                read_strings(&npy(descr, shape), "p.npy").unwrap_err()
            );
            assert!(err.starts_with("p.npy: "), "{err}");
        }
        let shape = format!("({}, {})", usize::MAX / 2, 4);
        let err = format!("{:#}", read_f64(&npy("<f8", &shape), "p.npy").unwrap_err());
        assert!(err.contains("too large"), "{err}");
    }
}
