//! A streaming splitter for `manifest.json`: a byte-level scanner walks the top-level
//! object, skips the sections the planner never reads (`docs`, `exposures`, `parent_map`,
//! …) without parsing them, and hands each node and macro to serde_json's slice parser
//! one at a time. Memory stays at the typed manifest plus one node's bytes, and the
//! per-byte cost is a tight loop instead of serde_json's reader (measured ~2× slower than
//! its slice parser on a 100 MB manifest).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};

use serde::de::{DeserializeOwned, Error as _};

use super::raw::RawManifest;

/// Why scanning stopped: the reader failed, or the bytes are not the JSON expected.
pub(super) enum ScanError {
    Io(std::io::Error),
    Json(serde_json::Error),
}

impl From<std::io::Error> for ScanError {
    fn from(e: std::io::Error) -> Self {
        ScanError::Io(e)
    }
}

impl From<serde_json::Error> for ScanError {
    fn from(e: serde_json::Error) -> Self {
        ScanError::Json(e)
    }
}

struct Scanner<R> {
    reader: BufReader<R>,
    /// Bytes consumed so far, for error messages.
    offset: u64,
}

impl<R: Read> Scanner<R> {
    fn err(&self, msg: &str) -> ScanError {
        ScanError::Json(serde_json::Error::custom(format!(
            "{msg} at byte {}",
            self.offset
        )))
    }

    fn bump(&mut self) {
        self.reader.consume(1);
        self.offset += 1;
    }

    fn skip_ws(&mut self) -> Result<Option<u8>, ScanError> {
        loop {
            let buf = self.reader.fill_buf()?;
            if buf.is_empty() {
                return Ok(None);
            }
            match buf.iter().position(|b| !b.is_ascii_whitespace()) {
                Some(i) => {
                    let b = buf[i];
                    self.reader.consume(i);
                    self.offset += i as u64;
                    return Ok(Some(b));
                }
                None => {
                    let n = buf.len();
                    self.reader.consume(n);
                    self.offset += n as u64;
                }
            }
        }
    }

    fn expect(&mut self, want: u8) -> Result<(), ScanError> {
        match self.skip_ws()? {
            Some(b) if b == want => {
                self.bump();
                Ok(())
            }
            Some(_) => Err(self.err(&format!("expected `{}`", want as char))),
            None => Err(self.err("unexpected end of file")),
        }
    }

