//! Human formats shared by the console's panes.

use std::time::{Duration, SystemTime};

pub use crate::units::bytes;

/// `850ms`, `12.3s`, `4m05s`, `2h07m`.
pub fn duration(d: Duration) -> String {
    let secs = d.as_secs();
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else if secs < 60 {
        format!("{:.1}s", d.as_secs_f64())
    } else if secs < 3600 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60)
    }
}

/// Local wall-clock time with milliseconds, `14:03:27.512`.
pub fn clock_ms(t: SystemTime, utc_offset_s: i64) -> String {
    let since = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let local = since.as_secs() as i64 + utc_offset_s;
    let day = local.rem_euclid(86_400);
    format!("{:02}:{:02}:{:02}.{:03}", day / 3600, (day % 3600) / 60, day % 60, since.subsec_millis())
}

/// `1.2 MB/s` for a byte rate.
pub fn rate(bytes_per_s: f64) -> String {
    format!("{}/s", bytes(bytes_per_s.max(0.0) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_read_well() {
        assert_eq!(bytes(812), "812 B");
        assert_eq!(bytes(65_536), "64 KiB");
        assert_eq!(bytes(1_572_864), "1.5 MiB");
        assert_eq!(duration(Duration::from_millis(850)), "850ms");
        assert_eq!(duration(Duration::from_secs(245)), "4m05s");
        assert_eq!(duration(Duration::from_secs(7620)), "2h07m");
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(3_600_000 + 61_512);
        assert_eq!(clock_ms(t, 0), "01:01:01.512");
        assert_eq!(clock_ms(t, 3600), "02:01:01.512");
    }
}
