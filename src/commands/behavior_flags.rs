//! The misbehaviour flags shared by `rocky sim` and `rocky demo`.

use clap::Args;

use rocky::sim::{Behavior, BehaviorPlan, Selection};

#[derive(Args, Debug, Clone, Default)]
pub struct BehaviorFlags {
    /// Devices that answer FOTA_REQUEST_NACK: a share (0.1, 10%) or a list (dev-03,7).
    #[arg(long, value_name = "LIST|RATIO")]
    pub nack: Option<Selection>,
    /// Devices that answer FOTA_DONE_FAILED whatever they received.
    #[arg(long, value_name = "LIST|RATIO")]
    pub fail: Option<Selection>,
    /// Devices that never answer (their jobs time out).
    #[arg(long, value_name = "LIST|RATIO")]
    pub silent: Option<Selection>,
    /// Devices that damage what they receive, so verification fails.
    #[arg(long, value_name = "LIST|RATIO")]
    pub corrupt: Option<Selection>,
    /// Devices that send an undecodable frame before each answer.
    #[arg(long, value_name = "LIST|RATIO")]
    pub garbage: Option<Selection>,
    /// Devices that answer late.
    #[arg(long, value_name = "LIST|RATIO")]
    pub slow: Option<Selection>,
}

impl BehaviorFlags {
    /// Each flag by its name on the command line.
    pub fn named(&self) -> [(&'static str, &Option<Selection>); 6] {
        [
            ("--nack", &self.nack),
            ("--fail", &self.fail),
            ("--silent", &self.silent),
            ("--corrupt", &self.corrupt),
            ("--garbage", &self.garbage),
            ("--slow", &self.slow),
        ]
    }

    /// The plan the flags describe, or `None` when no flag was given.
    pub fn plan(&self) -> Option<BehaviorPlan> {
        let given = [
            (Behavior::Nack, &self.nack),
            (Behavior::Fail, &self.fail),
            (Behavior::Silent, &self.silent),
            (Behavior::Corrupt, &self.corrupt),
            (Behavior::Garbage, &self.garbage),
            (Behavior::Slow, &self.slow),
        ];
        given.iter().any(|(_, s)| s.is_some()).then(|| {
            given
                .into_iter()
                .filter_map(|(b, s)| s.clone().map(|s| (b, s)))
                .fold(BehaviorPlan::default(), |plan, (b, s)| plan.with(b, s))
        })
    }
}