    /// Copies one complete JSON value (object, array, string or literal) into `out`,
    /// or skips it when `out` is `None`.
    fn value(&mut self, mut out: Option<&mut Vec<u8>>) -> Result<(), ScanError> {
        let first = self
            .skip_ws()?
            .ok_or_else(|| self.err("unexpected end of file"))?;
        let mut depth: usize = 0;
        let mut in_string = false;
        let mut escaped = false;
        let literal = !matches!(first, b'{' | b'[' | b'"');
        let mut started = false;
        loop {
            let buf = self.reader.fill_buf()?;
            if buf.is_empty() {
                if literal && started {
                    return Ok(());
                }
                return Err(self.err("unexpected end of file"));
            }
            let mut end = None;
            let mut i = 0;
            while i < buf.len() {
                if literal {
                    let b = buf[i];
                    if matches!(b, b',' | b'}' | b']') || b.is_ascii_whitespace() {
                        end = Some(i);
                        break;
                    }
                    started = true;
                    i += 1;
                    continue;
                }
                if in_string {
                    if escaped {
                        // The escaped byte itself (the `\` may have ended the last buffer).
                        escaped = false;
                        i += 1;
                        continue;
                    }
                    // Strings are most of a manifest: jump to the next quote or backslash.
                    match memchr::memchr2(b'"', b'\\', &buf[i..]) {
                        None => i = buf.len(),
                        Some(j) => {
                            i += j;
                            if buf[i] == b'\\' {
                                escaped = true;
                                i += 1;
                            } else {
                                in_string = false;
                                i += 1;
                                if depth == 0 {
                                    end = Some(i);
                                    break;
                                }
                            }
                        }
                    }
                    continue;
                }
                match buf[i] {
                    b'"' => in_string = true,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth = depth.saturating_sub(1);
                        if depth == 0 {
                            end = Some(i + 1);
                            break;
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            let n = end.unwrap_or(buf.len());
            if let Some(out) = out.as_deref_mut() {
                out.extend_from_slice(&buf[..n]);
            }
            self.reader.consume(n);
            self.offset += n as u64;
            if end.is_some() {
                return Ok(());
            }
        }
    }

    /// Reads an object key (a JSON string) and the `:` after it.
    fn key(&mut self, scratch: &mut Vec<u8>) -> Result<String, ScanError> {
        scratch.clear();
        if self.skip_ws()? != Some(b'"') {
            return Err(self.err("expected an object key"));
        }
        self.value(Some(scratch))?;
        let key: String = serde_json::from_slice(scratch)?;
        self.expect(b':')?;
        Ok(key)
    }

    /// After a member: `true` when another follows (`,`), `false` at the closing `}`.
    fn more(&mut self) -> Result<bool, ScanError> {
        match self.skip_ws()? {
            Some(b',') => {
                self.bump();
                Ok(true)
            }
            Some(b'}') => {
                self.bump();
                Ok(false)
            }
            _ => Err(self.err("expected `,` or `}`")),
        }
    }

    /// Parses a whole (small) value with serde_json.
    fn parse<T: DeserializeOwned>(&mut self, scratch: &mut Vec<u8>) -> Result<T, ScanError> {
        scratch.clear();
        self.value(Some(scratch))?;
        Ok(serde_json::from_slice(scratch)?)
    }

    /// An object whose members are parsed one at a time (`nodes`, `macros`); null is empty.
    fn entries<T: DeserializeOwned>(
        &mut self,
        scratch: &mut Vec<u8>,
        out: &mut HashMap<String, T>,
    ) -> Result<(), ScanError> {
        match self.skip_ws()? {
            Some(b'n') => return self.value(None),
            Some(b'{') => self.bump(),
            _ => return Err(self.err("expected an object")),
        }
        if self.skip_ws()? == Some(b'}') {
            self.bump();
            return Ok(());
        }
        loop {
            let key = self.key(scratch)?;
            scratch.clear();
            self.value(Some(scratch))?;
            let value: T = serde_json::from_slice(scratch)
                .map_err(|e| serde_json::Error::custom(format!("`{key}`: {e}")))?;
            out.insert(key, value);
            if !self.more()? {
                return Ok(());
            }
        }
    }
}

/// Null where an object or list is expected reads as empty, as older dbt versions write it.
fn or_default<T: Default>(v: Option<T>) -> T {
    v.unwrap_or_default()
}

pub(super) fn manifest(reader: impl Read) -> Result<RawManifest, ScanError> {
    let mut s = Scanner {
        reader: BufReader::with_capacity(1 << 20, reader),
        offset: 0,
    };
    let mut raw = RawManifest::default();
    let mut scratch = Vec::with_capacity(64 << 10);
    s.expect(b'{')?;
    if s.skip_ws()? == Some(b'}') {
        s.bump();
    } else {
        loop {
            let key = s.key(&mut scratch)?;
            match key.as_str() {
                "metadata" => raw.metadata = or_default(s.parse(&mut scratch)?),
                "nodes" => s.entries(&mut scratch, &mut raw.nodes)?,
                "macros" => s.entries(&mut scratch, &mut raw.macros)?,
                "sources" => s.entries(&mut scratch, &mut raw.sources)?,
                "disabled" => raw.disabled = or_default(s.parse(&mut scratch)?),
                "child_map" => raw.child_map = or_default(s.parse(&mut scratch)?),
                _ => s.value(None)?,
            }
            if !s.more()? {
                break;
            }
        }
    }
    match s.skip_ws()? {
        None => Ok(raw),
        Some(_) => Err(s.err("trailing characters after the manifest")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unread_sections_are_skipped_whatever_they_contain() {
        let text = br#" { "exposures": {"a": ["}", "\"]", {"x": [1, 2.5e3, null, true]}]},
            "metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v12.json"},
            "nodes": {"model.p.a": {"name": "a", "description": "brace } and \" quote"}},
            "macros": null, "docs": "x", "child_map": {"model.p.a": []}, "n": -1 } "#;
        let raw = manifest(&text[..]).ok().unwrap();
        assert_eq!(raw.nodes["model.p.a"].name, "a");
        assert!(raw.macros.is_empty());
        assert_eq!(raw.child_map.len(), 1);
    }

    /// Hands out one byte per read, so every escape and quote straddles a buffer refill.
    struct OneByte<'a>(&'a [u8]);
    impl Read for OneByte<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            match (self.0.split_first(), out.first_mut()) {
                (Some((b, rest)), Some(o)) => {
                    *o = *b;
                    self.0 = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    #[test]
    fn values_split_across_reads_parse_the_same() {
        let text = br#"{"metadata": {"dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v12.json"},
            "docs": {"d": "a \\\" } ] tricky"},
            "nodes": {"model.p.\"q\"": {"name": "a\\", "tags": ["x"], "version": 2}}}"#;
        let raw = manifest(OneByte(&text[..])).ok().unwrap();
        let node = &raw.nodes["model.p.\"q\""];
        assert_eq!(node.name, "a\\");
        assert_eq!(node.version.as_deref(), Some("2"));
        assert_eq!(node.tags, ["x"]);
    }

    #[test]
    fn truncated_and_malformed_input_is_an_error() {
        for bad in [
            &b"{\"nodes\": {\"a\": {"[..],
            b"[1, 2]",
            b"{\"nodes\": [",
            b"{} x",
            b"",
        ] {
            assert!(
                matches!(manifest(bad), Err(ScanError::Json(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
