//! `[[notify]]` in the config: where notifications go, which events, and the file holding the
//! secret their signature is made with. The URL is the operator's; its path and query may hold
//! a token (chat webhooks do), so it is shown only as `scheme://host:port/…`.

use serde::{Deserialize, Serialize};

/// The most receivers a config may name.
pub const MAX_RECEIVERS: usize = 16;

/// One receiver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifySection {
    /// `http://` or `https://`; every notification is POSTed here.
    pub url: String,
    /// Which events: `rollout` (every change of a rollout's state), `job_failed`, `rolled_back`.
    #[serde(default = "every_event")]
    pub events: Vec<String>,
    /// The secret the `X-Rocky-Signature` HMAC is made with, read from this file.
    pub secret_file: String,
}

/// What a receiver can ask to hear of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A rollout changed state (started, paused, a wave passed, succeeded, aborted, …).
    Rollout,
    /// A job ended refused, failed or timed out.
    JobFailed,
    /// A device booted another image than the one its job sent (the confirm extension).
    RolledBack,
}

impl EventKind {
    pub const ALL: [EventKind; 3] = [EventKind::Rollout, EventKind::JobFailed, EventKind::RolledBack];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rollout => "rollout",
            Self::JobFailed => "job_failed",
            Self::RolledBack => "rolled_back",
        }
    }

    pub fn parse(word: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == word)
    }
}

fn every_event() -> Vec<String> {
    EventKind::ALL.iter().map(|kind| kind.as_str().to_owned()).collect()
}

impl NotifySection {
    /// The URL as messages show it: scheme, host and port only.
    pub fn shown_url(&self) -> String {
        match reqwest::Url::parse(&self.url) {
            Ok(url) => {
                let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
                format!("{}://{}{port}/…", url.scheme(), url.host_str().unwrap_or("?"))
            }
            Err(_) => "(not a URL)".to_owned(),
        }
    }

    /// The events asked for (checked by [`check`]).
    pub fn kinds(&self) -> Vec<EventKind> {
        self.events.iter().filter_map(|word| EventKind::parse(word)).collect()
    }
}

/// Every receiver's fields, by its place (`notify[1].url: …`); secrets are read at start.
pub fn check(receivers: &[NotifySection]) -> Result<(), String> {
    if receivers.len() > MAX_RECEIVERS {
        return Err(format!("at most {MAX_RECEIVERS} [[notify]] receivers, got {}", receivers.len()));
    }
    for (index, receiver) in receivers.iter().enumerate() {
        let at = |field: &str, reason: String| format!("notify[{index}].{field}: {reason}");
        let url = reqwest::Url::parse(&receiver.url)
            .map_err(|e| at("url", format!("not a URL ({e}); write http://HOST:PORT/PATH or https://…")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(at("url", format!("{} is not an http:// or https:// URL", receiver.shown_url())));
        }
        if receiver.events.is_empty() {
            return Err(at("events", "name at least one of rollout, job_failed, rolled_back".into()));
        }
        for word in &receiver.events {
            if EventKind::parse(word).is_none() {
                return Err(at("events", format!("{word:?} is not one of rollout, job_failed, rolled_back")));
            }
        }
        if receiver.secret_file.trim().is_empty() {
            return Err(at("secret_file", "required: the file holding the signature's secret".into()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receiver(url: &str, events: &[&str], secret_file: &str) -> NotifySection {
        NotifySection {
            url: url.into(),
            events: events.iter().map(|e| e.to_string()).collect(),
            secret_file: secret_file.into(),
        }
    }

    #[test]
    fn each_field_is_checked_by_its_place() {
        assert!(check(&[receiver("https://hooks.example/T0/secret-path", &["rollout"], "/s")]).is_ok());
        let bad = [
            (receiver("ftp://x/y", &["rollout"], "/s"), "notify[0].url"),
            (receiver("not a url", &["rollout"], "/s"), "notify[0].url"),
            (receiver("http://x/", &[], "/s"), "notify[0].events"),
            (receiver("http://x/", &["job_done"], "/s"), "\"job_done\""),
            (receiver("http://x/", &["rollout"], " "), "notify[0].secret_file"),
        ];
        for (receiver, expected) in bad {
            let error = check(&[receiver]).unwrap_err();
            assert!(error.contains(expected), "{error}");
        }
        let many = vec![receiver("http://x/", &["rollout"], "/s"); MAX_RECEIVERS + 1];
        assert!(check(&many).is_err());
    }

    #[test]
    fn the_url_is_shown_without_its_path_or_credentials() {
        let r = receiver("https://user:pw@hooks.example:8443/services/T0/B0/token?x=1", &["rollout"], "/s");
        assert_eq!(r.shown_url(), "https://hooks.example:8443/…");
    }
}
