//! Reading a server's `/events`: each event (framed by [`crate::api::Framer`], typed by
//! [`WireEvent`]) turned back into what the in-process runtime would have given the console.

use std::sync::Arc;

use crate::api::WireEvent;
use crate::clock::Clock;
use crate::engine::JobId;
use crate::service::Envelope;
use crate::snapshot::JobSnapshot;

/// One event of the server's stream, decoded.
#[derive(Debug)]
pub enum Item {
    Job(Box<JobSnapshot>),
    JobRemoved(JobId),
    JobsReset,
    JobsSynced,
    Event(Arc<Envelope>),
    Missed(u64),
}

/// Decodes one event; `Ok(None)` for an event this console does not know (a newer server).
pub fn decode(name: &str, data: &str, clock: &Clock) -> Result<Option<Item>, String> {
    let Some((event, stamp)) = WireEvent::from_sse(name, data)? else { return Ok(None) };
    Ok(Some(match event {
        WireEvent::Job(job) => Item::Job(Box::new(Arc::unwrap_or_clone(job))),
        WireEvent::JobRemoved { id } => Item::JobRemoved(id),
        WireEvent::JobsReset {} => Item::JobsReset,
        WireEvent::JobsSynced {} => Item::JobsSynced,
        WireEvent::Missed { missed } => Item::Missed(missed),
        other => match other.into_runtime(clock) {
            Some(event) => Item::Event(Arc::new(Envelope::new(stamp.seq, stamp.when(), event))),
            None => return Ok(None),
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::RuntimeEvent;

    #[test]
    fn frames_split_across_reads_and_unknown_events_are_skipped() {
        let mut framer = crate::api::Framer::default();
        assert!(framer.push(b"event: jobs_reset\ndata: {}\n").unwrap().is_empty());
        let events = framer.push(b"\nevent: job_removed\ndata: {\"id\":7}\n\n: keep-alive\n\n").unwrap();
        assert_eq!(
            events,
            vec![("jobs_reset".into(), "{}".into()), ("job_removed".into(), "{\"id\":7}".into())]
        );
        let clock = Clock::new();
        assert!(
            matches!(decode("job_removed", "{\"id\":7}", &clock), Ok(Some(Item::JobRemoved(id))) if id == JobId::new(7))
        );
        assert!(matches!(decode("from_the_future", "{}", &clock), Ok(None)));
        assert!(decode("job", "{not json", &clock).is_err());
        let state =
            r#"{"job":3,"device":"dev-1","from":"queued","to":"requesting","detail":null,"seq":9,"time":1}"#;
        let Ok(Some(Item::Event(envelope))) = decode("job_state", state, &clock) else { panic!("decoded") };
        assert_eq!(envelope.seq, 9);
        let traffic = r#"{"direction":"in","topic":"/fota/cmd_resp/d","qos":1,"size":4,"text":"t","device":"d",
            "job":42,"decode_error":false,"chunk":null,"payload":"82182a02"}"#;
        let Ok(Some(Item::Event(envelope))) = decode("traffic", traffic, &clock) else { panic!("decoded") };
        let RuntimeEvent::Traffic(t) = &envelope.event else { panic!("traffic") };
        assert_eq!(&t.payload[..], &[0x82, 0x18, 0x2a, 0x02]);
    }
}
