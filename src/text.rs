//! What text from outside may contain where people read it (labels, names): no control
//! characters, and no Unicode format characters either — bidirectional overrides (U+202E),
//! zero-width joiners and the like reorder or hide what a terminal shows, so a label could
//! make the console lie about which device it describes.

/// Characters refused in names and label values: controls and Unicode's format characters
/// (general category Cf).
pub fn is_unprintable(c: char) -> bool {
    c.is_control() || is_format(c)
}

/// Unicode general category Cf (format), as of Unicode 15.
fn is_format(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{0600}'..='\u{0605}'
            | '\u{061C}'
            | '\u{06DD}'
            | '\u{070F}'
            | '\u{0890}'..='\u{0891}'
            | '\u{08E2}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{110BD}'
            | '\u{110CD}'
            | '\u{13430}'..='\u{1343F}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0001}'
            | '\u{E0020}'..='\u{E007F}'
    )
}

/// The longest start of `text` of at most `max` bytes that ends at a character boundary.
pub fn prefix_within(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// `text` with each unprintable character (see [`is_unprintable`]) written as its escape
/// (`\n`, `\u{1b}`, `\u{202e}`): for tables and lines a terminal shows, where a device id,
/// which the protocol lets hold them, would break the row or move the cursor.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(is_unprintable) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if is_unprintable(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// `text` cut to `width` characters with an ellipsis.
pub fn clip(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unprintable_characters_are_shown_as_escapes() {
        assert_eq!(printable("dev-01"), "dev-01");
        assert!(matches!(printable("dev-01"), std::borrow::Cow::Borrowed(_)));
        assert_eq!(printable("dev\nz\u{1b}[31m\u{202e}x"), "dev\\nz\\u{1b}[31m\\u{202e}x");
    }

    #[test]
    fn controls_and_format_characters_are_unprintable_and_letters_are_not() {
        for c in ['\u{1b}', '\n', '\u{7f}', '\u{202E}', '\u{200B}', '\u{2066}', '\u{FEFF}', '\u{E0041}'] {
            assert!(is_unprintable(c), "{c:?}");
        }
        for c in ['a', 'é', '日', ' ', '-', '🙂'] {
            assert!(!is_unprintable(c), "{c:?}");
        }
    }
}
