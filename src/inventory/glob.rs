//! Device-id patterns: `*` stands for any run of characters and `?` for one, everything else for
//! itself (`dev-*`, `lab-??-*`). Ids are one MQTT topic level, so no other syntax is needed.

/// Whether `text` matches `pattern`. Iterative with one backtrack point, so a hostile pattern
/// like `*a*a*a*…b` costs O(pattern × text), never exponential time.
pub fn matches(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == '?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

/// Whether `text` is a pattern rather than a plain id.
pub fn is_pattern(text: &str) -> bool {
    text.contains(['*', '?'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stars_and_question_marks() {
        assert!(matches("dev-*", "dev-01"));
        assert!(matches("dev-*", "dev-"));
        assert!(!matches("dev-*", "de-01"));
        assert!(matches("*-01", "dev-01"));
        assert!(matches("d?v-*1", "dev-01"));
        assert!(!matches("d?v-*1", "dev-02"));
        assert!(matches("*", ""));
        assert!(matches("dev-01", "dev-01"));
        assert!(!matches("dev-01", "dev-011"));
        assert!(matches("a*b*c", "axxbyyc"));
        assert!(!matches("a*b*c", "axxbyy"));
    }

    #[test]
    fn a_hostile_pattern_finishes() {
        let text = "a".repeat(128);
        let pattern = format!("{}b", "*a".repeat(64));
        assert!(!matches(&pattern, &text));
    }
}
