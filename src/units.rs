//! Sizes and rates as people type them: `80KiB/s`, `1.5 MB/s`, `51200`; times as the CLI prints
//! them.

/// Unix ms as `2026-12-03 08:41:07 UTC`, as every command prints a time.
pub fn utc(ms: u64) -> String {
    i64::try_from(ms).ok().and_then(chrono::DateTime::from_timestamp_millis).map_or_else(
        || format!("{ms} ms after 1970"),
        |time| time.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    )
}

/// [`utc`] to the millisecond, for timelines whose steps come within a second of each other.
pub fn utc_ms(ms: u64) -> String {
    i64::try_from(ms).ok().and_then(chrono::DateTime::from_timestamp_millis).map_or_else(
        || format!("{ms} ms after 1970"),
        |time| time.format("%Y-%m-%d %H:%M:%S%.3f UTC").to_string(),
    )
}

/// Bytes a second from `51200`, `50KiB/s`, `1.5MiB/s`, `2 MB/s` (the `/s` is optional; KiB and
/// MiB are 1024-based, KB and MB 1000-based). Zero is allowed (no rate).
pub fn parse_rate(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let body = trimmed.strip_suffix("/s").unwrap_or(trimmed).trim();
    let split = body.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(body.len());
    let (number, unit) = body.split_at(split);
    let value: f64 = number.parse().map_err(|_| format!("{text:?} is not a rate like 80KiB/s or 51200"))?;
    let factor: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "kb" | "k" => 1000.0,
        "mb" | "m" => 1_000_000.0,
        other => {
            return Err(format!("{text:?}: unknown unit {other:?}; use B, KiB, MiB, KB or MB (per second)"));
        }
    };
    let bytes = value * factor;
    if !bytes.is_finite() || !(0.0..=1e12).contains(&bytes) {
        return Err(format!("{text:?} is not a rate between 0 and 1 TB/s"));
    }
    // Rounded to whole bytes, a rate under 1 B/s would become 0, which means "no cap".
    if bytes > 0.0 && bytes < 1.0 {
        return Err(format!("{text:?} is under 1 B/s, the smallest cap; use 0 for no cap"));
    }
    Ok(bytes.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_print_in_utc_to_the_second() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_796_283_667_999), "2026-12-03 07:41:07 UTC");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00 UTC", "a leap day");
        assert_eq!(utc(u64::MAX), format!("{} ms after 1970", u64::MAX));
    }

    #[test]
    fn rates_in_the_forms_people_write() {
        assert_eq!(parse_rate("51200"), Ok(51_200));
        assert!(parse_rate("0.0000001B/s").unwrap_err().contains("under 1 B/s"));
        assert!(parse_rate("0.5").unwrap_err().contains("use 0 for no cap"));
        assert_eq!(parse_rate("0"), Ok(0));
        assert_eq!(parse_rate("1B/s"), Ok(1));
        assert_eq!(parse_rate("50KiB/s"), Ok(51_200));
        assert_eq!(parse_rate("80 KiB/s"), Ok(81_920));
        assert_eq!(parse_rate("1.5MiB/s"), Ok(1_572_864));
        assert_eq!(parse_rate("2MB"), Ok(2_000_000));
        assert_eq!(parse_rate("0"), Ok(0));
        assert!(parse_rate("fast").unwrap_err().contains("not a rate"));
        assert!(parse_rate("5 GiB/s").unwrap_err().contains("unknown unit"));
        assert!(parse_rate("-5").is_err());
    }

    #[test]
    fn a_rate_reads_from_a_number_or_a_text_and_paces_chunks() {
        let from_text: Rate = serde_json::from_str("\"50KiB/s\"").unwrap();
        let from_number: Rate = serde_json::from_str("51200").unwrap();
        assert_eq!(from_text, from_number);
        assert_eq!(from_text.interval(1024), Some(std::time::Duration::from_millis(20)));
        assert_eq!(Rate(0).interval(1024), None);
        assert!(serde_json::from_str::<Rate>("\"quick\"").is_err());
    }
}

/// A byte rate in configuration: `max_rate = "80KiB/s"` or `max_rate = 81920`; 0 means none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rate(pub u64);

impl Rate {
    /// The pause between chunks of `chunk_bytes` that keeps a job at or under this rate.
    pub fn interval(self, chunk_bytes: u32) -> Option<std::time::Duration> {
        (self.0 > 0).then(|| std::time::Duration::from_secs_f64(f64::from(chunk_bytes) / self.0 as f64))
    }
}

impl serde::Serialize for Rate {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0.to_string())
    }
}

impl<'de> serde::Deserialize<'de> for Rate {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Number(n) => Ok(Rate(n)),
            Raw::Text(text) => parse_rate(&text).map(Rate).map_err(serde::de::Error::custom),
        }
    }
}

/// A parser's message in plain words: serde's type names (`expected u32`) become what a user
/// would write (`expected a whole number`).
pub fn plain_words(message: &str) -> String {
    let mut out = message.to_owned();
    for (rust, plain) in [
        ("expected u8", "expected a whole number from 0 to 255"),
        ("expected u16", "expected a whole number of 0 or more"),
        ("expected u32", "expected a whole number of 0 or more"),
        ("expected u64", "expected a whole number of 0 or more"),
        ("expected usize", "expected a whole number of 0 or more"),
        ("expected i64", "expected a whole number"),
        ("expected f64", "expected a number"),
        ("expected f32", "expected a number"),
        ("invalid type: string", "the text"),
        ("invalid type: integer", "the whole number"),
        ("invalid type: floating point", "the number"),
        ("invalid type: boolean", "the truth value"),
        ("invalid value: integer", "the number"),
    ] {
        out = out.replace(rust, plain);
    }
    out
}

#[cfg(test)]
mod plain_words_tests {
    #[test]
    fn serde_type_names_become_plain_words() {
        assert_eq!(
            super::plain_words("invalid type: string \"big\", expected u32"),
            "the text \"big\", expected a whole number of 0 or more"
        );
        assert_eq!(
            super::plain_words("invalid value: integer `-1`, expected u64"),
            "the number `-1`, expected a whole number of 0 or more"
        );
    }
}

/// `812 B`, `64 KiB`, `1.5 MiB`.
pub fn bytes(n: u64) -> String {
    const KIB: f64 = 1024.0;
    let f = n as f64;
    if n < 1024 {
        format!("{n} B")
    } else if f < KIB * KIB {
        trim(f / KIB, "KiB")
    } else if f < KIB * KIB * KIB {
        trim(f / (KIB * KIB), "MiB")
    } else {
        trim(f / (KIB * KIB * KIB), "GiB")
    }
}

fn trim(value: f64, unit: &str) -> String {
    if value >= 100.0 || (value - value.round()).abs() < 0.05 {
        format!("{value:.0} {unit}")
    } else {
        format!("{value:.1} {unit}")
    }
}

/// `1 device`, `3 devices`: a count with its noun.
pub fn plural(n: usize, what: &str) -> String {
    if n == 1 { format!("1 {what}") } else { format!("{n} {what}s") }
}
