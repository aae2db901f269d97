//! The new-job form's rollout fields, read from what the operator typed: the devices as ids, a
//! pattern or labels (with how many known devices match), a name, waves, caps on starts and on
//! jobs at once, the success and abort thresholds, retries and gates. Any of them makes the form
//! start a rollout rather than plain jobs. Each is checked by the rule the API applies.

use crate::inventory::{Labels, glob, labels};
use crate::protocol::DeviceId;
use crate::rollout::{AbortRule, Gates, Targets, WaveSize, check_name, wave_ends};

/// The devices the form knows (the inventory and those seen), with their labels.
pub type Known<'a> = [(&'a str, &'a Labels)];

/// The devices field read as a rollout's targets, with how many known devices it names.
#[derive(Debug, Clone, PartialEq)]
pub struct Picked {
    pub targets: Targets,
    pub count: usize,
}

/// `model=esp32-c3, site=lab` (labels), one `dev-*` or `dev-?1` (a pattern), or ids.
pub fn targets(text: &str, known: &Known<'_>) -> Result<Picked, String> {
    let items: Vec<&str> = text.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    if items.is_empty() {
        return Err("name at least one device: ids, a pattern like dev-* or labels like model=m1".into());
    }
    mixed(&items)?;
    if items.iter().all(|item| item.contains('=')) {
        let mut selector = Labels::new();
        for item in &items {
            let (key, value) = labels::parse_pair(item).map_err(|e| e.to_string())?;
            selector.insert(key, value);
        }
        let count = known.iter().filter(|(_, l)| labels::matches(l, &selector)).count();
        if count == 0 {
            return Err(format!("no known device has {}", items.join(", ")));
        }
        return Ok(Picked { targets: Targets { labels: Some(selector), ..Targets::default() }, count });
    }
    if let [pattern] = items.as_slice()
        && glob::is_pattern(pattern)
    {
        let count = known.iter().filter(|(id, _)| glob::matches(pattern, id)).count();
        if count == 0 {
            return Err(format!("no known device matches {pattern:?}"));
        }
        return Ok(Picked {
            targets: Targets { glob: Some((*pattern).to_owned()), ..Targets::default() },
            count,
        });
    }
    let mut ids: Vec<String> = Vec::new();
    for item in items {
        if glob::is_pattern(item) {
            return Err(format!("{item:?}: one pattern alone, or ids (a pattern cannot be mixed with ids)"));
        }
        let id = DeviceId::parse(item).map_err(|e| e.to_string())?;
        if !ids.iter().any(|known| known == id.as_str()) {
            ids.push(id.as_str().to_owned());
        }
    }
    Ok(Picked { count: ids.len(), targets: Targets { devices: Some(ids), ..Targets::default() } })
}

/// `dev-01, model=esp32-c3` is a mistake, not two devices (one named `model=esp32-c3`): ids
/// and labels cannot be mixed in one list.
pub fn mixed(items: &[&str]) -> Result<(), String> {
    let labels = items.iter().filter(|item| item.contains('=')).count();
    if labels > 0 && labels < items.len() {
        let id = items.iter().find(|item| !item.contains('=')).copied().unwrap_or_default();
        let label = items.iter().find(|item| item.contains('=')).copied().unwrap_or_default();
        return Err(format!(
            "{id:?} is a device id and {label:?} a label: name devices by ids, or by labels (all KEY=VALUE), \
             not both"
        ));
    }
    Ok(())
}

/// Waves as typed, and where each ends among the devices.
pub type Waves = (Vec<WaveSize>, Vec<usize>);

/// `1, 10%, 100%`: each a device count or a share, counted from the start.
pub fn waves(text: &str, devices: usize) -> Result<Option<Waves>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let mut waves = Vec::new();
    for item in text.split(',').map(str::trim) {
        let wave = if item.ends_with('%') {
            WaveSize::Share(item.to_owned())
        } else {
            WaveSize::Count(
                item.parse().map_err(|_| format!("{item:?} is neither a count nor a share like 10%"))?,
            )
        };
        waves.push(wave);
    }
    let ends = wave_ends(&waves, devices.max(1))?;
    Ok(Some((waves, ends)))
}

