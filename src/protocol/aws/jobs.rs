//! The Jobs JSON of the AWS OTA profile: a device's `$next/get` and its execution updates
//! (decoded within bounds), and the execution Rocky sends on `notify-next` (encoded within the
//! agent's buffer).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};

/// The largest JSON taken from a device on a Jobs topic.
pub const MAX_JOBS_JSON: usize = 4096;
/// The most `statusDetails` entries an update may carry (AWS's own limit is 10).
pub const MAX_STATUS_DETAILS: usize = 10;
/// The longest `statusDetails` key and value, in bytes (AWS's limits: 128 and 1,024).
const MAX_DETAIL_KEY: usize = 128;
const MAX_DETAIL_VALUE: usize = 1024;
/// The longest client token taken (AWS's limit: 64).
const MAX_CLIENT_TOKEN: usize = 64;
/// The largest job message the agent takes: its buffer is 5,626 bytes.
pub const MAX_JOB_MESSAGE: usize = 5626;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobsError {
    #[error("{0} bytes of JSON, more than the {MAX_JOBS_JSON} taken")]
    TooLarge(usize),
    #[error("not the JSON expected: {0}")]
    Json(String),
    #[error("status {0:?} is not a job execution status")]
    Status(String),
    #[error("statusDetails: {0}")]
    Details(String),
    #[error("the job message would be {0} bytes, more than the agent's {MAX_JOB_MESSAGE}")]
    MessageTooLarge(usize),
}

/// A job execution's status, as the Jobs API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutionStatus {
    Queued,
    InProgress,
    Succeeded,
    Failed,
    Rejected,
    Removed,
    Canceled,
    TimedOut,
}

impl ExecutionStatus {
    pub const ALL: [ExecutionStatus; 8] = [
        Self::Queued,
        Self::InProgress,
        Self::Succeeded,
        Self::Failed,
        Self::Rejected,
        Self::Removed,
        Self::Canceled,
        Self::TimedOut,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "QUEUED",
            Self::InProgress => "IN_PROGRESS",
            Self::Succeeded => "SUCCEEDED",
            Self::Failed => "FAILED",
            Self::Rejected => "REJECTED",
            Self::Removed => "REMOVED",
            Self::Canceled => "CANCELED",
            Self::TimedOut => "TIMED_OUT",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == text)
    }
}

/// `$next/get`: the device asks for its next job; its client token, if it gave one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextGet {
    pub client_token: Option<String>,
}

/// `jobs/J/update`: what the device says of its job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionUpdate {
    pub status: ExecutionStatus,
    pub details: BTreeMap<String, String>,
}

/// What an update says of the transfer and the new image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// `receive: "k/n"`: k of n blocks in.
    Receiving { blocks: u32, of: u32 },
    /// `self_test: "ready"`: verified, rebooting into the new image.
    Rebooting,
    /// `self_test: "active"`: running the new image, testing it.
    SelfTest,
    /// Nothing the profile reads.
    Other,
}

impl ExecutionUpdate {
    /// What the details say of the transfer (`receive`) or the new image (`self_test`).
    pub fn progress(&self) -> Progress {
        if let Some(text) = self.details.get("receive")
            && let Some((blocks, of)) = text.split_once('/')
            && let (Ok(blocks), Ok(of)) = (blocks.trim().parse(), of.trim().parse())
        {
            return Progress::Receiving { blocks, of };
        }
        match self.details.get("self_test").map(String::as_str) {
            Some("ready") => Progress::Rebooting,
            Some("active") => Progress::SelfTest,
            _ => Progress::Other,
        }
    }
}

fn bounded(payload: &[u8]) -> Result<Value, JobsError> {
    if payload.len() > MAX_JOBS_JSON {
        return Err(JobsError::TooLarge(payload.len()));
    }
    serde_json::from_slice(payload).map_err(|e| JobsError::Json(e.to_string()))
}

/// Decodes a `$next/get` request (an empty payload asks all the same).
pub fn decode_next_get(payload: &[u8]) -> Result<NextGet, JobsError> {
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Ok(NextGet { client_token: None });
    }
    let value = bounded(payload)?;
    let Value::Object(fields) = value else { return Err(JobsError::Json("not an object".into())) };
    let client_token = match fields.get("clientToken") {
        None | Some(Value::Null) => None,
        Some(Value::String(token)) if token.len() <= MAX_CLIENT_TOKEN => Some(token.clone()),
        Some(_) => {
            return Err(JobsError::Json(format!(
                "clientToken is not a string of at most {MAX_CLIENT_TOKEN} bytes"
            )));
        }
    };
    Ok(NextGet { client_token })
}

#[derive(Deserialize)]
struct UpdateWire {
    status: String,
    #[serde(default, rename = "statusDetails")]
    status_details: Option<BTreeMap<String, Value>>,
}

