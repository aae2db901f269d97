//! A dry run as an operator reads it, once for every face (`rocky rollout create --dry-run`
//! prints these lines, the console's rollout form shows them under its review): each list
//! with its count and its first ids, what would be refused, and the estimate.

use super::{DeviceList, RolloutDryRun};
use crate::units::{bytes, plural};

impl RolloutDryRun {
    /// The dry run in lines, naming at most `shown` ids of each list.
    pub fn in_words(&self, shown: usize) -> Vec<String> {
        let ids = |list: &DeviceList| {
            let mut text: Vec<String> = list.devices.iter().take(shown).map(ToString::to_string).collect();
            if list.count > shown {
                text.push(format!("and {} more", list.count - shown));
            }
            text.join(", ")
        };
        let mut lines = vec![format!(
            "dry run of rollout {:?}: nothing was created; {} of {} ({})",
            self.name,
            plural(self.device_count, "device"),
            self.image.name,
            bytes(self.image.size)
        )];
        for (number, wave) in self.waves.iter().enumerate() {
            lines.push(format!("wave {}  {}: {}", number + 1, plural(wave.count, "device"), ids(wave)));
        }
        for (what, list) in [
            ("up to date (nothing sent)", &self.up_to_date),
            ("never heard from", &self.never_seen),
            ("not heard from in a day", &self.not_seen_lately),
        ] {
            if list.count > 0 {
                lines.push(format!("{what}: {}: {}", plural(list.count, "device"), ids(list)));
            }
        }
        if self.refused_count > 0 {
            lines.push(format!(
                "would be refused: {} (a real run is refused while any remain)",
                plural(self.refused_count, "device")
            ));
            for refusal in self.refused.iter().take(shown) {
                lines.push(format!("  {}: {}", refusal.device, refusal.reason));
            }
        }
        let estimate = &self.estimate;
        let patches = if estimate.patches == 1 {
            "1 patch".to_owned()
        } else {
            format!("{} patches", estimate.patches)
        };
        lines.push(format!(
            "bytes    {} whole; {} with {patches}",
            bytes(estimate.bytes_whole),
            bytes(estimate.bytes_with_deltas)
        ));
        if estimate.patches_not_built > 0 {
            lines.push(format!(
                "         ({} take patches not built yet, counted whole)",
                plural(estimate.patches_not_built, "device")
            ));
        }
        lines.push(match estimate.duration_s {
            Some(seconds) => match std::time::Duration::try_from_secs_f64(seconds) {
                Ok(time) => {
                    format!(
                        "time     about {} ({})",
                        crate::tui::format::duration(time),
                        estimate.duration_note
                    )
                }
                Err(_) => format!("time     not estimated: the server said {seconds} s"),
            },
            None => format!("time     not estimated: {}", estimate.duration_note),
        });
        lines
    }
}