/// A cap of 1 or more `what`; empty is no cap.
fn cap(text: &str, what: &str) -> Result<Option<u32>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    match text.parse::<u32>() {
        Ok(n) if n >= 1 => Ok(Some(n)),
        _ => Err(format!("{text:?} is not a number of {what} (1 or more)")),
    }
}

/// Job starts a minute, at least 1; empty is no cap.
pub fn per_minute(text: &str) -> Result<Option<u32>, String> {
    cap(text, "starts a minute")
}

/// Jobs of the rollout active at once, at least 1; empty is no cap.
pub fn at_once(text: &str) -> Result<Option<u32>, String> {
    cap(text, "jobs at once")
}

/// The rollout's name; empty is the default (its image to its devices).
pub fn name(text: &str) -> Result<Option<String>, String> {
    if text.trim().is_empty() { Ok(None) } else { check_name(text).map(Some) }
}

/// Retries of a failed device and the wait before the first (each later one twice as long).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    pub count: u32,
    pub backoff_s: u64,
}

/// `2` or `2 after 60s`: retries (0 to 10) and the first wait (1 to 3600 s, 30 s when not
/// said); empty is none.
pub fn retries(text: &str) -> Result<Option<Retry>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let (count_text, wait) = match text.split_once("after") {
        Some((count_text, wait)) => (count_text.trim(), Some(wait.trim())),
        None => (text, None),
    };
    let count = match count_text.parse::<u32>() {
        Ok(n) if n <= 10 => n,
        _ => return Err(format!("{count_text:?} is not a number of retries (0 to 10)")),
    };
    let backoff_s = match wait {
        None => 30,
        Some(wait) => match wait.strip_suffix('s').unwrap_or(wait).trim().parse::<u64>() {
            Ok(s) if (1..=3600).contains(&s) => s,
            _ => return Err(format!("{wait:?} is not a wait in seconds from 1s to 3600s")),
        },
    };
    Ok(Some(Retry { count, backoff_s }))
}

/// `auto` (the next wave starts by itself) or `manual` (each waits for a resume); empty is auto.
pub fn gates(text: &str) -> Result<Option<Gates>, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "" => Ok(None),
        "auto" => Ok(Some(Gates::Auto)),
        "manual" => Ok(Some(Gates::Manual)),
        other => Err(format!("{other:?}: gates are auto or manual")),
    }
}

/// `95%` or `0.95`: a share from 0 to 1, read as everywhere else.
pub use crate::rollout::parse_share as share;

/// The success threshold a wave must meet; empty is the default (95%).
pub fn success(text: &str) -> Result<Option<f64>, String> {
    if text.trim().is_empty() { Ok(None) } else { share(text).map(Some) }
}

