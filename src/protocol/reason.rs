//! Why a device refused or failed an update (the reasons extension): a text of its own, kept up
//! to 200 bytes, or a code from the table in `PROTOCOL.md`. Shown and stored word for word; a
//! device that gives none gets "no reason given", never a guess.

use std::fmt;

/// The most of a device's text reason that is kept, in bytes.
pub const MAX_REASON_BYTES: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    Text(String),
    Code(u64),
}

impl Reason {
    /// A text reason cut to [`MAX_REASON_BYTES`] at a character boundary.
    pub fn text(text: &str) -> Self {
        Self::Text(crate::text::prefix_within(text, MAX_REASON_BYTES).to_owned())
    }

    /// The table's meaning of a code, if it has one.
    pub fn meaning(code: u64) -> Option<&'static str> {
        Some(match code {
            1 => "not enough storage for the image",
            2 => "out of memory",
            3 => "connection lost during the transfer",
            4 => "integrity check failed (hash mismatch)",
            5 => "unsupported image type",
            6 => "busy: try again later",
            7 => "battery too low",
            8 => "refused by the device's user or policy",
            9 => "this image is already installed",
            10 => "writing to flash failed",
            11 => "manifest refused: signature invalid, or signed by a key the device does not trust",
            12 => "manifest refused: security counter below the installed image's (anti-rollback)",
            13 => "delta refused: the device does not run the patch's base image",
            14 => "manifest refused: it does not match the request (hash or size differ)",
            _ => return None,
        })
    }

    /// The job's error for an answer that may carry a reason.
    pub fn or_none_given(reason: Option<&Reason>) -> String {
        reason.map_or_else(|| "no reason given".to_owned(), ToString::to_string)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Text(text) => f.write_str(text),
            Reason::Code(code) => match Reason::meaning(*code) {
                Some(meaning) => f.write_str(meaning),
                None => write!(f, "device code {code}"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_read_through_the_table_and_texts_are_kept_whole_up_to_the_limit() {
        assert_eq!(Reason::Code(10).to_string(), "writing to flash failed");
        assert_eq!(Reason::Code(77).to_string(), "device code 77");
        assert_eq!(Reason::text("battery below 20%").to_string(), "battery below 20%");
        let long = "é".repeat(150); // 300 bytes
        let Reason::Text(kept) = Reason::text(&long) else { panic!("text") };
        assert_eq!(kept.len(), 200);
        assert_eq!(Reason::or_none_given(None), "no reason given");
    }
}
