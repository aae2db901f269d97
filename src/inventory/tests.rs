use super::*;

fn id(s: &str) -> DeviceId {
    DeviceId::parse(s).unwrap()
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[tokio::test]
async fn registered_and_seen_devices_are_listed_by_label_pattern_and_time() {
    let inventory = Inventory::in_memory();
    inventory
        .register(vec![
            (id("dev-01"), labels(&[("model", "m1")])),
            (id("dev-02"), labels(&[("model", "m2")])),
        ])
        .await
        .unwrap();
    inventory.seen(&id("dev-02"), 2_000);
    inventory.seen(&id("lab-01"), 1_000);
    let all = inventory.list(&DeviceQuery::default());
    assert_eq!(all.iter().map(|d| d.device_id.as_str()).collect::<Vec<_>>(), ["dev-01", "dev-02", "lab-01"]);
    assert!(!all[2].registered, "a device only seen on the wire is not registered");
    let m1 = DeviceQuery::default().with_label("model=m1").unwrap();
    assert_eq!(inventory.ids(&m1), [id("dev-01")]);
    let dev = DeviceQuery::default().with_glob("dev-*").unwrap();
    assert_eq!(inventory.ids(&dev), [id("dev-01"), id("dev-02")]);
    let recent = DeviceQuery { seen_since: Some(1_500), ..DeviceQuery::default() };
    assert_eq!(inventory.ids(&recent), [id("dev-02")]);
    let page = DeviceQuery { after: Some(id("dev-01")), limit: 1, ..DeviceQuery::default() };
    assert_eq!(inventory.list(&page)[0].device_id, id("dev-02"));
}

#[tokio::test]
async fn wire_facts_and_labels_do_not_overwrite_each_other() {
    let inventory = Inventory::in_memory();
    inventory.seen(&id("d1"), 5);
    inventory.seen(&id("d1"), 3);
    inventory.job_created(&id("d1"), JobId::new(7));
    inventory.register(vec![(id("d1"), labels(&[("site", "lab")]))]).await.unwrap();
    let image = ImageInfo { name: "fw.bin".into(), size: 3, sha256: "ab".repeat(32).into() };
    inventory.succeeded(&id("d1"), image.clone());
    let device = inventory.get(&id("d1")).unwrap();
    assert_eq!((device.first_seen, device.last_seen), (Some(5), Some(5)), "last_seen never goes back");
    assert_eq!(device.last_job, Some(JobId::new(7)));
    assert_eq!(device.last_image, Some(image));
    assert_eq!(device.labels, labels(&[("site", "lab")]));
    assert!(device.registered);
    assert!(inventory.forget(&id("d1")).await.unwrap());
    assert!(!inventory.forget(&id("d1")).await.unwrap());
    assert!(inventory.is_empty());
}

#[tokio::test]
async fn the_bound_keeps_out_made_up_devices_and_refuses_registrations() {
    let inventory = Inventory::new(Vec::new(), 2, None);
    for n in 0..100 {
        inventory.seen(&id(&format!("spoof-{n}")), 1);
    }
    assert_eq!(inventory.len(), 2);
    // A device already known still gets news.
    inventory.seen(&id("spoof-0"), 9);
    assert_eq!(inventory.get(&id("spoof-0")).unwrap().last_seen, Some(9));
    let refused = inventory.register(vec![(id("new"), Labels::new())]).await.unwrap_err();
    assert!(refused.to_string().contains("store.max_devices is 2"), "{refused}");
    assert_eq!(inventory.len(), 2, "a refused registration changes nothing");
    // Relabelling a known one is no growth.
    assert_eq!(inventory.register(vec![(id("spoof-1"), labels(&[("a", "b")]))]).await.unwrap(), 0);
}

#[tokio::test]
async fn a_refresh_takes_another_instance_s_labels_and_devices_and_keeps_newer_wire_facts() {
    let inventory = Inventory::new(Vec::new(), 3, None);
    inventory.register(vec![(id("d1"), labels(&[("site", "old")]))]).await.unwrap();
    inventory.seen(&id("d1"), 50);
    let mut theirs = Device::new(id("d1"));
    theirs.labels = labels(&[("site", "new")]);
    theirs.registered = true;
    theirs.last_seen = Some(10);
    theirs.last_job = Some(JobId::new(9));
    let mut added = Device::new(id("d2"));
    added.labels = labels(&[("model", "m2")]);
    added.registered = true;
    let over = [Device::new(id("d3")), Device::new(id("d4"))];
    inventory.refresh(vec![theirs, added.clone(), over[0].clone(), over[1].clone()]);
    let d1 = inventory.get(&id("d1")).unwrap();
    assert_eq!(d1.labels, labels(&[("site", "new")]), "the operator's columns as stored");
    assert_eq!((d1.last_seen, d1.last_job), (Some(50), Some(JobId::new(9))), "the newer wire facts of each");
    assert_eq!(inventory.get(&id("d2")), Some(added), "a device registered elsewhere");
    assert_eq!(inventory.len(), 3, "up to the bound: d4 is left out");
    let m2 = DeviceQuery::default().with_label("model=m2").unwrap();
    assert_eq!(inventory.ids(&m2), [id("d2")]);
}

fn running(image: u8, version: &str, at: u64) -> Running {
    let status = crate::protocol::DeviceStatus {
        image: [image; 32],
        version: Some(version.to_owned()),
        boot: Some(1),
        seq: None,
        caps: vec!["confirm".into()],
        kids: Vec::new(),
    };
    Running::new(&status, at)
}

/// A status lands on a device the inventory holds, or aside (bounded) for one it does not,
/// never adding a device; a device that enters later takes its status with it.
#[tokio::test]
async fn statuses_go_on_held_devices_or_aside_within_their_bound() {
    let inventory = Inventory::new(Vec::new(), 5, None);
    inventory.register(vec![(id("dev-01"), Labels::new())]).await.unwrap();
    assert_eq!(inventory.report_status(&id("dev-01"), Some(running(1, "2.0.3", 10))), StatusKept::Inventory);
    let held = inventory.get("dev-01").unwrap().running.unwrap();
    assert_eq!((&*held.image, held.version.as_deref()), ("01".repeat(32).as_str(), Some("2.0.3")));
    assert_eq!(inventory.take_observed().len(), 1, "the store hears of it with the next flush");
    // Strangers: aside, never in the inventory, and past the bound only counted.
    for n in 0..MAX_UNLISTED_STATUSES + 3 {
        let kept = inventory.report_status(&id(&format!("made-up-{n}")), Some(running(2, "x", 10)));
        let expected = if n < MAX_UNLISTED_STATUSES { StatusKept::Unlisted } else { StatusKept::Refused };
        assert_eq!(kept, expected, "{n}");
    }
    assert_eq!(inventory.len(), 1, "no status adds a device");
    assert_eq!(inventory.unlisted_statuses(), (MAX_UNLISTED_STATUSES, 3));
    // One of them is registered (or sent a job): its status comes along.
    inventory.register(vec![(id("made-up-7"), Labels::new())]).await.unwrap();
    assert_eq!(inventory.get("made-up-7").unwrap().running.map(|r| r.version), Some(Some("x".into())));
    inventory.job_created(&id("made-up-8"), JobId::new(4));
    assert!(inventory.get("made-up-8").unwrap().running.is_some());
    assert_eq!(inventory.unlisted_statuses().0, MAX_UNLISTED_STATUSES - 2);
    // A cleared status clears.
    assert_eq!(inventory.report_status(&id("dev-01"), None), StatusKept::Inventory);
    assert_eq!(inventory.get("dev-01").unwrap().running, None);
}

#[tokio::test]
async fn listings_select_by_what_devices_run() {
    let inventory = Inventory::in_memory();
    let ids = ["a", "b", "c"];
    inventory.register(ids.iter().map(|d| (id(d), Labels::new())).collect()).await.unwrap();
    inventory.report_status(&id("a"), Some(running(1, "2.0.3", 1)));
    inventory.report_status(&id("b"), Some(running(2, "2.1.0", 1)));
    let by = |query: DeviceQuery| inventory.ids(&query);
    assert_eq!(by(DeviceQuery { running: Some("02".repeat(32)), ..DeviceQuery::default() }), [id("b")]);
    assert_eq!(by(DeviceQuery { version: Some("2.0.3".into()), ..DeviceQuery::default() }), [id("a")]);
    assert_eq!(
        by(DeviceQuery { version_not: Some("2.1.0".into()), ..DeviceQuery::default() }),
        [id("a"), id("c")],
        "a device without a status is not known to run it"
    );
}

#[tokio::test]
async fn a_refresh_keeps_the_newer_status() {
    let inventory = Inventory::in_memory();
    inventory.register(vec![(id("d"), Labels::new())]).await.unwrap();
    inventory.report_status(&id("d"), Some(running(1, "new", 20)));
    inventory.take_observed(); // written
    let mut theirs = inventory.get("d").unwrap();
    theirs.running = Some(running(9, "old", 10));
    inventory.refresh(vec![theirs.clone()]);
    assert_eq!(inventory.get("d").unwrap().running.unwrap().version.as_deref(), Some("new"));
    theirs.running = Some(running(3, "newer", 30));
    inventory.refresh(vec![theirs.clone()]);
    assert_eq!(inventory.get("d").unwrap().running.unwrap().version.as_deref(), Some("newer"));
    // A status cleared here and not written yet stays cleared; once written, the store agrees.
    inventory.report_status(&id("d"), None);
    inventory.refresh(vec![theirs.clone()]);
    assert_eq!(inventory.get("d").unwrap().running, None, "news not yet written wins");
    inventory.take_observed();
    theirs.running = None;
    inventory.refresh(vec![theirs]);
    assert_eq!(inventory.get("d").unwrap().running, None);
}

/// Devices read back from the store (another instance's refresh, or its own writes read back)
/// arrive with texts of their own: the inventory keeps the ones it holds where they are equal and
/// shares the rest, or 100,000 devices read back would each hold their own copies.
#[tokio::test]
async fn devices_read_back_share_their_texts_and_keep_what_they_hold() {
    use std::sync::Arc;
    let inventory = Inventory::new(Vec::new(), 10, None);
    inventory.register(vec![(id("a"), Labels::new()), (id("b"), Labels::new())]).await.unwrap();
    // A key id is a text never shared: whether it is the one held tells whether the status was
    // kept or replaced.
    let status = || Running { kids: vec!["0a0b".into()], ..running(1, "2.0", 10) };
    inventory.report_status(&id("a"), Some(status()));
    inventory.take_observed(); // written
    let held = inventory.running_of("a").unwrap();
    let held_kid =
        || inventory.lock().devices.get("a").and_then(|d| d.running.as_ref()).map(|r| r.kids[0].as_ptr());
    let kid_before = held_kid();
    let image = || ImageInfo { name: "fw.bin".into(), size: 3, sha256: hex::encode([1u8; 32]).into() };
    let stored = |device: &str| {
        let mut row = inventory.get(device).unwrap();
        row.running = Some(status());
        row.last_image = Some(image());
        row
    };
    let (a, b, c) = (stored("a"), stored("b"), Device { registered: true, ..stored("a") });
    let c = Device { device_id: id("c"), ..c };
    inventory.refresh(vec![a, b, c]);
    let now = |device: &str| inventory.get(device).unwrap();
    let (a, b, c) = (now("a"), now("b"), now("c"));
    let a_runs = a.running.as_ref().unwrap();
    assert!(Arc::ptr_eq(&a_runs.image, &held.image), "one hash");
    assert_eq!(held_kid(), kid_before, "an equal status read back leaves the one held");

    for other in [&b, &c] {
        let runs = other.running.as_ref().unwrap();
        assert_eq!(runs, a_runs, "{}: what the store said", other.device_id);
        assert!(Arc::ptr_eq(&runs.image, &a_runs.image), "{}: one hash", other.device_id);
        assert!(Arc::ptr_eq(&runs.caps, &a_runs.caps), "{}: one set of capabilities", other.device_id);
        let (mine, first) = (other.last_image.as_ref().unwrap(), a.last_image.as_ref().unwrap());
        assert_eq!(mine, &image());
        assert!(Arc::ptr_eq(&mine.name, &first.name), "{}: one image name", other.device_id);
        assert!(
            Arc::ptr_eq(&mine.sha256, &a_runs.image),
            "{}: a hash is one text, status or image",
            other.device_id
        );
    }
}

#[tokio::test]
async fn the_same_status_again_is_not_news() {
    let inventory = Inventory::in_memory();
    inventory.register(vec![(id("d"), Labels::new())]).await.unwrap();
    inventory.report_status(&id("d"), Some(running(1, "2.0", 10)));
    inventory.take_observed();
    inventory.report_status(&id("d"), Some(running(1, "2.0", 99)));
    assert_eq!(inventory.get("d").unwrap().running.unwrap().reported_at, 10, "when it was first said");
    assert!(inventory.take_observed().is_empty(), "nothing for the store");
    inventory.report_status(&id("d"), Some(running(1, "2.1", 99)));
    assert_eq!(inventory.get("d").unwrap().running.unwrap().reported_at, 99);
}

#[tokio::test]
async fn a_status_is_found_whether_the_inventory_holds_the_device_or_not() {
    let inventory = Inventory::in_memory();
    inventory.report_status(&id("stranger"), Some(running(4, "1.0", 1)));
    assert_eq!(inventory.running_of(&id("stranger")).and_then(|r| r.version), Some("1.0".into()));
    assert!(inventory.get("stranger").is_none());
    assert_eq!(inventory.running_of(&id("nobody")), None);
}

#[tokio::test]
async fn a_forgotten_device_keeps_what_it_said_of_itself() {
    let inventory = Inventory::in_memory();
    inventory.register(vec![(id("signed-1"), Labels::new())]).await.unwrap();
    let status = crate::protocol::DeviceStatus {
        image: [3; 32],
        version: None,
        boot: None,
        seq: Some(7),
        caps: vec![crate::protocol::CAP_MANIFEST.to_owned()],
        kids: Vec::new(),
    };
    inventory.report_status(&id("signed-1"), Some(Running::new(&status, 1)));
    assert!(inventory.forget(&id("signed-1")).await.unwrap());
    // The broker sends its retained status again only at a new subscription: until then Rocky
    // must still know the device takes signed images only, and at which counter.
    let running = inventory.running_of("signed-1").expect("the status outlives the entry");
    let reported = running.reported().unwrap();
    assert!(reported.manifest && reported.seq == Some(7));
}

/// Devices that say the same share the texts of their statuses (one image's hash, one version,
/// one set of capabilities for a fleet); texts beyond the bound of kept ones stay each device's
/// own until a kept one is held by no device, and every device reads back exactly what it said.
#[tokio::test]
async fn devices_that_say_the_same_share_their_statuses_texts_within_a_bound() {
    let inventory = Inventory::new(Vec::new(), 100, None);
    let ids: Vec<DeviceId> = (0..40)
        .map(|n| id(&format!("dev-{n:02}")))
        .chain((0..40).map(|n| id(&format!("other-{n}"))))
        .collect();
    inventory.register(ids.iter().map(|d| (d.clone(), Labels::new())).collect()).await.unwrap();
    inventory.report_status(&ids[0], Some(running(1, "2.0.3", 10)));
    inventory.report_status(&ids[1], Some(running(1, "2.0.3", 11)));
    let (a, b) = (inventory.running_of(&ids[0]).unwrap(), inventory.running_of(&ids[1]).unwrap());
    assert!(std::sync::Arc::ptr_eq(&a.image, &b.image), "one hash for both");
    assert!(std::sync::Arc::ptr_eq(&a.caps, &b.caps), "one set of capabilities for both");
    assert!(std::sync::Arc::ptr_eq(a.version.as_ref().unwrap(), b.version.as_ref().unwrap()));
    // Every device on an image of its own: the first sixteen hashes are kept, then no more.
    for (n, device) in ids.iter().enumerate().skip(2) {
        inventory.report_status(device, Some(running(n as u8, "2.0.3", 12)));
    }
    let again = |n: usize| {
        let other = id(&format!("other-{n}"));
        inventory.report_status(&other, Some(running(n as u8, "2.0.3", 13)));
        inventory.running_of(&other).unwrap()
    };
    let kept = inventory.running_of(&ids[5]).unwrap();
    assert!(std::sync::Arc::ptr_eq(&kept.image, &again(5).image), "a kept hash is shared");
    let own = inventory.running_of(&ids[30]).unwrap();
    assert!(!std::sync::Arc::ptr_eq(&own.image, &again(30).image), "past the bound each keeps its own");
    assert_eq!(&*own.image, hex::encode([30u8; 32]), "and it is still the hash it said");
    drop(kept);
    // dev-05 and other-5 move on to image 1: no device holds image 5's text any more, so the
    // next new text takes its place and is shared from then on.
    inventory.report_status(&ids[5], Some(running(1, "2.0.3", 14)));
    inventory.report_status(&id("other-5"), Some(running(1, "2.0.3", 14)));
    let (x, y) = (id("other-31"), id("other-32"));
    inventory.report_status(&x, Some(running(31, "2.0.3", 16)));
    inventory.report_status(&y, Some(running(31, "2.0.3", 16)));
    let (x, y) = (inventory.running_of(&x).unwrap(), inventory.running_of(&y).unwrap());
    assert!(std::sync::Arc::ptr_eq(&x.image, &y.image), "a freed place serves a new text");
    let unlisted = id("never-registered");
    inventory.report_status(&unlisted, Some(running(1, "2.0.3", 15)));
    let aside = inventory.running_of(&unlisted).unwrap();
    assert!(!std::sync::Arc::ptr_eq(&aside.image, &a.image), "a stranger's status takes no shared text");
}

#[tokio::test]
async fn never_seen_means_not_registered_never_answered_and_no_status() {
    let inventory = Inventory::new(Vec::new(), 10, None);
    inventory.register(vec![(id("listed"), Labels::new())]).await.unwrap();
    inventory.report_status(&id("reports"), Some(running(1, "1.0", 10)));
    inventory.job_created(&id("answered"), JobId::new(1));
    inventory.seen(&id("answered"), 5);
    inventory.job_created(&id("typo"), JobId::new(2));
    inventory.job_created(&id("held-reports"), JobId::new(3));
    inventory.report_status(&id("held-reports"), Some(running(2, "2.0", 10)));
    let ids = ["listed", "reports", "answered", "typo", "held-reports", "stranger"].map(id);
    // A status is hearing from it, whether the device is held (a job made it) or only its
    // status is, aside: the create answer's warning and the dry run name the same devices.
    assert_eq!(inventory.never_seen(&ids), [id("typo"), id("stranger")]);
}
