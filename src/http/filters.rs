//! Values the listing filters share: a time (`GET /devices?seen_since=`, `GET /audit?since=`)
//! and a page's `limit`.

use super::ApiError;

/// `text` (Unix milliseconds, or a span back from now like `90s`, `10m`, `2h`, `7d`) as Unix
/// milliseconds; `key` names the filter in the error.
pub fn since(key: &str, text: &str, now_ms: u64) -> Result<u64, ApiError> {
    let text = text.trim();
    if let Ok(ms) = text.parse::<u64>() {
        return Ok(ms);
    }
    let bad = || {
        ApiError::BadRequest(format!(
            "{key} {text:?} is neither Unix milliseconds nor a span like 90s, 10m, 2h or 7d"
        ))
    };
    let unit_at = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = text.split_at(unit_at);
    let number: u64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    Ok(now_ms.saturating_sub(number.saturating_mul(seconds).saturating_mul(1000)))
}

/// A page's `limit`: 1 to `max`.
pub fn limit(text: &str, max: usize) -> Result<usize, ApiError> {
    match text.parse::<usize>() {
        Ok(n @ 1..) if n <= max => Ok(n),
        _ => Err(ApiError::BadRequest(format!("limit is a number from 1 to {max}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_milliseconds_or_a_span() {
        assert_eq!(since("since", "1234", 10_000_000).unwrap(), 1234);
        assert_eq!(since("since", "90s", 100_000).unwrap(), 10_000);
        assert_eq!(since("since", "10m", 10_000_000).unwrap(), 9_400_000);
        assert_eq!(since("since", "1d", 1000).unwrap(), 0);
        let error = since("seen_since", "10y", 0).unwrap_err().to_string();
        assert!(error.contains("seen_since \"10y\""), "{error}");
        assert!(since("since", "m", 0).is_err());
        assert!(since("since", "", 0).is_err());
    }

    #[test]
    fn a_limit_is_one_to_the_most() {
        assert_eq!(limit("1", 5).unwrap(), 1);
        assert_eq!(limit("5", 5).unwrap(), 5);
        for bad in ["0", "6", "-1", "x", ""] {
            assert!(limit(bad, 5).unwrap_err().to_string().contains("1 to 5"), "{bad}");
        }
    }
}