/// Decodes an execution update.
pub fn decode_update(payload: &[u8]) -> Result<ExecutionUpdate, JobsError> {
    let value = bounded(payload)?;
    let wire: UpdateWire = serde_json::from_value(value).map_err(|e| JobsError::Json(e.to_string()))?;
    let status =
        ExecutionStatus::parse(&wire.status).ok_or_else(|| JobsError::Status(wire.status.clone()))?;
    let mut details = BTreeMap::new();
    let given = wire.status_details.unwrap_or_default();
    if given.len() > MAX_STATUS_DETAILS {
        return Err(JobsError::Details(format!("{} entries, more than {MAX_STATUS_DETAILS}", given.len())));
    }
    for (key, value) in given {
        let Value::String(value) = value else {
            return Err(JobsError::Details(format!("{key:?} is not a string")));
        };
        if key.is_empty() || key.len() > MAX_DETAIL_KEY || value.len() > MAX_DETAIL_VALUE {
            return Err(JobsError::Details(format!(
                "keys are 1 to {MAX_DETAIL_KEY} bytes and values at most {MAX_DETAIL_VALUE}"
            )));
        }
        details.insert(key, value);
    }
    Ok(ExecutionUpdate { status, details })
}

/// The job an AWS device is sent: one file, from one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobDocument {
    pub job_id: String,
    pub stream: String,
    /// Where the device writes the image (`[aws_ota] filepath`).
    pub file_path: String,
    pub file_size: u64,
    pub file_id: u32,
    /// The path on the device of the certificate that verifies the signature.
    pub cert_file: String,
    /// Base64 of the DER ECDSA P-256 signature over the image's SHA-256.
    pub signature: String,
}

/// The execution on `notify-next` (also the answer to `$next/get`): the job, its status and
/// version, and the details the device last sent (how a rebooted device knows it is in self
/// test). Times are Unix seconds. Refused when larger than the agent's buffer.
#[allow(clippy::too_many_arguments)] // each is one field of the execution, named
pub fn encode_execution(
    timestamp_s: u64,
    document: &JobDocument,
    status: ExecutionStatus,
    queued_at_s: u64,
    last_updated_at_s: u64,
    version: u64,
    details: Option<&BTreeMap<String, String>>,
) -> Result<Vec<u8>, JobsError> {
    let mut execution = json!({
        "jobId": document.job_id,
        "status": status.as_str(),
        "queuedAt": queued_at_s,
        "lastUpdatedAt": last_updated_at_s,
        "versionNumber": version,
        "executionNumber": 1,
        "jobDocument": {"afr_ota": {
            "protocols": ["MQTT"],
            "streamname": document.stream,
            "files": [{
                "filepath": document.file_path,
                "filesize": document.file_size,
                "fileid": document.file_id,
                "certfile": document.cert_file,
                "sig-sha256-ecdsa": document.signature,
            }],
        }},
    });
    if let (Some(details), Value::Object(fields)) = (details.filter(|d| !d.is_empty()), &mut execution) {
        fields.insert("statusDetails".into(), json!(details));
    }
    let bytes = serde_json::to_vec(&json!({"timestamp": timestamp_s, "execution": execution}))
        .map_err(|e| JobsError::Json(e.to_string()))?;
    if bytes.len() > MAX_JOB_MESSAGE {
        return Err(JobsError::MessageTooLarge(bytes.len()));
    }
    Ok(bytes)
}

