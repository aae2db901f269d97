//! The baseline: N QoS 1 publishes of the chunk size from a bare rumqttc publisher to a bare
//! subscriber through the same broker, with nothing of Rocky in between.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use rumqttc::{AsyncClient, Event, MqttOptions, NetworkOptions, Packet, QoS};

use rocky::runtime::{BrokerUrl, MAX_PACKET_BYTES};

pub struct RawRound {
    pub wall: Duration,
    pub messages: usize,
}

impl RawRound {
    pub fn msgs_per_s(&self) -> f64 {
        self.messages as f64 / self.wall.as_secs_f64()
    }

    pub fn line(&self) -> String {
        format!(
            "{} publishes in {:.2} s = {:.0} msgs/s",
            self.messages,
            self.wall.as_secs_f64(),
            self.msgs_per_s()
        )
    }
}

fn client(broker: &BrokerUrl, id: &str) -> (AsyncClient, rumqttc::EventLoop) {
    let mut options = MqttOptions::new(id, &broker.host, broker.port);
    options
        .set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES)
        .set_inflight(128)
        .set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(options, 256);
    let mut network = NetworkOptions::new();
    network.set_tcp_nodelay(true);
    eventloop.set_network_options(network);
    (client, eventloop)
}

pub async fn run_round(broker: &BrokerUrl, messages: usize, size: usize) -> anyhow::Result<RawRound> {
    let pid = std::process::id();
    let topic = format!("rocky-bench-raw/{pid}");
    let (sub, mut sub_loop) = client(broker, &format!("rocky-bench-sub-{pid}"));
    sub.subscribe(format!("{topic}/+"), QoS::AtLeastOnce).await.context("subscribe")?;
    // Wait for the subscription to be in place before the clock starts.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let event = tokio::time::timeout_at(deadline.into(), sub_loop.poll())
            .await
            .context("subscriber connect")??;
        if matches!(event, Event::Incoming(Packet::SubAck(_))) {
            break;
        }
    }
    let received = tokio::spawn(async move {
        let mut count = 0usize;
        while count < messages {
            match sub_loop.poll().await {
                Ok(Event::Incoming(Packet::Publish(_))) => count += 1,
                Ok(_) => {}
                Err(_) => return count,
            }
        }
        count
    });
    let (publisher, mut pub_loop) = client(broker, &format!("rocky-bench-pub-{pid}"));
    let driver = tokio::spawn(async move { while pub_loop.poll().await.is_ok() {} });
    let payload = Bytes::from(vec![0xa5u8; size]);
    let started = Instant::now();
    for n in 0..messages {
        publisher
            .publish_bytes(format!("{topic}/{}", n % 100), QoS::AtLeastOnce, false, payload.clone())
            .await?;
    }
    let got =
        tokio::time::timeout(Duration::from_secs(300), received).await.context("raw round timed out")??;
    let wall = started.elapsed();
    driver.abort();
    if got < messages {
        bail!("the raw subscriber received {got} of {messages} messages");
    }
    Ok(RawRound { wall, messages })
}
