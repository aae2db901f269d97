//! One broker session in either protocol version behind one small interface, so the messenger
//! and the driver are written once. rumqttc has a separate client for MQTT 5 (`rumqttc::v5`);
//! the differences that matter to Rocky are the CONNECT properties (the broker is told the
//! largest packet Rocky accepts), retained messages (never forwarded to Rocky under 5) and how
//! failures are reported.

use bytes::Bytes;
use rumqttc::QoS;

use super::failure::{self, Failure};
use super::{BrokerConnection, MAX_INCOMING_V5, Protocol};

/// A topic filter to subscribe to, and whether the broker's retained messages on it are wanted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub topic: String,
    pub retained: bool,
}

/// What the broker sent that Rocky cares about.
#[derive(Debug)]
pub enum Incoming {
    /// The broker accepted the session; under MQTT 5 it may say how many unacknowledged
    /// publishes it takes from Rocky (its receive maximum), which then caps Rocky's window.
    ConnAck {
        receive_maximum: Option<u16>,
        /// The largest packet the broker accepts from Rocky (MQTT 5 only).
        maximum_packet_size: Option<u32>,
    },
    /// The answer to a subscription, one result per filter in the order asked: `Err` with the
    /// broker's refusal in words.
    SubAck(Vec<Result<(), String>>),
    Publish {
        topic: String,
        payload: Bytes,
        qos: u8,
    },
    /// The broker acknowledged publish `pkid`; under MQTT 5 it may have refused it, in words.
    PubAck {
        pkid: u16,
        refused: Option<String>,
    },
    /// A publish went out under packet id `pkid` (publishes go out in the order queued).
    Sent(u16),
    /// Rocky's DISCONNECT went out (the end of a goodbye).
    DisconnectSent,
    /// Anything else (pings, outgoing notices).
    Other,
}

/// The sending half, cheap to clone; the driver publishes through it.
#[derive(Clone)]
pub enum Publisher {
    V311(rumqttc::AsyncClient),
    V5(rumqttc::v5::AsyncClient),
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::V311(_) => "Publisher(MQTT 3.1.1)",
            Self::V5(_) => "Publisher(MQTT 5)",
        })
    }
}

impl Publisher {
    /// Queues a QoS 1 publish; fails only when the session has ended.
    pub async fn publish(&self, topic: String, payload: Bytes) -> Result<(), String> {
        match self {
            Self::V311(client) => {
                client.publish_bytes(topic, QoS::AtLeastOnce, false, payload).await.map_err(|e| e.to_string())
            }
            Self::V5(client) => client
                .publish_bytes(topic, rumqttc::v5::mqttbytes::QoS::AtLeastOnce, false, payload)
                .await
                .map_err(|e| e.to_string()),
        }
    }

    /// Subscribes to `filters` at QoS 1 in one SUBSCRIBE (its SUBACK answers each in order).
    /// Under MQTT 5 retained messages are forwarded only for a filter that asks for them (a
    /// device's status is retained on purpose); for the others a message is news or nothing,
    /// and a retained one left on the broker could only be stale or hostile.
    pub async fn subscribe(&self, filters: &[Filter]) -> Result<(), String> {
        match self {
            Self::V311(client) => client
                .subscribe_many(
                    filters.iter().map(|f| rumqttc::SubscribeFilter::new(f.topic.clone(), QoS::AtLeastOnce)),
                )
                .await
                .map_err(|e| e.to_string()),
            Self::V5(client) => {
                use rumqttc::v5::mqttbytes::v5::RetainForwardRule;
                let filters = filters.iter().map(|filter| {
                    let mut f = rumqttc::v5::mqttbytes::v5::Filter::new(
                        filter.topic.clone(),
                        rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
                    );
                    f.retain_forward_rule = if filter.retained {
                        RetainForwardRule::OnEverySubscribe
                    } else {
                        RetainForwardRule::Never
                    };
                    f
                });
                client.subscribe_many(filters).await.map_err(|e| e.to_string())
            }
        }
    }

    pub async fn disconnect(&self) -> Result<(), String> {
        match self {
            Self::V311(client) => client.disconnect().await.map_err(|e| e.to_string()),
            Self::V5(client) => client.disconnect().await.map_err(|e| e.to_string()),
        }
    }

    pub fn try_disconnect(&self) -> Result<(), String> {
        match self {
            Self::V311(client) => client.try_disconnect().map_err(|e| e.to_string()),
            Self::V5(client) => client.try_disconnect().map_err(|e| e.to_string()),
        }
    }
}

/// The receiving half: owns the connection and reconnects when polled after a failure.
pub enum Session {
    V311(Box<rumqttc::EventLoop>),
    V5(Box<rumqttc::v5::EventLoop>),
}