/// `{"timestamp": …}` alone: no job for the device.
pub fn encode_no_job(timestamp_s: u64) -> Vec<u8> {
    format!("{{\"timestamp\":{timestamp_s}}}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document() -> JobDocument {
        JobDocument {
            job_id: "AFR_OTA-smoke-job-1".into(),
            stream: "AFR_OTA-smoke-stream-1".into(),
            file_path: "received_firmware.bin".into(),
            file_size: 18000,
            file_id: 0,
            cert_file: "certs/codesign.crt".into(),
            signature: "MEUCIEHOoCT+Sw1XrAMLWPagyCA39AINYtD3ImpDupp5psyZAiEAjzc+cYmMTr9hETYKfQJrzxda2JfLFo80Cvrnib0iNoY=".into(),
        }
    }

    #[test]
    fn the_transcripts_device_messages_decode() {
        let asked = decode_next_get(br#"{"clientToken":":awsota-smoke-thing-1"}"#).unwrap();
        assert_eq!(asked.client_token.as_deref(), Some(":awsota-smoke-thing-1"));
        assert_eq!(decode_next_get(b"").unwrap().client_token, None);
        let update = |text: &str| decode_update(text.as_bytes()).unwrap();
        let receiving = update(r#"{"status":"IN_PROGRESS","statusDetails":{"receive":"1/5"}}"#);
        assert_eq!(receiving.status, ExecutionStatus::InProgress);
        assert_eq!(receiving.progress(), Progress::Receiving { blocks: 1, of: 5 });
        let ready = update(
            r#"{"status":"IN_PROGRESS","statusDetails":{"self_test":"ready","updatedBy":"0x00090002"}}"#,
        );
        assert_eq!(ready.progress(), Progress::Rebooting);
        let active = update(
            r#"{"status":"IN_PROGRESS","statusDetails":{"self_test":"active","updatedBy":"0x00090003"}}"#,
        );
        assert_eq!(active.progress(), Progress::SelfTest);
        let done = update(
            r#"{"status":"SUCCEEDED","statusDetails":{"reason":"accepted  v0.9.3","updatedBy":"  v0.9.2"}}"#,
        );
        assert_eq!(done.status, ExecutionStatus::Succeeded);
        let refused = update(r#"{"status":"FAILED","statusDetails":{"reason":"0x000000e3: 0x00000000"}}"#);
        assert_eq!(
            (refused.status, refused.details["reason"].as_str()),
            (ExecutionStatus::Failed, "0x000000e3: 0x00000000")
        );
    }

    #[test]
    fn bad_updates_are_refused_by_what_is_wrong() {
        let refused = |text: &[u8]| decode_update(text).unwrap_err();
        assert_eq!(refused(br#"{"status":"DONE"}"#), JobsError::Status("DONE".into()));
        assert!(matches!(refused(b"[1]"), JobsError::Json(_)));
        assert!(matches!(refused(br#"{"status":"FAILED","statusDetails":{"a":1}}"#), JobsError::Details(_)));
        let many: String = (0..11).map(|i| format!("\"k{i}\":\"v\"")).collect::<Vec<_>>().join(",");
        let text = format!(r#"{{"status":"FAILED","statusDetails":{{{many}}}}}"#);
        assert!(matches!(refused(text.as_bytes()), JobsError::Details(_)));
        let long = format!(r#"{{"status":"FAILED","statusDetails":{{"reason":"{}"}}}}"#, "x".repeat(1025));
        assert!(matches!(refused(long.as_bytes()), JobsError::Details(_)));
        assert_eq!(refused(&vec![b' '; MAX_JOBS_JSON + 1]), JobsError::TooLarge(MAX_JOBS_JSON + 1));
        assert!(decode_next_get(br#"{"clientToken":5}"#).is_err());
    }

    #[test]
    fn the_execution_is_the_transcripts_and_a_rebooted_device_gets_its_details_back() {
        let sent = encode_execution(
            1796281011,
            &document(),
            ExecutionStatus::Queued,
            1796281009,
            1796281009,
            1,
            None,
        )
        .unwrap();
        // The transcript's notify-next, field for field.
        let expected: Value = serde_json::from_str(
            r#"{"timestamp":1796281011,"execution":{"jobId":"AFR_OTA-smoke-job-1","status":"QUEUED","queuedAt":1796281009,"lastUpdatedAt":1796281009,"versionNumber":1,"executionNumber":1,"jobDocument":{"afr_ota":{"protocols":["MQTT"],"streamname":"AFR_OTA-smoke-stream-1","files":[{"filepath":"received_firmware.bin","filesize":18000,"fileid":0,"certfile":"certs/codesign.crt","sig-sha256-ecdsa":"MEUCIEHOoCT+Sw1XrAMLWPagyCA39AINYtD3ImpDupp5psyZAiEAjzc+cYmMTr9hETYKfQJrzxda2JfLFo80Cvrnib0iNoY="}]}}}}"#,
        )
        .unwrap();
        assert_eq!(serde_json::from_slice::<Value>(&sent).unwrap(), expected);
        let details: BTreeMap<String, String> =
            [("self_test".to_owned(), "ready".to_owned()), ("updatedBy".to_owned(), "0x00090002".to_owned())]
                .into();
        let again = encode_execution(
            1796281016,
            &document(),
            ExecutionStatus::InProgress,
            1796281009,
            1796281011,
            3,
            Some(&details),
        )
        .unwrap();
        let again: Value = serde_json::from_slice(&again).unwrap();
        assert_eq!(again["execution"]["status"], "IN_PROGRESS");
        assert_eq!(again["execution"]["statusDetails"]["self_test"], "ready");
        assert_eq!(encode_no_job(1796281016), br#"{"timestamp":1796281016}"#);
        let mut huge = document();
        huge.cert_file = "c".repeat(MAX_JOB_MESSAGE);
        assert!(matches!(
            encode_execution(1, &huge, ExecutionStatus::Queued, 1, 1, 1, None),
            Err(JobsError::MessageTooLarge(_))
        ));
    }
}
