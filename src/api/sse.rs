//! Server-sent-event framing: a byte stream split into `(event name, data)` pairs, bounded.

/// The most one event may hold before the stream is treated as broken: a server that sends an
/// endless line must not make the console hold it. (A job snapshot is well under 16 KiB.)
pub const MAX_EVENT_BYTES: usize = 256 * 1024;

/// Splits a byte stream into `(event name, data)` pairs. It works on bytes and decodes whole
/// events, so a character split between two reads arrives whole.
#[derive(Default)]
pub struct Framer {
    buffer: Vec<u8>,
    /// Where the search for the next blank line resumes (what came before has none).
    scanned: usize,
}

impl Framer {
    /// Adds bytes; returns the complete events, or an error when one grows past the limit.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<(String, String)>, String> {
        self.buffer.extend_from_slice(bytes);
        let mut out = Vec::new();
        loop {
            let from = self.scanned.saturating_sub(1);
            let Some(end) = self.buffer[from..].windows(2).position(|w| w == b"\n\n").map(|at| from + at)
            else {
                self.scanned = self.buffer.len();
                break;
            };
            let raw: Vec<u8> = self.buffer.drain(..end + 2).collect();
            self.scanned = 0;
            let block = String::from_utf8_lossy(&raw);
            let mut name = String::from("message");
            let mut data = Vec::new();
            for line in block.lines() {
                if let Some(value) = line.strip_prefix("event:") {
                    name = value.trim().to_owned();
                } else if let Some(value) = line.strip_prefix("data:") {
                    data.push(value.strip_prefix(' ').unwrap_or(value));
                }
            }
            if !data.is_empty() {
                out.push((name, data.join("\n")));
            }
        }
        if self.buffer.len() > MAX_EVENT_BYTES {
            return Err(format!("the server sent an event larger than {MAX_EVENT_BYTES} bytes"));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_character_split_between_reads_arrives_whole() {
        let mut framer = Framer::default();
        let text = "event: traffic\ndata: cmd → dev-1\n\n".as_bytes();
        let split = text.iter().position(|b| *b == 0xe2).unwrap() + 1; // inside the arrow
        assert!(framer.push(&text[..split]).unwrap().is_empty());
        let events = framer.push(&text[split..]).unwrap();
        assert_eq!(events, vec![("traffic".into(), "cmd → dev-1".into())]);
    }

    #[test]
    fn an_endless_event_is_refused() {
        let mut framer = Framer::default();
        let err = framer.push(&vec![b'x'; MAX_EVENT_BYTES + 1]).unwrap_err();
        assert!(err.contains("larger than"), "{err}");
    }
}
