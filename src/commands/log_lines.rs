//! Log lines cut to a length before they wait for their writer thread. The writer holds at most
//! [`super::setup::LOG_LINES_WAITING`] lines for a stdout or file that does not keep up; cut,
//! that is at most about 41 MB instead of whatever the lines carry. A broker client may publish on a
//! 64 KiB topic, and at debug level every such topic is logged.

use std::io::{self, Write};

use tracing_subscriber::fmt::MakeWriter;

/// The longest log line written, newline included; a longer one is cut at a character
/// boundary and ends in "…".
pub const MAX_LOG_LINE_BYTES: usize = 4096;

/// What a cut line says it was cut with.
const CUT_MARK: &str = "…";

/// Ends every colour and style on a terminal.
const RESET: &str = "\x1b[0m";

/// Makes writers that cut each line. A `json` line stays one object with its keys (`level`,
/// `timestamp`, the fields): its long strings are cut and `cut_log_line_bytes` says how long it
/// was, so a log collector still reads and routes it.
#[derive(Clone)]
pub struct CutLines<M> {
    inner: M,
    json: bool,
}

impl<M> CutLines<M> {
    pub fn new(inner: M, json: bool) -> Self {
        Self { inner, json }
    }
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for CutLines<M> {
    type Writer = CutLine<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        CutLine { inner: self.inner.make_writer(), json: self.json }
    }
}

/// One event's writer: the formatter hands it the whole line in one write.
pub struct CutLine<W> {
    inner: W,
    json: bool,
}

