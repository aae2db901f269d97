//! Topic names: built only from a checked [`DeviceId`], parsed back for incoming traffic.

use super::DeviceId;

/// The topic layout under one configurable prefix (default `/fota`, leading slash included, as
/// the original devices expect).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    prefix: String,
}

/// What a topic under the prefix is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicKind {
    /// `{prefix}/cmd/{device}`: commands from Rocky.
    Cmd(DeviceId),
    /// `{prefix}/cmd_resp/{device}`: responses from the device.
    CmdResp(DeviceId),
    /// `{prefix}/data/{device}/{chunk}`: one raw firmware chunk.
    Data(DeviceId, u32),
    /// `{prefix}/status/{device}`: the device's status (retained; the status extension).
    Status(DeviceId),
    /// `{prefix}/cmd/$probe-{name}`: a Rocky's delivery probe (no device id starts with `$`,
    /// so it can never be a device's command topic).
    Probe(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("topic prefix {0:?} contains a wildcard or NUL; it must be a plain topic")]
    BadPrefix(String),
}

pub const DEFAULT_PREFIX: &str = "/fota";

/// What a delivery probe's topic level starts with: `$`, which no device id may start with.
const PROBE_PREFIX: &str = "$probe-";

impl Default for Topics {
    fn default() -> Self {
        Self { prefix: DEFAULT_PREFIX.to_owned() }
    }
}

impl Topics {
    /// A trailing `/` is dropped so that `/fota/` and `/fota` mean the same layout.
    pub fn new(prefix: &str) -> Result<Self, TopicError> {
        if prefix.contains(['+', '#', '\0']) {
            return Err(TopicError::BadPrefix(prefix.to_owned()));
        }
        Ok(Self { prefix: prefix.trim_end_matches('/').to_owned() })
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn cmd(&self, device: &DeviceId) -> String {
        format!("{}/cmd/{}", self.prefix, device)
    }

    pub fn cmd_resp(&self, device: &DeviceId) -> String {
        format!("{}/cmd_resp/{}", self.prefix, device)
    }

    pub fn data(&self, device: &DeviceId, chunk: u32) -> String {
        format!("{}/data/{}/{}", self.prefix, device, chunk)
    }

    /// The filter Rocky subscribes to for every device's responses.
    pub fn cmd_resp_filter(&self) -> String {
        format!("{}/cmd_resp/+", self.prefix)
    }

    /// The topic of a device's status (the status extension).
    pub fn status(&self, device: &DeviceId) -> String {
        format!("{}/status/{}", self.prefix, device)
    }

    /// The filter Rocky subscribes to for every device's status.
    pub fn status_filter(&self) -> String {
        format!("{}/status/+", self.prefix)
    }

    /// The filter for every device's commands: Rocky watches it for commands it did not send,
    /// and its own delivery probe comes back on it.
    pub fn cmd_filter(&self) -> String {
        format!("{}/cmd/+", self.prefix)
    }

    /// The topic of the delivery probe of the Rocky whose client id is `client_id` (characters
    /// outside `[A-Za-z0-9_-]` become `_`, so any client id makes one plain topic level).
    pub fn probe(&self, client_id: &str) -> String {
        let name: String = client_id
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
            .collect();
        format!("{}/cmd/{PROBE_PREFIX}{name}", self.prefix)
    }

    /// The filter a simulated device subscribes to for its commands and chunks.
    pub fn device_filters(&self, device: &DeviceId) -> [String; 2] {
        [self.cmd(device), format!("{}/data/{}/+", self.prefix, device)]
    }

    /// Parses a topic under this prefix; `None` for anything else, including a malformed device
    /// id or chunk number (`0`, leading zeros, not decimal, over 32 bits).
    pub fn parse(&self, topic: &str) -> Option<TopicKind> {
        let rest = topic.strip_prefix(self.prefix.as_str())?.strip_prefix('/')?;
        let (kind, rest) = rest.split_once('/')?;
        match kind {
            "cmd" => match rest.strip_prefix(PROBE_PREFIX) {
                Some(name) if !name.contains('/') => Some(TopicKind::Probe(name.to_owned())),
                Some(_) => None,
                None => Some(TopicKind::Cmd(DeviceId::parse(rest).ok()?)),
            },
            "cmd_resp" => Some(TopicKind::CmdResp(DeviceId::parse(rest).ok()?)),
            "status" => Some(TopicKind::Status(DeviceId::parse(rest).ok()?)),
            "data" => {
                let (device, chunk) = rest.rsplit_once('/')?;
                Some(TopicKind::Data(DeviceId::parse(device).ok()?, parse_chunk_id(chunk)?))
            }
            _ => None,
        }
    }
}

/// Chunk ids are decimal, start at 1 and have no leading zeros.
fn parse_chunk_id(text: &str) -> Option<u32> {
    if text.is_empty() || text.starts_with('0') || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(s: &str) -> DeviceId {
        DeviceId::parse(s).unwrap()
    }

    #[test]
    fn builds_the_documented_topics() {
        let t = Topics::default();
        assert_eq!(t.cmd(&dev("dev-07")), "/fota/cmd/dev-07");
        assert_eq!(t.cmd_resp(&dev("dev-07")), "/fota/cmd_resp/dev-07");
        assert_eq!(t.data(&dev("dev-07"), 1), "/fota/data/dev-07/1");
        assert_eq!(t.data(&dev("d"), 4_000_000_000), "/fota/data/d/4000000000");
        assert_eq!(t.cmd_resp_filter(), "/fota/cmd_resp/+");
        assert_eq!(t.cmd_filter(), "/fota/cmd/+");
        assert_eq!(t.probe("rocky-h/1+#"), "/fota/cmd/$probe-rocky-h_1__");
    }

    #[test]
    fn a_probe_topic_is_never_a_device_topic() {
        let t = Topics::default();
        assert_eq!(t.parse(&t.probe("rocky-a")), Some(TopicKind::Probe("rocky-a".into())));
        assert_eq!(t.parse("/fota/cmd/$probe-a/b"), None);
        assert_eq!(t.parse("/fota/cmd/$other"), None);
    }

    #[test]
    fn prefix_is_configurable_and_normalised() {
        let t = Topics::new("site/a/").unwrap();
        assert_eq!(t.cmd(&dev("x")), "site/a/cmd/x");
        assert!(Topics::new("a/+/b").is_err());
        assert!(Topics::new("a/#").is_err());
    }

    #[test]
    fn parses_its_own_topics_and_rejects_others() {
        let t = Topics::default();
        assert_eq!(t.parse("/fota/cmd/dev-07"), Some(TopicKind::Cmd(dev("dev-07"))));
        assert_eq!(t.parse("/fota/cmd_resp/dev-07"), Some(TopicKind::CmdResp(dev("dev-07"))));
        assert_eq!(t.parse("/fota/data/dev-07/17"), Some(TopicKind::Data(dev("dev-07"), 17)));
        for bad in [
            "/fota/data/dev-07/0",
            "/fota/data/dev-07/017",
            "/fota/data/dev-07/x",
            "/fota/data/dev-07/99999999999",
            "/fota/cmd/a/b",
            "/fota/cmd/",
            "/fota/other/dev",
            "/fotax/cmd/dev",
            "fota/cmd/dev",
            "/fota/cmd_resp/$dev",
        ] {
            assert_eq!(t.parse(bad), None, "{bad}");
        }
    }
}