/// `20%` or `20% after 10`: the failed share at which the rollout aborts, once that many
/// devices finished (10 when not said).
pub fn abort(text: &str) -> Result<Option<AbortRule>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let (share_text, after) = match text.split_once("after") {
        Some((share_text, after)) => {
            let after = after.trim();
            let n =
                after.parse::<u32>().map_err(|_| format!("{after:?} is not a number of finished devices"))?;
            (share_text, n)
        }
        None => (text, 10),
    };
    let failure_share = share(share_text)?;
    if failure_share == 0.0 {
        return Err("an abort share of 0% would stop at once: give more than 0%".into());
    }
    Ok(Some(AbortRule { failure_share, min_finished: after, count_rejected: true, cancel_active: false }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn devices() -> Vec<(String, Labels)> {
        let labelled = |id: &str, model: &str| {
            let labels: Labels = [("model".to_owned(), model.to_owned())].into_iter().collect();
            (id.to_owned(), labels)
        };
        vec![labelled("dev-01", "a"), labelled("dev-02", "b"), labelled("dev-10", "a")]
    }

    fn known(devices: &[(String, Labels)]) -> Vec<(&str, &Labels)> {
        devices.iter().map(|(id, labels)| (id.as_str(), labels)).collect()
    }

    #[test]
    fn devices_read_as_labels_a_pattern_or_ids_with_a_count() {
        let devices = devices();
        let known = || known(&devices);
        let picked = targets("model=a", &known()).unwrap();
        assert_eq!(picked.count, 2);
        assert_eq!(picked.targets.labels.unwrap().get("model").map(String::as_str), Some("a"));
        let picked = targets("dev-0*", &known()).unwrap();
        assert_eq!((picked.count, picked.targets.glob.as_deref()), (2, Some("dev-0*")));
        let picked = targets("x1, x2, x1", &known()).unwrap();
        assert_eq!(picked.targets.devices.unwrap(), ["x1", "x2"], "ids need not be known; each once");
        assert!(targets("model=z", &known()).unwrap_err().contains("no known device has model=z"));
        assert!(targets("zz*", &known()).unwrap_err().contains("no known device matches"));
        assert!(targets("dev-*, x1", &known()).unwrap_err().contains("cannot be mixed"));
        assert!(targets("a/b", &known()).unwrap_err().contains("'/'"));
    }

    #[test]
    fn waves_caps_and_thresholds_parse_or_say_what_is_wrong() {
        assert_eq!(waves("1, 25%, 100%", 24).unwrap().unwrap().1, [1, 6, 24]);
        assert_eq!(waves("", 24).unwrap(), None);
        assert!(waves("1, ten", 24).unwrap_err().contains("\"ten\" is neither"));
        assert_eq!(per_minute("60"), Ok(Some(60)));
        assert!(per_minute("0").unwrap_err().contains("1 or more"));
        assert_eq!(success("90%"), Ok(Some(0.9)));
        assert_eq!(success("0.5"), Ok(Some(0.5)));
        assert!(success("150%").unwrap_err().contains("from 0% to 100%"));
        let rule = abort("20% after 5").unwrap().unwrap();
        assert_eq!((rule.failure_share, rule.min_finished), (0.2, 5));
        assert_eq!(abort("30%").unwrap().unwrap().min_finished, 10);
        assert!(abort("0%").unwrap_err().contains("stop at once"));
        assert!(abort("20% after many").unwrap_err().contains("\"many\""));
    }

    #[test]
    fn name_concurrency_retries_and_gates_parse_or_say_what_is_wrong() {
        assert_eq!(name("  spring fix "), Ok(Some("spring fix".to_owned())));
        assert_eq!(name(""), Ok(None));
        assert!(name("a\u{202e}b").unwrap_err().contains("control or format character"));
        assert!(name(&"n".repeat(200)).unwrap_err().contains("limit is 128"));
        assert_eq!(at_once("5"), Ok(Some(5)));
        assert!(at_once("0").unwrap_err().contains("jobs at once (1 or more)"));
        assert_eq!(retries("2"), Ok(Some(Retry { count: 2, backoff_s: 30 })));
        assert_eq!(retries("3 after 60s"), Ok(Some(Retry { count: 3, backoff_s: 60 })));
        assert_eq!(retries("1 after 5"), Ok(Some(Retry { count: 1, backoff_s: 5 })));
        assert!(retries("11").unwrap_err().contains("0 to 10"));
        assert!(retries("2 after 2h").unwrap_err().contains("\"2h\""));
        assert!(retries("2 after 0s").unwrap_err().contains("from 1s"));
        assert_eq!(gates("Manual"), Ok(Some(Gates::Manual)));
        assert_eq!(gates(" "), Ok(None));
        assert!(gates("sometimes").unwrap_err().contains("auto or manual"));
    }
}
