//! Which device misbehaves how: `--nack 0.1` (a share of the fleet) or `--nack dev-03,7`
//! (ids or 1-based numbers), resolved deterministically so runs repeat.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Behavior {
    /// Acknowledges, receives, verifies and answers truthfully.
    Good,
    /// Answers FOTA_REQUEST_NACK.
    Nack,
    /// Receives everything, then answers FOTA_DONE_FAILED whatever the hash says.
    Fail,
    /// Never answers anything.
    Silent,
    /// Damages a received byte, so verification fails and it answers FOTA_DONE_FAILED.
    Corrupt,
    /// Sends an undecodable frame before each real answer.
    Garbage,
    /// Answers correctly but only after a delay.
    Slow,
}

impl Behavior {
    /// The order in which selections claim devices (a device gets the first that picks it).
    pub const MISBEHAVIOURS: [Behavior; 6] = [
        Behavior::Silent,
        Behavior::Nack,
        Behavior::Fail,
        Behavior::Corrupt,
        Behavior::Garbage,
        Behavior::Slow,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Good => "good",
            Self::Nack => "nack",
            Self::Fail => "fail",
            Self::Silent => "silent",
            Self::Corrupt => "corrupt",
            Self::Garbage => "garbage",
            Self::Slow => "slow",
        }
    }
}

