//! Maintenance windows: a rollout with `windows` starts jobs only while one is open (jobs
//! already under way finish). A window is days of the week, a start and an end in local time,
//! and an IANA time zone; time zones and daylight saving come from jiff (the system's zoneinfo,
//! else the copy jiff carries).
//!
//! A window that ends before it starts (`22:00`–`04:00`) runs past midnight and belongs to the
//! day it opens. Whether a window is open is judged in absolute time, from its opening and
//! closing instants: a time the clock skips is taken after the gap (02:30 on a day that skips
//! 02:00–03:00 is 03:30) and a time it lives twice the first time, so a window inside the
//! changed hour is open once, for its length.

use serde::{Deserialize, Serialize};

/// The most windows one rollout may have.
pub const MAX_WINDOWS: usize = 16;

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// A window as written: `{"days": ["mon", …], "start": "02:00", "end": "05:00", "tz":
/// "Europe/Berlin"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    pub days: Vec<String>,
    pub start: String,
    pub end: String,
    pub tz: String,
}

/// A window checked and ready to judge time by.
#[derive(Debug, Clone)]
struct Parsed {
    /// Monday first.
    days: [bool; 7],
    /// Minutes after local midnight.
    start: i32,
    end: i32,
    tz: jiff::tz::TimeZone,
}

impl Window {
    fn parse(&self, which: &str) -> Result<Parsed, String> {
        if self.days.is_empty() || self.days.len() > 7 {
            return Err(format!("{which}.days names 1 to 7 days like \"mon\""));
        }
        let mut days = [false; 7];
        for day in &self.days {
            let index = DAYS
                .iter()
                .position(|d| d.eq_ignore_ascii_case(day.trim()))
                .ok_or_else(|| format!("{which}.days: {day:?} is not one of {}", DAYS.join(", ")))?;
            days[index] = true;
        }
        let minutes = |field: &str, text: &str| -> Result<i32, String> {
            let bad = || format!("{which}.{field} {text:?} is not a time like \"02:00\"");
            let (hour, minute) = text.trim().split_once(':').ok_or_else(bad)?;
            // Two digits each: "+2:00" would parse as a number, but is no time.
            let digits = |part: &str| part.len() == 2 && part.bytes().all(|b| b.is_ascii_digit());
            if !digits(hour) || !digits(minute) {
                return Err(bad());
            }
            let (hour, minute): (i32, i32) =
                (hour.parse().map_err(|_| bad())?, minute.parse().map_err(|_| bad())?);
            if !(0..24).contains(&hour) || !(0..60).contains(&minute) {
                return Err(bad());
            }
            Ok(hour * 60 + minute)
        };
        let (start, end) = (minutes("start", &self.start)?, minutes("end", &self.end)?);
        if start == end {
            return Err(format!("{which}: start and end are the same time"));
        }
        let tz = jiff::tz::TimeZone::get(self.tz.trim())
            .map_err(|_| format!("{which}.tz {:?} is not a time zone such as \"Europe/Berlin\"", self.tz))?;
        Ok(Parsed { days, start, end, tz })
    }
}

/// Checks every window (named by its place, `windows[0]`, in errors).
pub fn check(windows: &[Window]) -> Result<(), String> {
    if windows.len() > MAX_WINDOWS {
        return Err(format!("{} windows; a rollout has at most {MAX_WINDOWS}", windows.len()));
    }
    parse_all(windows).map(|_| ())
}

fn parse_all(windows: &[Window]) -> Result<Vec<Parsed>, String> {
    windows.iter().enumerate().map(|(n, w)| w.parse(&format!("windows[{n}]"))).collect()
}

fn local(at_ms: u64, tz: &jiff::tz::TimeZone) -> Option<jiff::Zoned> {
    let at = jiff::Timestamp::from_millisecond(i64::try_from(at_ms).ok()?).ok()?;
    Some(at.to_zoned(tz.clone()))
}

