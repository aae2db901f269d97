//! `mqtt://host:port` as users write it.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    pub host: String,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad broker URL {url:?}: {reason} (expected mqtt://HOST:PORT)")]
pub struct BrokerUrlError {
    url: String,
    reason: &'static str,
}

impl BrokerUrl {
    pub const DEFAULT_PORT: u16 = 1883;

    /// Accepts `mqtt://host:port`, `tcp://host:port`, `host:port` and `host`; `[::1]:1883` too.
    pub fn parse(url: &str) -> Result<Self, BrokerUrlError> {
        let err = |reason| BrokerUrlError { url: url.to_owned(), reason };
        let rest = match url.split_once("://") {
            Some(("mqtt" | "tcp", rest)) => rest,
            Some(_) => return Err(err("only mqtt:// is supported")),
            None => url,
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
        if host.is_empty() || host.contains(['/', '@', ' ']) {
            return Err(err("missing or malformed host"));
        }
        let port = match port {
            Some(p) => {
                p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| err("port must be 1..65535"))?
            }
            None => Self::DEFAULT_PORT,
        };
        Ok(Self { host: host.to_owned(), port })
    }

    pub fn local(port: u16) -> Self {
        Self { host: "127.0.0.1".to_owned(), port }
    }
}

impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "mqtt://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "mqtt://{}:{}", self.host, self.port)
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
        assert_eq!(BrokerUrl::parse("tcp://h:99/").unwrap(), BrokerUrl { host: "h".into(), port: 99 });
        let v6 = BrokerUrl::parse("mqtt://[::1]:1884").unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 1884));
        assert_eq!(v6.to_string(), "mqtt://[::1]:1884");
    }

    #[test]
    fn rejects_what_it_cannot_connect_to() {
        for bad in
            ["mqtts://h:1", "http://h", "mqtt://:1883", "mqtt://h:0", "mqtt://h:99999", "mqtt://h:x", "[::1"]
        {
            assert!(BrokerUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