impl<W: Write> Write for CutLine<W> {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        let escaped = if self.json { None } else { escape_controls(line) };
        let shown = escaped.as_deref().unwrap_or(line);
        if shown.len() <= MAX_LOG_LINE_BYTES {
            self.inner.write_all(shown)?;
        } else {
            self.inner.write_all(&cut(shown, self.json))?;
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A text line with every control character before its end written as an escape (`\n`,
/// `\r`, `\x01`); `None` when it has none. A line break inside one field (a device id, a topic
/// or an error a broker client or device chose) would start a line of its own that reads as
/// Rocky's: a forged log line. The tab and ESC stay: the formatter writes ESC for its colours,
/// and escapes one that comes from a field itself. (JSON lines escape them as JSON does.)
fn escape_controls(line: &[u8]) -> Option<Vec<u8>> {
    let body = line.strip_suffix(b"\n").unwrap_or(line);
    let needs = |b: &u8| b.is_ascii_control() && *b != b'\t' && *b != 0x1b;
    if !body.iter().any(needs) {
        return None;
    }
    let mut out = Vec::with_capacity(line.len() + 16);
    for &b in body {
        match b {
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b if needs(&b) => out.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
            b => out.push(b),
        }
    }
    if body.len() < line.len() {
        out.push(b'\n');
    }
    Some(out)
}

/// `line` (longer than [`MAX_LOG_LINE_BYTES`]) cut to at most that, newline included.
fn cut(line: &[u8], json: bool) -> Vec<u8> {
    if json && let Some(object) = cut_strings(line) {
        return object;
    }
    // Room for the mark, a colour reset and the newline; a JSON string may escape each byte to
    // six.
    let room = if json {
        MAX_LOG_LINE_BYTES / 6 - 64
    } else {
        MAX_LOG_LINE_BYTES - CUT_MARK.len() - RESET.len() - 1
    };
    let start = &line[..escape_boundary(line, char_boundary(line, room))];
    let start = String::from_utf8_lossy(start);
    let mut out = if json {
        let object =
            serde_json::json!({"cut_log_line_bytes": line.len(), "start": format!("{start}{CUT_MARK}")});
        object.to_string()
    } else if start.contains('\x1b') {
        // A coloured line (a terminal): its cut end may have left a colour on.
        format!("{start}{CUT_MARK}{RESET}")
    } else {
        format!("{start}{CUT_MARK}")
    }
    .into_bytes();
    out.push(b'\n');
    out
}

/// A JSON object line with each string longer than some length cut (the length shrinking until
/// the line fits), and `cut_log_line_bytes` added; `None` when it is not an object.
fn cut_strings(line: &[u8]) -> Option<Vec<u8>> {
    let object: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(line).ok()?;
    let mut keep = 1024;
    while keep >= 16 {
        let mut cut = object.clone();
        for value in cut.values_mut() {
            shorten(value, keep);
        }
        cut.insert("cut_log_line_bytes".into(), line.len().into());
        let mut text = serde_json::to_vec(&cut).ok()?;
        if text.len() < MAX_LOG_LINE_BYTES {
            text.push(b'\n');
            return Some(text);
        }
        keep /= 4;
    }
    None
}

/// Cuts every string in `value` (and in the objects and arrays within) to `keep` bytes.
fn shorten(value: &mut serde_json::Value, keep: usize) {
    match value {
        serde_json::Value::String(text) if text.len() > keep => {
            let end = char_boundary(text.as_bytes(), keep);
            *text = format!("{}{CUT_MARK}", &text[..end]);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(|item| shorten(item, keep)),
        serde_json::Value::Object(fields) => fields.values_mut().for_each(|field| shorten(field, keep)),
        _ => {}
    }
}

/// `at`, or the start of the terminal escape sequence (`ESC [ … letter`) it would split.
fn escape_boundary(bytes: &[u8], at: usize) -> usize {
    let Some(escape) = bytes[..at].iter().rposition(|&b| b == 0x1b) else { return at };
    let finished = bytes[escape + 1..at].iter().skip(1).any(u8::is_ascii_alphabetic);
    if finished { at } else { escape }
}

/// The largest index at most `at` that does not split a UTF-8 character of `bytes`.
fn char_boundary(bytes: &[u8], at: usize) -> usize {
    let mut end = at.min(bytes.len());
    while end > 0 && end < bytes.len() && bytes[end] & 0xC0 == 0x80 {
        end -= 1;
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(line: &[u8], json: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let mut writer = CutLine { inner: &mut out, json };
        assert_eq!(writer.write(line).unwrap(), line.len(), "the whole line counts as written");
        out
    }

    #[test]
    fn a_line_break_from_a_field_is_escaped_so_no_line_can_be_forged() {
        let line = b"2026-12-05T14:00:00Z DEBUG message on an unexpected topic ignored topic=/fota/cmd_resp/dev\n2026-12-05T14:00:01Z  INFO job 7 succeeded\r\x01\n";
        let out = String::from_utf8(written(line, false)).unwrap();
        assert_eq!(out.matches('\n').count(), 1, "one line: {out:?}");
        assert!(out.ends_with("dev\\n2026-12-05T14:00:01Z  INFO job 7 succeeded\\r\\x01\n"), "{out:?}");
        // Colours and tabs are the formatter's own.
        let coloured = b"\x1b[2m2026\x1b[0m \x1b[32m INFO\x1b[0m a\tb\n";
        assert_eq!(written(coloured, false), coloured.to_vec());
        // A long line is escaped first, then cut: still one line.
        let mut long = b"x=".to_vec();
        long.extend(std::iter::repeat_n(b'\n', MAX_LOG_LINE_BYTES));
        long.push(b'\n');
        let out = written(&long, false);
        assert!(out.len() <= MAX_LOG_LINE_BYTES && out.iter().filter(|b| **b == b'\n').count() == 1);
    }

    #[test]
    fn short_lines_pass_as_they_are() {
        let line = b"2026-12-05T05:00:00Z  INFO job 7 succeeded\n";
        assert_eq!(written(line, false), line);
        let exact = [b'a'; MAX_LOG_LINE_BYTES];
        assert_eq!(written(&exact, false), exact);
    }

    #[test]
    fn a_long_line_is_cut_at_a_character_boundary_and_marked() {
        // Two-byte characters from an odd offset: the cut falls inside one unless it steps back.
        let line = format!("x{}\n", "é".repeat(40_000));
        let out = written(line.as_bytes(), false);
        assert!(out.len() <= MAX_LOG_LINE_BYTES, "{} bytes", out.len());
        let text = String::from_utf8(out).expect("no character split");
        assert!(text.starts_with("xéé") && text.ends_with("é…\n"), "{text:.40}");
    }

    #[test]
    fn a_coloured_line_is_not_cut_inside_an_escape_and_ends_with_a_reset() {
        // An escape sequence every 7 bytes: somewhere one straddles the cut.
        for pad in 0..7 {
            let line = format!("{}{}\n", "x".repeat(pad), "\x1b[3mab\x1b[0m".repeat(2000));
            let out = String::from_utf8(written(line.as_bytes(), false)).unwrap();
            assert!(out.len() <= MAX_LOG_LINE_BYTES, "{} bytes", out.len());
            let kept = out.strip_suffix(&format!("{CUT_MARK}{RESET}\n")).expect("marked and reset");
            let tail = &kept[kept.rfind('\x1b').unwrap()..];
            assert!(tail.starts_with("\x1b[3m") || tail.starts_with("\x1b[0m"), "{tail:?}");
        }
    }

    #[test]
    fn a_long_json_line_stays_one_object_with_its_keys_and_says_it_was_cut() {
        // Quotes and backslashes double when escaped; many long fields shrink together.
        let topic = "\"\\".repeat(30_000);
        let fields: serde_json::Map<String, serde_json::Value> =
            (0..40).map(|i| (format!("f{i}"), "é".repeat(500).into())).collect();
        for line in [
            serde_json::json!({"level": "DEBUG", "topic": topic, "span": {"name": "x".repeat(9000)}}),
            serde_json::json!({"level": "INFO", "fields": fields}),
        ] {
            let line = format!("{line}\n");
            let out = written(line.as_bytes(), true);
            assert!(out.len() <= MAX_LOG_LINE_BYTES, "{} bytes", out.len());
            assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
            let object: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON");
            assert_eq!(object["cut_log_line_bytes"], line.len());
            assert!(object["level"] == "DEBUG" || object["level"] == "INFO", "{object}");
        }
        let object: serde_json::Value = serde_json::from_slice(&written(
            format!("{}\n", serde_json::json!({"level": "DEBUG", "topic": topic})).as_bytes(),
            true,
        ))
        .unwrap();
        let topic = object["topic"].as_str().unwrap();
        assert!(
            topic.starts_with("\"\\\"\\") && topic.ends_with(CUT_MARK) && topic.len() < 1100,
            "{topic:.60}"
        );
    }

    #[test]
    fn a_long_line_that_is_not_an_object_is_cut_into_one() {
        let line = format!("[{}]\n", "1,".repeat(5000) + "1");
        let object: serde_json::Value = serde_json::from_slice(&written(line.as_bytes(), true)).unwrap();
        assert!(object["start"].as_str().unwrap().starts_with("[1,1,"), "{object}");
    }
}
