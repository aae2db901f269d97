//! What an AWS OTA agent's words mean: the reason of a FAILED update (`"0x000000e3:
//! 0x00000000"`, its platform layer's main status and the platform's own code) and the version
//! in `updatedBy` (`0x00090002` is 0.9.2).

/// The platform layer's main statuses, as AWS's OTA library documents them.
const PAL_STATUSES: [(u32, &str); 15] = [
    (0xe0, "the platform layer's result was never set"),
    (0xe1, "the device ran out of memory"),
    (0xe2, "the platform layer had no file"),
    (0xe3, "the signature check failed"),
    (0xe4, "the device could not create the file to receive into"),
    (0xe5, "the image is too large for the device"),
    (0xe6, "the device could not create its boot information"),
    (0xe7, "the signer certificate could not be read (certfile)"),
    (0xe8, "the image state was out of range"),
    (0xe9, "the device could not abort the update"),
    (0xea, "the device could not reject the new image"),
    (0xeb, "the device could not commit the new image"),
    (0xec, "the device could not activate the new image"),
    (0xed, "the device could not abort the file"),
    (0xee, "the device could not close the file"),
];

/// The agent's own errors (`OtaErr_t`) that come after "rejected:" or "aborted:" when its
/// checks after the reboot refused the new image.
const AGENT_ERRORS: [(u32, &str); 4] = [
    (0x0f, "its version is lower than the one before, and the device takes no downgrade"),
    (0x10, "its version is the same as the one before"),
    (0x11, "the device's image state did not say it was testing a new image (possible tampering)"),
    (0x13, "the device's application aborted the update"),
];

/// What the code after "rejected:" or "aborted:" says, when it is one of the agent's errors.
fn sub_reason_words(reason: &str) -> Option<&'static str> {
    let code = reason.split_once(':')?.1.trim().strip_prefix("0x")?;
    let code = u32::from_str_radix(code, 16).ok()?;
    AGENT_ERRORS.iter().find(|(value, _)| *value == code).map(|(_, words)| *words)
}

/// A FAILED update's reason in words, keeping the device's own text beside them:
/// `the signature check failed (0x000000e3: 0x00000000)`; a reason that is not the agent's
/// codes is returned as it came.
pub fn failure_words(reason: &str) -> String {
    // A finished job's own words: the image's state the agent set (its self test rejected it,
    // or the update was aborted), with the platform's code after the colon.
    let why = sub_reason_words(reason).map(|words| format!(": {words}")).unwrap_or_default();
    if is_self_test_rejection(reason) {
        return format!(
            "the device rejected the new image in its self test and runs the one before{why} ({reason})"
        );
    }
    if reason.trim_start().starts_with("aborted:") {
        return format!("the device aborted the update{why} ({reason})");
    }
    let main = reason.split(':').next().map(str::trim).and_then(|code| code.strip_prefix("0x"));
    let main = main.and_then(|hex| u32::from_str_radix(hex, 16).ok());
    // The main status may come alone or in the top 8 bits of a combined code.
    let found = main.and_then(|code| {
        PAL_STATUSES.iter().find(|(value, _)| *value == code || *value == code >> 24).map(|(_, words)| *words)
    });
    match found {
        Some(words) => format!("{words} ({reason})"),
        None => reason.to_owned(),
    }
}

/// Whether a FAILED update's reason is the agent's "rejected: 0x…": the image failed its self
/// test (or the version check after the reboot) and the device went back to the one before.
pub fn is_self_test_rejection(reason: &str) -> bool {
    reason.trim_start().starts_with("rejected:")
}

/// The version an agent reports as `0xMMmmbbbb` (major, minor, build), as `0.9.2`.
pub fn app_version(text: &str) -> Option<String> {
    let value = u32::from_str_radix(text.trim().strip_prefix("0x")?, 16).ok()?;
    Some(format!("{}.{}.{}", value >> 24, (value >> 16) & 0xff, value & 0xffff))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_transcripts_codes_read_in_words() {
        assert_eq!(
            failure_words("0x000000e3: 0x00000000"),
            "the signature check failed (0x000000e3: 0x00000000)"
        );
        assert_eq!(
            failure_words("0xe7000012: 0x12"),
            "the signer certificate could not be read (certfile) (0xe7000012: 0x12)"
        );
        assert_eq!(failure_words("flash full"), "flash full");
        assert_eq!(
            failure_words("rejected: 0x00000000"),
            "the device rejected the new image in its self test and runs the one before (rejected: 0x00000000)"
        );
        // The agent's version check after the reboot, in words.
        assert_eq!(
            failure_words("rejected: 0x00000010"),
            "the device rejected the new image in its self test and runs the one before: its version is the \
             same as the one before (rejected: 0x00000010)"
        );
        assert!(failure_words("rejected: 0x0000000f").contains("takes no downgrade"));
        assert!(failure_words("aborted: 0x00000013").contains("application aborted"));
        assert!(is_self_test_rejection("rejected: 0x00000007") && !is_self_test_rejection("0x000000e3: 0x0"));
        assert_eq!(
            failure_words("aborted: 0x00000000"),
            "the device aborted the update (aborted: 0x00000000)"
        );
        assert_eq!(failure_words("0x00000001: 0x0"), "0x00000001: 0x0");
        assert_eq!(app_version("0x00090002").as_deref(), Some("0.9.2"));
        assert_eq!(app_version("0x01020003").as_deref(), Some("1.2.3"));
        assert_eq!(app_version("  v0.9.2"), None);
    }
}
