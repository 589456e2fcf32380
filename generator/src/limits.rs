//! Bounds on what qmac reads and on what it quotes back.
//!
//! Every file qmac reads is checked against its length before anything is allocated for it: a text
//! file ([`read_text`]) must be a regular file no longer than its kind allows, and the tensor readers
//! (`quantize::import`) check every declared size against the bytes that are really there. Values
//! quoted in error messages are cut to [`QUOTE_CHARS`] characters ([`capped`]), so a bad value of
//! megabytes gives a one-line message.

use std::borrow::Cow;
use std::io::Read;
use std::path::Path;

/// Largest configuration or layer spec file (TOML): 1 MiB.
pub const MAX_TOML_BYTES: u64 = 1 << 20;
/// Largest `quantized.json` (it holds the float weights as text): 1 GiB.
pub const MAX_QUANTIZED_BYTES: u64 = 1 << 30;
/// Largest tensor data read from one file, in bytes as stored and as `f32` values: 1 GiB.
pub const MAX_TENSOR_BYTES: u64 = 1 << 30;
/// Characters of a value quoted in an error message.
pub const QUOTE_CHARS: usize = 80;

/// `s` if it has at most [`QUOTE_CHARS`] characters, else its first [`QUOTE_CHARS`] characters,
/// `...` and its length in bytes.
pub fn capped(s: &str) -> Cow<'_, str> {
    match s.char_indices().nth(QUOTE_CHARS) {
        None => Cow::Borrowed(s),
        Some((end, _)) => Cow::Owned(format!("{}... ({} bytes)", &s[..end], s.len())),
    }
}

/// A multi-line message (a parser's, which quotes the offending line) with every line [`capped`] at
/// three times [`QUOTE_CHARS`], and at most 12 lines.
pub fn capped_lines(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    let mut out: Vec<String> = lines.iter().take(12).map(|l| match l.char_indices().nth(3 * QUOTE_CHARS) {
        None => l.to_string(),
        Some((end, _)) => format!("{}... ({} bytes)", &l[..end], l.len()),
    }).collect();
    if lines.len() > 12 {
        out.push(format!("... ({} more lines)", lines.len() - 12));
    }
    out.join("\n")
}

/// Read a UTF-8 text file of at most `max` bytes. Anything else (a directory, a device, a longer file,
/// invalid UTF-8) is an error that says what was found and what is allowed.
pub fn read_text(path: &Path, max: u64) -> std::io::Result<String> {
    let bytes = read_bytes(path, max)?;
    String::from_utf8(bytes).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("not UTF-8 text (invalid byte at offset {})", e.utf8_error().valid_up_to())))
}

/// Read a regular file of at most `max` bytes, never more than its length says it has.
pub fn read_bytes(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    if !std::fs::metadata(path)?.is_file() {
        // before opening: opening a FIFO would wait for a writer
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file"));
    }
    let file = std::fs::File::open(path)?;
    let len = regular_len(&file, max)?;
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(len).read_to_end(&mut bytes)?;
    if bytes.len() as u64 != len {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, format!("the file changed while read: {} of {len} bytes", bytes.len())));
    }
    Ok(bytes)
}

/// The length of an open regular file, if it is at most `max` bytes.
pub fn regular_len(file: &std::fs::File, max: u64) -> std::io::Result<u64> {
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file"));
    }
    if meta.len() > max {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{} bytes; allowed at most {max} bytes", meta.len())));
    }
    Ok(meta.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_are_cut_with_their_length() {
        assert_eq!(capped("short"), "short");
        let long = "x".repeat(10_000_000);
        let c = capped(&long);
        assert_eq!(c, format!("{}... (10000000 bytes)", "x".repeat(QUOTE_CHARS)));
        // multi-byte characters are not split
        let wide = "é".repeat(100);
        assert!(capped(&wide).starts_with(&"é".repeat(QUOTE_CHARS)));
        let msg = format!("line 1\n{}\nend", "y".repeat(1000));
        let m = capped_lines(&msg);
        assert!(m.len() < 300 && m.contains("(1000 bytes)") && m.ends_with("end"), "{m}");
    }

    #[test]
    fn text_files_are_bounded() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("a.toml");
        std::fs::write(&p, "rows = 4\n").unwrap();
        assert_eq!(read_text(&p, 100).unwrap(), "rows = 4\n");
        let e = read_text(&p, 4).unwrap_err().to_string();
        assert!(e.contains("9 bytes; allowed at most 4 bytes"), "{e}");
        let e = read_text(tmp.path(), 100).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
        std::fs::write(&p, b"\xff\xfe").unwrap();
        assert!(read_text(&p, 100).unwrap_err().to_string().contains("not UTF-8"));
    }
}