impl Parsed {
    /// When the window that opens on local `date` opens and closes, in Unix ms. A time the
    /// clock skips is taken after the gap and a time it lives twice the first time (jiff's
    /// "compatible" choice), for the opening and the closing alike, so a window is open once.
    fn interval(&self, date: jiff::civil::Date) -> Option<(u64, u64)> {
        let at = |date: jiff::civil::Date, minutes: i32| -> Option<u64> {
            let (hour, minute) = (i8::try_from(minutes / 60).ok()?, i8::try_from(minutes % 60).ok()?);
            let zoned = date.at(hour, minute, 0, 0).to_zoned(self.tz.clone()).ok()?;
            u64::try_from(zoned.timestamp().as_millisecond()).ok()
        };
        let closing_date = if self.end > self.start { date } else { date.tomorrow().ok()? };
        Some((at(date, self.start)?, at(closing_date, self.end)?))
    }

    fn opens_on(&self, date: jiff::civil::Date) -> bool {
        self.days[usize::try_from(date.weekday().to_monday_zero_offset()).unwrap_or(0)]
    }

    /// Open at `at_ms`: inside the interval of today's window or of yesterday's (one past
    /// midnight).
    fn open_at(&self, at_ms: u64) -> bool {
        let Some(today) = local(at_ms, &self.tz).map(|now| now.date()) else { return false };
        let yesterday = today.yesterday().ok();
        [yesterday, Some(today)]
            .into_iter()
            .flatten()
            .filter(|date| self.opens_on(*date))
            .any(|date| self.interval(date).is_some_and(|(opens, closes)| (opens..closes).contains(&at_ms)))
    }

    /// The first opening after `at_ms` (within the next eight days), in Unix ms.
    fn next_opening(&self, at_ms: u64) -> Option<u64> {
        let mut date = local(at_ms, &self.tz)?.date();
        for _ in 0..8 {
            if self.opens_on(date)
                && let Some((opens, _)) = self.interval(date).filter(|(opens, _)| *opens > at_ms)
            {
                return Some(opens);
            }
            date = date.tomorrow().ok()?;
        }
        None
    }
}

/// Why the windows cannot be judged here (a time zone this instance does not know), if so.
pub fn problem(windows: &[Window]) -> Option<String> {
    parse_all(windows).err()
}

/// Whether any window is open at `at_ms` (no windows: always).
pub fn open_at(windows: &[Window], at_ms: u64) -> bool {
    windows.is_empty() || parse_all(windows).is_ok_and(|parsed| parsed.iter().any(|w| w.open_at(at_ms)))
}

