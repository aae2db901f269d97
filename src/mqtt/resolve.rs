//! Whether the broker's host name exists, asked once at start. A name the resolver says does
//! not exist (NXDOMAIN) is a typo that no amount of retrying mends, so the command stops with
//! the name and the setting; a resolver that cannot answer right now (no network yet, a
//! SERVFAIL, a timeout) is left to the reconnect loop, which keeps trying and says why.

use std::time::Duration;

use super::BrokerUrl;

/// How long the start-up lookup may take before Rocky goes on and lets the reconnect loop try.
const LOOKUP_WAIT: Duration = Duration::from_secs(10);

/// What the resolver said about the broker's host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostLookup {
    /// An address literal or a name with at least one address.
    Found,
    /// The resolver answered that the name does not exist or has no address: permanent.
    NoSuchHost,
    /// The resolver could not answer now (its words); worth trying again later.
    NotNow(String),
}

/// Asks the system resolver (hosts file, DNS, whatever it is set up to use) about `url`'s host,
/// off the async threads, for at most [`LOOKUP_WAIT`].
pub async fn look_up_host(url: &BrokerUrl) -> HostLookup {
    if url.host.parse::<std::net::IpAddr>().is_ok() {
        return HostLookup::Found;
    }
    let host = url.host.clone();
    let lookup = tokio::task::spawn_blocking(move || lookup_blocking(&host));
    match tokio::time::timeout(LOOKUP_WAIT, lookup).await {
        Ok(Ok(found)) => found,
        Ok(Err(join)) => HostLookup::NotNow(format!("the lookup did not finish: {join}")),
        Err(_) => {
            HostLookup::NotNow(format!("no answer from the resolver within {} s", LOOKUP_WAIT.as_secs()))
        }
    }
}

fn lookup_blocking(host: &str) -> HostLookup {
    use dns_lookup::LookupErrorKind as Kind;
    match dns_lookup::getaddrinfo(Some(host), None, None) {
        Ok(mut addresses) => match addresses.next() {
            Some(Ok(_)) => HostLookup::Found,
            Some(Err(e)) => HostLookup::NotNow(e.to_string()),
            None => HostLookup::NoSuchHost,
        },
        Err(e) => match e.kind() {
            Kind::NoName | Kind::NoData => HostLookup::NoSuchHost,
            _ => HostLookup::NotNow(std::io::Error::from(e).to_string()),
        },
    }
}

/// The start-up check: an error naming the host and the setting when the name does not exist,
/// nothing otherwise (a transient failure is logged and left to the reconnect loop).
pub async fn require_known_host(url: &BrokerUrl) -> Result<(), UnknownHost> {
    match look_up_host(url).await {
        HostLookup::Found => Ok(()),
        HostLookup::NoSuchHost => Err(UnknownHost { host: url.host.clone() }),
        HostLookup::NotNow(why) => {
            tracing::warn!(host = %url.host, %why, "cannot look up the broker's host name yet; will keep trying");
            Ok(())
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the broker's host name {host:?} does not exist (the resolver answered: no such host); \
     check mqtt.url or --broker"
)]
pub struct UnknownHost {
    host: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn address_literals_and_the_hosts_file_need_no_dns() {
        // These never leave the machine: a literal is not looked up, localhost is in /etc/hosts.
        assert_eq!(look_up_host(&BrokerUrl::local(1883)).await, HostLookup::Found);
        assert_eq!(look_up_host(&BrokerUrl::parse("mqtt://[::1]:1883").unwrap()).await, HostLookup::Found);
        assert_eq!(look_up_host(&BrokerUrl::parse("localhost").unwrap()).await, HostLookup::Found);
    }

    #[test]
    fn the_error_names_the_host_and_the_settings() {
        let text = UnknownHost { host: "nonsense".into() }.to_string();
        assert!(text.contains("\"nonsense\" does not exist"), "{text}");
        assert!(text.contains("mqtt.url") && text.contains("--broker"), "{text}");
    }
}