impl Session {
    /// A session for `connection` in `protocol`, with room for `capacity` queued requests and
    /// up to `inflight` unacknowledged publishes.
    pub fn new(
        connection: &BrokerConnection,
        protocol: Protocol,
        capacity: usize,
        inflight: u16,
    ) -> (Publisher, Self) {
        match protocol {
            Protocol::V311 => {
                let (mut options, network) = connection.v311_options(&connection.client_id);
                options.set_inflight(inflight.max(1));
                let (client, mut eventloop) = rumqttc::AsyncClient::new(options, capacity);
                eventloop.set_network_options(network);
                (Publisher::V311(client), Self::V311(Box::new(eventloop)))
            }
            Protocol::V5 => {
                let mut options = connection.v5_options(&connection.client_id, MAX_INCOMING_V5);
                options.set_outgoing_inflight_upper_limit(inflight.max(1));
                let (client, eventloop) = rumqttc::v5::AsyncClient::new(options, capacity);
                (Publisher::V5(client), Self::V5(Box::new(eventloop)))
            }
        }
    }

    /// The next thing that happened, or why the connection failed (polling again reconnects).
    pub async fn poll(&mut self, connection: &BrokerConnection) -> Result<Incoming, Failure> {
        match self {
            Self::V311(eventloop) => match eventloop.poll().await {
                Ok(event) => Ok(from_v311_event(event)),
                Err(e) => Err(failure::from_v311(&e, connection)),
            },
            Self::V5(eventloop) => match eventloop.poll().await {
                Ok(event) => Ok(from_v5_event(event)),
                Err(e) => Err(failure::from_v5(&e, connection)),
            },
        }
    }
}

fn from_v311_event(event: rumqttc::Event) -> Incoming {
    use rumqttc::{Event, Packet, SubscribeReasonCode};
    match event {
        Event::Incoming(Packet::ConnAck(_)) => {
            Incoming::ConnAck { receive_maximum: None, maximum_packet_size: None }
        }
        Event::Incoming(Packet::SubAck(ack)) => Incoming::SubAck(
            ack.return_codes
                .iter()
                .map(|code| match code {
                    SubscribeReasonCode::Failure => {
                        Err("the broker refused the subscription (check its ACL)".to_owned())
                    }
                    SubscribeReasonCode::Success(_) => Ok(()),
                })
                .collect(),
        ),
        Event::Incoming(Packet::Publish(p)) => {
            Incoming::Publish { topic: p.topic, payload: p.payload, qos: p.qos as u8 }
        }
        Event::Incoming(Packet::PubAck(ack)) => Incoming::PubAck { pkid: ack.pkid, refused: None },
        Event::Outgoing(rumqttc::Outgoing::Publish(pkid)) => Incoming::Sent(pkid),
        Event::Outgoing(rumqttc::Outgoing::Disconnect) => Incoming::DisconnectSent,
        _ => Incoming::Other,
    }
}

fn from_v5_event(event: rumqttc::v5::Event) -> Incoming {
    use rumqttc::v5::Event;
    use rumqttc::v5::mqttbytes::v5::{Packet, SubscribeReasonCode};
    match event {
        Event::Incoming(Packet::ConnAck(ack)) => Incoming::ConnAck {
            receive_maximum: ack.properties.as_ref().and_then(|p| p.receive_max),
            maximum_packet_size: ack.properties.as_ref().and_then(|p| p.max_packet_size),
        },
        Event::Incoming(Packet::SubAck(ack)) => {
            let why =
                ack.properties.and_then(|p| p.reason_string).map(|r| format!(": {r}")).unwrap_or_default();
            Incoming::SubAck(
                ack.return_codes
                    .iter()
                    .map(|code| match code {
                        SubscribeReasonCode::Success(_) => Ok(()),
                        code => {
                            Err(format!("the broker refused the subscription ({code:?}{why}; check its ACL)"))
                        }
                    })
                    .collect(),
            )
        }
        Event::Incoming(Packet::Publish(p)) => Incoming::Publish {
            // A topic that is not UTF-8 cannot match Rocky's topics; keep it readable anyway.
            topic: String::from_utf8_lossy(&p.topic).into_owned(),
            payload: p.payload,
            qos: p.qos as u8,
        },
        Event::Incoming(Packet::PubAck(ack)) => Incoming::PubAck { pkid: ack.pkid, refused: refusal(&ack) },
        Event::Outgoing(rumqttc::Outgoing::Publish(pkid)) => Incoming::Sent(pkid),
        Event::Outgoing(rumqttc::Outgoing::Disconnect) => Incoming::DisconnectSent,
        _ => Incoming::Other,
    }
}

/// Why an MQTT 5 broker refused a publish for good, in words (`None`: it took it, or refused
/// it for a reason that passes — a quota, a momentary error — which the job's own timeouts and
/// resends ride out, so only the log hears of it).
fn refusal(ack: &rumqttc::v5::mqttbytes::v5::PubAck) -> Option<String> {
    use rumqttc::v5::mqttbytes::v5::PubAckReason as Why;
    let words = match ack.reason {
        Why::Success | Why::NoMatchingSubscribers => return None,
        Why::NotAuthorized => "not authorized",
        Why::TopicNameInvalid => "the topic name is invalid",
        Why::PayloadFormatInvalid => "the payload format is invalid",
        passing => {
            tracing::debug!(reason = ?passing, pkid = ack.pkid, "the broker did not take a publish this time");
            return None;
        }
    };
    let said = ack.properties.as_ref().and_then(|p| p.reason_string.as_deref());
    Some(match said {
        Some(text) => {
            format!("{words} ({})", text.chars().filter(|c| !c.is_control()).take(200).collect::<String>())
        }
        None => words.to_owned(),
    })
}
