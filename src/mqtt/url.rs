//! Broker URLs as users write them: `mqtt://host:port` (plain TCP, port 1883 by default) and
//! `mqtts://host:port` (TLS, port 8883 by default).

use std::fmt;

/// How bytes reach the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain TCP.
    Mqtt,
    /// TLS over TCP.
    Mqtts,
}

impl Scheme {
    pub fn default_port(self) -> u16 {
        match self {
            Self::Mqtt => 1883,
            Self::Mqtts => 8883,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Mqtt => "mqtt",
            Self::Mqtts => "mqtts",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    pub scheme: Scheme,
    /// A DNS name or an IP address (IPv6 without brackets). With TLS this is also the name the
    /// broker's certificate must be valid for.
    pub host: String,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad broker URL {url:?}: {reason} (expected mqtt://HOST:PORT or mqtts://HOST:PORT)")]
pub struct BrokerUrlError {
    url: String,
    reason: &'static str,
}

impl BrokerUrl {
    /// Accepts `mqtt://`, `mqtts://`, `tcp://`, `ssl://` and `tls://` URLs, and `host:port` or
    /// `host` alone (plain TCP); `[::1]:1883` too.
    pub fn parse(url: &str) -> Result<Self, BrokerUrlError> {
        let err = |reason| BrokerUrlError { url: redact_userinfo(url), reason };
        if url.contains('@') {
            return Err(err(
                "user names and passwords do not go in the URL: use mqtt.username and mqtt.password_file",
            ));
        }
        let (scheme, rest) = match url.split_once("://") {
            Some(("mqtt" | "tcp", rest)) => (Scheme::Mqtt, rest),
            Some(("mqtts" | "ssl" | "tls", rest)) => (Scheme::Mqtts, rest),
            Some(("ws" | "wss", _)) => return Err(err("websocket transports are not supported")),
            Some(_) => return Err(err("the scheme must be mqtt:// or mqtts://")),
            None => (Scheme::Mqtt, url),
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(|| err("unclosed '['"))?;
            match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None if after.is_empty() => (host, None),
                None => return Err(err("unexpected text after ']'")),
            }
        } else {
            match rest.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (rest, None),
            }
        };
        if host.is_empty() || host.contains(['/', '@', ' ', '?', '#']) {
            return Err(err("missing or malformed host"));
        }
        let port = match port {
            Some(p) => {
                p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| err("the port must be 1 to 65535"))?
            }
            None => scheme.default_port(),
        };
        Ok(Self { scheme, host: host.to_owned(), port })
    }

    /// Plain MQTT on 127.0.0.1.
    pub fn local(port: u16) -> Self {
        Self { scheme: Scheme::Mqtt, host: "127.0.0.1".to_owned(), port }
    }
}

/// The URL with anything before an `@` (where a password could be) replaced, so an error can
/// show the URL.
fn redact_userinfo(url: &str) -> String {
    let Some(at) = url.rfind('@') else { return url.to_owned() };
    let start = url.find("://").map_or(0, |i| i + 3);
    if at < start {
        return url.to_owned();
    }
    format!("{}…{}", &url[..start], &url[at..])
}

impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = self.scheme.as_str();
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

impl std::str::FromStr for BrokerUrl {
    type Err = BrokerUrlError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_usual_forms() {
        assert_eq!(BrokerUrl::parse("mqtt://127.0.0.1:1883").unwrap(), BrokerUrl::local(1883));
        assert_eq!(BrokerUrl::parse("localhost").unwrap().port, 1883);
        let tcp = BrokerUrl::parse("tcp://h:99/").unwrap();
        assert_eq!((tcp.scheme, tcp.host.as_str(), tcp.port), (Scheme::Mqtt, "h", 99));
        let v6 = BrokerUrl::parse("mqtt://[::1]:1884").unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 1884));
        assert_eq!(v6.to_string(), "mqtt://[::1]:1884");
    }

    #[test]
    fn mqtts_means_tls_on_8883() {
        let url = BrokerUrl::parse("mqtts://broker.example.com").unwrap();
        assert_eq!((url.scheme, url.port), (Scheme::Mqtts, 8883));
        assert_eq!(url.to_string(), "mqtts://broker.example.com:8883");
        assert_eq!(BrokerUrl::parse("ssl://h:1").unwrap().scheme, Scheme::Mqtts);
    }

    #[test]
    fn rejects_what_it_cannot_connect_to() {
        for bad in
            ["http://h", "ws://h:80", "mqtt://:1883", "mqtt://h:0", "mqtt://h:99999", "mqtt://h:x", "[::1"]
        {
            assert!(BrokerUrl::parse(bad).is_err(), "{bad}");
        }
        let message = BrokerUrl::parse("mqtt://h:0").unwrap_err().to_string();
        assert!(message.contains("1 to 65535"), "{message}");
        let message = BrokerUrl::parse("mqtts://rocky:hunter2@broker:8883").unwrap_err().to_string();
        assert!(!message.contains("hunter2") && message.contains("mqtt.password_file"), "{message}");
        assert!(message.contains("mqtts://…@broker:8883"), "{message}");
    }
}