impl fmt::Display for Behavior {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which devices one misbehaviour applies to.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Selection {
    #[default]
    None,
    /// A share of the fleet, 0.0 ..= 1.0.
    Ratio(f64),
    /// Device ids, or 1-based device numbers.
    List(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad device selection {text:?}: {reason} (use a share like 0.1 or 10%, or a list like dev-03,7)")]
pub struct SelectionError {
    text: String,
    reason: &'static str,
}

impl Selection {
    pub fn parse(text: &str) -> Result<Self, SelectionError> {
        let err = |reason| SelectionError { text: text.to_owned(), reason };
        let text = text.trim();
        if text.is_empty() {
            return Err(err("empty"));
        }
        if let Some(percent) = text.strip_suffix('%') {
            let value: f64 = percent.trim().parse().map_err(|_| err("not a percentage"))?;
            return Self::ratio(value / 100.0).ok_or_else(|| err("share must be 0..100%"));
        }
        if text.contains('.')
            && !text.contains(',')
            && let Ok(value) = text.parse::<f64>()
        {
            return Self::ratio(value).ok_or_else(|| err("share must be 0.0..1.0"));
        }
        let items: Vec<String> = text.split(',').map(|s| s.trim().to_owned()).collect();
        if items.iter().any(String::is_empty) {
            return Err(err("empty list item"));
        }
        Ok(Self::List(items))
    }

    fn ratio(value: f64) -> Option<Self> {
        (0.0..=1.0).contains(&value).then_some(Self::Ratio(value))
    }
}

impl std::str::FromStr for Selection {
    type Err = SelectionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// A selection for each misbehaviour.
#[derive(Debug, Clone, Default)]
pub struct BehaviorPlan {
    pub selections: Vec<(Behavior, Selection)>,
}

/// `want` of the `free` indices, evenly spaced, each centred in its stride.
fn spread(free: &[usize], want: usize) -> Vec<usize> {
    let want = want.min(free.len());
    (0..want).map(|k| free[(k * free.len() + free.len() / 2) / want.max(1)]).collect()
}

/// The index in `ids` of a list item: a device id, or a 1-based device number.
fn index_of(item: &str, ids: &[String]) -> Option<usize> {
    ids.iter()
        .position(|id| id == item)
        .or_else(|| item.parse::<usize>().ok().and_then(|n| n.checked_sub(1)))
        .filter(|i| *i < ids.len())
}

impl Selection {
    /// The list items that name none of `ids` (neither an id nor a number from 1 to their
    /// count): a user who typed one expects it to pick a device.
    pub fn unmatched(&self, ids: &[String]) -> Vec<String> {
        match self {
            Selection::List(items) => {
                items.iter().filter(|item| index_of(item, ids).is_none()).cloned().collect()
            }
            _ => Vec::new(),
        }
    }

    /// Which of `ids` this selection picks: listed ids or 1-based numbers, or a share spread
    /// evenly over them.
    pub fn pick(&self, ids: &[String]) -> Vec<bool> {
        let mut picked = vec![false; ids.len()];
        match self {
            Selection::None => {}
            Selection::List(items) => {
                for i in items.iter().filter_map(|item| index_of(item, ids)) {
                    picked[i] = true;
                }
            }
            Selection::Ratio(ratio) => {
                let all: Vec<usize> = (0..ids.len()).collect();
                for i in spread(&all, ((ids.len() as f64) * ratio).round() as usize) {
                    picked[i] = true;
                }
            }
        }
        picked
    }
}

impl BehaviorPlan {
    pub fn with(mut self, behavior: Behavior, selection: Selection) -> Self {
        self.selections.push((behavior, selection));
        self
    }

    /// The behaviour of each of `ids`, in order. Lists claim first; then each ratio takes its
    /// share (rounded) from the devices still unclaimed, spread evenly over them.
    pub fn assign(&self, ids: &[String]) -> Vec<Behavior> {
        let mut out = vec![Behavior::Good; ids.len()];
        let mut claimed = vec![false; ids.len()];
        let ordered = Behavior::MISBEHAVIOURS
            .iter()
            .flat_map(|b| self.selections.iter().filter(move |(sb, _)| sb == b));
        for (behavior, selection) in ordered.clone() {
            if let Selection::List(items) = selection {
                for item in items {
                    if let Some(i) = index_of(item, ids).filter(|i| !claimed[*i]) {
                        out[i] = *behavior;
                        claimed[i] = true;
                    }
                }
            }
        }
        for (behavior, selection) in ordered {
            if let Selection::Ratio(ratio) = selection {
                let free: Vec<usize> = (0..ids.len()).filter(|i| !claimed[*i]).collect();
                let want = ((ids.len() as f64) * ratio).round() as usize;
                for i in spread(&free, want) {
                    if !claimed[i] {
                        out[i] = *behavior;
                        claimed[i] = true;
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("dev-{i:02}")).collect()
    }

    #[test]
    fn a_selection_picks_listed_ids_or_an_even_share() {
        let picked = |s: &str| Selection::parse(s).unwrap().pick(&ids(8));
        assert_eq!(picked("dev-02, 5").iter().filter(|p| **p).count(), 2);
        assert!(picked("dev-02, 5")[1] && picked("dev-02, 5")[4]);
        assert_eq!(picked("0.25").iter().filter(|p| **p).count(), 2);
        assert!(!Selection::None.pick(&ids(3)).contains(&true));
    }

    #[test]
    fn parses_ratios_percentages_and_lists() {
        assert_eq!(Selection::parse("0.25").unwrap(), Selection::Ratio(0.25));
        assert_eq!(Selection::parse("10%").unwrap(), Selection::Ratio(0.1));
        assert_eq!(
            Selection::parse("dev-03, 7").unwrap(),
            Selection::List(vec!["dev-03".into(), "7".into()])
        );
        assert!(Selection::parse("1.5").is_err());
        assert!(Selection::parse("200%").is_err());
        assert!(Selection::parse("a,,b").is_err());
        assert!(Selection::parse("").is_err());
    }

    #[test]
    fn ratios_take_disjoint_shares_and_lists_win() {
        let plan = BehaviorPlan::default()
            .with(Behavior::Nack, Selection::Ratio(0.1))
            .with(Behavior::Fail, Selection::Ratio(0.1))
            .with(Behavior::Silent, Selection::List(vec!["dev-05".into(), "1".into()]));
        let got = plan.assign(&ids(20));
        let count = |b| got.iter().filter(|x| **x == b).count();
        assert_eq!((count(Behavior::Nack), count(Behavior::Fail), count(Behavior::Silent)), (2, 2, 2));
        assert_eq!(got[0], Behavior::Silent);
        assert_eq!(got[4], Behavior::Silent);
        assert_eq!(count(Behavior::Good), 14);
        assert_eq!(plan.assign(&ids(20)), got, "deterministic");
    }

    #[test]
    fn a_full_ratio_takes_everyone_left() {
        let plan = BehaviorPlan::default().with(Behavior::Slow, Selection::Ratio(1.0));
        assert!(plan.assign(&ids(7)).iter().all(|b| *b == Behavior::Slow));
    }
}
