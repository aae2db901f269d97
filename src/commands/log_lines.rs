//! Log lines cut to a length before they wait for their writer thread. The writer holds at most
//! [`super::setup::LOG_LINES_WAITING`] lines for a stdout or file that does not keep up; cut,
//! that is at most 40 MB instead of whatever the lines carry. A broker client may publish on a
//! 64 KiB topic, and at debug level every such topic is logged.

use std::io::{self, Write};

use tracing_subscriber::fmt::MakeWriter;

/// The longest log line written, newline included; a longer one is cut at a character
/// boundary and ends in "…".
pub const MAX_LOG_LINE_BYTES: usize = 4096;

/// What a cut line says it was cut with.
const CUT_MARK: &str = "…";

/// Makes writers that cut each line: `json` lines are replaced by a JSON object of their own
/// (`{"cut_log_line_bytes": N, "start": "…"}`), so a log collector still reads one object a
/// line.
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
        if line.len() <= MAX_LOG_LINE_BYTES {
            return self.inner.write(line);
        }
        self.inner.write_all(&cut(line, self.json))?;
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// `line` (longer than [`MAX_LOG_LINE_BYTES`]) cut to at most that, newline included.
fn cut(line: &[u8], json: bool) -> Vec<u8> {
    // Room for the mark and the newline; a JSON string may escape each byte to six.
    let room = if json { MAX_LOG_LINE_BYTES / 6 - 64 } else { MAX_LOG_LINE_BYTES - CUT_MARK.len() - 1 };
    let start = &line[..char_boundary(line, room)];
    let start = String::from_utf8_lossy(start);
    let mut out = if json {
        let object =
            serde_json::json!({"cut_log_line_bytes": line.len(), "start": format!("{start}{CUT_MARK}")});
        object.to_string()
    } else {
        format!("{start}{CUT_MARK}")
    }
    .into_bytes();
    out.push(b'\n');
    out
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
    fn a_long_json_line_becomes_one_valid_object_that_says_it_was_cut() {
        let topic = "\"\\".repeat(30_000);
        let line = format!("{}\n", serde_json::json!({"level": "DEBUG", "topic": topic}));
        let out = written(line.as_bytes(), true);
        assert!(out.len() <= MAX_LOG_LINE_BYTES, "{} bytes", out.len());
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
        let object: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON");
        assert_eq!(object["cut_log_line_bytes"], line.len());
        let start = object["start"].as_str().unwrap();
        assert!(start.starts_with("{\"level\":\"DEBUG\"") && start.ends_with(CUT_MARK), "{start:.60}");
    }
}