/// When the next window opens after `at_ms`, in Unix ms, with its local time in words
/// (`Mon 2027-03-29 02:00 CEST`).
pub fn next_opening(windows: &[Window], at_ms: u64) -> Option<(u64, String)> {
    let parsed = parse_all(windows).ok()?;
    let (at, window) =
        parsed.iter().filter_map(|w| Some((w.next_opening(at_ms)?, w))).min_by_key(|(at, _)| *at)?;
    let words = local(at, &window.tz)?.strftime("%a %Y-%m-%d %H:%M %Z").to_string();
    Some((at, words))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(days: &[&str], start: &str, end: &str, tz: &str) -> Window {
        Window {
            days: days.iter().map(|d| d.to_string()).collect(),
            start: start.into(),
            end: end.into(),
            tz: tz.into(),
        }
    }

    fn ms(rfc3339: &str) -> u64 {
        rfc3339.parse::<jiff::Timestamp>().unwrap().as_millisecond() as u64
    }

    /// Daily 02:00–05:00 in Berlin across the spring-forward night of 2027-03-28 (02:00 CET
    /// becomes 03:00 CEST): it opens at 01:00 UTC the day before, at 03:00 CEST (01:00 UTC) on
    /// the night itself (02:00 does not exist), and at 00:00 UTC after.
    #[test]
    fn a_window_opens_at_its_local_time_across_a_dst_change() {
        let nightly =
            [window(&["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "02:00", "05:00", "Europe/Berlin")];
        let (at, words) = next_opening(&nightly, ms("2027-03-26T12:00:00Z")).unwrap();
        assert_eq!(at, ms("2027-03-27T01:00:00Z"));
        assert_eq!(words, "Sat 2027-03-27 02:00 CET");
        let (at, words) = next_opening(&nightly, ms("2027-03-27T12:00:00Z")).unwrap();
        assert_eq!(at, ms("2027-03-28T01:00:00Z"), "{words}");
        assert_eq!(words, "Sun 2027-03-28 03:00 CEST");
        let (at, _) = next_opening(&nightly, ms("2027-03-28T12:00:00Z")).unwrap();
        assert_eq!(at, ms("2027-03-29T00:00:00Z"));
        assert!(!open_at(&nightly, ms("2027-03-28T00:59:59Z")));
        assert!(open_at(&nightly, ms("2027-03-28T01:00:00Z")));
        assert!(open_at(&nightly, ms("2027-03-28T02:59:59Z")), "04:59 CEST");
        assert!(!open_at(&nightly, ms("2027-03-28T03:00:00Z")), "05:00 CEST: closed");
        // Autumn: 2027-10-31 03:00 CEST becomes 02:00 CET; the window ends at 05:00 CET.
        assert!(open_at(&nightly, ms("2027-10-31T03:59:59Z")));
        assert!(!open_at(&nightly, ms("2027-10-31T04:00:00Z")));
    }

    /// A window inside the hour the clock changes: on the spring night it opens when the clock
    /// resumes and lasts its length; on the autumn night it is open once, not twice.
    #[test]
    fn a_window_inside_the_changed_hour_is_open_once() {
        let every_day = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
        let short = [window(&every_day, "02:00", "02:30", "Europe/Berlin")];
        assert_eq!(next_opening(&short, ms("2027-03-27T12:00:00Z")).unwrap().0, ms("2027-03-28T01:00:00Z"));
        assert!(
            open_at(&short, ms("2027-03-28T01:15:00Z")),
            "03:15 CEST, the skipped window moved after the gap"
        );
        assert!(!open_at(&short, ms("2027-03-28T01:30:00Z")));
        assert!(open_at(&short, ms("2027-10-31T00:15:00Z")), "02:15 CEST, the first pass");
        assert!(!open_at(&short, ms("2027-10-31T01:15:00Z")), "02:15 CET, the second pass: closed");
    }

    #[test]
    fn a_window_past_midnight_belongs_to_the_day_it_opens() {
        let friday_night = [window(&["fri"], "22:00", "04:00", "UTC")];
        assert!(open_at(&friday_night, ms("2027-01-15T23:00:00Z")), "Friday 23:00");
        assert!(open_at(&friday_night, ms("2027-01-16T03:59:00Z")), "Saturday 03:59");
        assert!(!open_at(&friday_night, ms("2027-01-16T04:00:00Z")));
        assert!(!open_at(&friday_night, ms("2027-01-16T23:00:00Z")), "Saturday night is not Friday's");
        assert!(!open_at(&friday_night, ms("2027-01-15T03:00:00Z")), "Friday early is Thursday night's");
        assert_eq!(
            next_opening(&friday_night, ms("2027-01-16T12:00:00Z")).unwrap().0,
            ms("2027-01-22T22:00:00Z")
        );
        assert!(open_at(&[], 0), "no windows: always open");
    }

    #[test]
    fn bad_windows_are_refused_by_field() {
        let cases = [
            (window(&[], "02:00", "05:00", "UTC"), "windows[0].days names 1 to 7 days"),
            (window(&["mon"; 8], "02:00", "05:00", "UTC"), "windows[0].days names 1 to 7 days"),
            (window(&["someday"], "02:00", "05:00", "UTC"), "windows[0].days: \"someday\""),
            (window(&["mon"], "2:00", "05:00", "UTC"), "windows[0].start \"2:00\""),
            (window(&["mon"], "+2:00", "05:00", "UTC"), "windows[0].start \"+2:00\""),
            (window(&["mon"], "02:00", "25:00", "UTC"), "windows[0].end \"25:00\""),
            (window(&["mon"], "02:00", "02:00", "UTC"), "start and end are the same"),
            (window(&["mon"], "02:00", "05:00", "Mars/Olympus"), "windows[0].tz \"Mars/Olympus\""),
        ];
        for (w, expected) in cases {
            let error = check(&[w]).unwrap_err();
            assert!(error.contains(expected), "{expected}: {error}");
        }
        let many = vec![window(&["mon"], "02:00", "05:00", "UTC"); MAX_WINDOWS + 1];
        assert!(check(&many).unwrap_err().contains("at most 16"));
    }
}
