//! The topics of the AWS OTA profile: what Rocky subscribes to, what an incoming topic is, and
//! where Rocky answers. T is the thing name (the device id), J a job id, S a stream name.

use crate::protocol::DeviceId;

/// What Rocky subscribes to for AWS devices: their requests for work, their job updates and
/// their requests for blocks.
pub const SUBSCRIPTIONS: [&str; 3] =
    ["$aws/things/+/jobs/$next/get", "$aws/things/+/jobs/+/update", "$aws/things/+/streams/+/get/cbor"];

/// An incoming topic of the profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AwsTopic {
    /// `$aws/things/T/jobs/$next/get`: the device asks for its next job.
    NextGet { thing: DeviceId },
    /// `$aws/things/T/jobs/J/update`: the device says how job J goes.
    Update { thing: DeviceId, job: String },
    /// `$aws/things/T/streams/S/get/cbor`: the device asks for blocks of stream S.
    GetBlocks { thing: DeviceId, stream: String },
}

/// The longest job id or stream name taken (AWS allows 64 characters).
const MAX_NAME: usize = 64;

impl AwsTopic {
    /// The topic in words, or `None` for a topic that is not one of the profile's (or names a
    /// thing that is no device id, or a job or stream past 64 bytes).
    pub fn parse(topic: &str) -> Option<Self> {
        let rest = topic.strip_prefix("$aws/things/")?;
        let (thing, rest) = rest.split_once('/')?;
        let thing = DeviceId::parse(thing).ok()?;
        let parts: Vec<&str> = rest.split('/').collect();
        let name = |text: &str| (!text.is_empty() && text.len() <= MAX_NAME).then(|| text.to_owned());
        match parts.as_slice() {
            ["jobs", "$next", "get"] => Some(Self::NextGet { thing }),
            ["jobs", job, "update"] if !job.starts_with('$') => Some(Self::Update { thing, job: name(job)? }),
            ["streams", stream, "get", "cbor"] => Some(Self::GetBlocks { thing, stream: name(stream)? }),
            _ => None,
        }
    }

    pub fn thing(&self) -> &DeviceId {
        match self {
            Self::NextGet { thing } | Self::Update { thing, .. } | Self::GetBlocks { thing, .. } => thing,
        }
    }
}

/// `$aws/things/T/jobs/notify-next`: where a device hears of its next job (a standard broker
/// delivers no `$next/get/accepted` to a device that never subscribed to it, so the answer to
/// `$next/get` goes here too).
pub fn notify_next_topic(thing: &DeviceId) -> String {
    format!("$aws/things/{thing}/jobs/notify-next")
}

/// `$aws/things/T/streams/S/data/cbor`: where blocks of stream S go.
pub fn data_topic(thing: &DeviceId, stream: &str) -> String {
    format!("$aws/things/{thing}/streams/{stream}/data/cbor")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thing(id: &str) -> DeviceId {
        DeviceId::parse(id).unwrap()
    }

    #[test]
    fn the_transcripts_topics_read_as_the_profile_says() {
        let t = thing("awsota-smoke-thing-1");
        assert_eq!(
            AwsTopic::parse("$aws/things/awsota-smoke-thing-1/jobs/$next/get"),
            Some(AwsTopic::NextGet { thing: t.clone() })
        );
        assert_eq!(
            AwsTopic::parse("$aws/things/awsota-smoke-thing-1/jobs/AFR_OTA-smoke-job-1/update"),
            Some(AwsTopic::Update { thing: t.clone(), job: "AFR_OTA-smoke-job-1".into() })
        );
        assert_eq!(
            AwsTopic::parse("$aws/things/awsota-smoke-thing-1/streams/AFR_OTA-smoke-stream-1/get/cbor"),
            Some(AwsTopic::GetBlocks { thing: t.clone(), stream: "AFR_OTA-smoke-stream-1".into() })
        );
        assert_eq!(notify_next_topic(&t), "$aws/things/awsota-smoke-thing-1/jobs/notify-next");
        assert_eq!(
            data_topic(&t, "AFR_OTA-smoke-stream-1"),
            "$aws/things/awsota-smoke-thing-1/streams/AFR_OTA-smoke-stream-1/data/cbor"
        );
    }

    #[test]
    fn other_topics_are_not_the_profiles() {
        for topic in [
            "$aws/things/t/jobs/notify-next",
            "$aws/things/t/jobs/$next/get/accepted",
            "$aws/things/t/jobs/j/update/accepted",
            "$aws/things/t/jobs/$next/update",
            "$aws/things//jobs/$next/get",
            "$aws/things/t/streams//get/cbor",
            "$aws/things/t/streams/s/get/json",
            "/fota/dev-1/response",
            "$aws/things/t",
        ] {
            assert_eq!(AwsTopic::parse(topic), None, "{topic}");
        }
        let long = format!("$aws/things/t/jobs/{}/update", "j".repeat(65));
        assert_eq!(AwsTopic::parse(&long), None);
    }
}
