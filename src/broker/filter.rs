//! Topic filters: which are valid, and an index that finds every subscription matching a topic
//! by walking its levels (a broker with 10,000 devices holds 20,000 filters, and scanning them
//! for each of thousands of chunks a second would cost more than the rest of the broker).

use std::collections::HashMap;

/// Topic levels a filter or topic may have here. MQTT allows 32,767 in a 64 KiB string, and
/// the index walks levels recursively: a bound keeps a hostile filter from overflowing the
/// stack. Rocky's own topics have five.
pub const MAX_LEVELS: usize = 32;

fn levels_ok(text: &str) -> bool {
    text.bytes().filter(|b| *b == b'/').count() < MAX_LEVELS
}

/// Whether `filter` is a valid MQTT topic filter: `+` only as a whole level, `#` only as the
/// whole last level, no NUL, not empty, at most [`MAX_LEVELS`] levels.
pub fn valid_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.contains('\0') || !levels_ok(filter) {
        return false;
    }
    let levels: Vec<&str> = filter.split('/').collect();
    levels.iter().enumerate().all(|(index, level)| match *level {
        "#" => index == levels.len() - 1,
        "+" => true,
        other => !other.contains(['+', '#']),
    })
}

/// Whether `topic` is a valid topic to publish to: not empty, no wildcards, no NUL, at most
/// [`MAX_LEVELS`] levels.
pub fn valid_topic(topic: &str) -> bool {
    !topic.is_empty() && !topic.contains(['+', '#', '\0']) && levels_ok(topic)
}

/// Subscriptions by filter, as a tree of levels. `S` identifies a subscriber.
#[derive(Debug)]
pub struct FilterIndex<S> {
    root: Node<S>,
}

#[derive(Debug)]
struct Node<S> {
    children: HashMap<String, Node<S>>,
    /// Subscribers whose filter ends at this level.
    here: Vec<(S, u8)>,
    /// Subscribers whose filter ends with `#` below this level.
    rest: Vec<(S, u8)>,
}

impl<S> Default for Node<S> {
    fn default() -> Self {
        Self { children: HashMap::new(), here: Vec::new(), rest: Vec::new() }
    }
}

impl<S> Default for FilterIndex<S> {
    fn default() -> Self {
        Self { root: Node::default() }
    }
}

impl<S: Copy + PartialEq> FilterIndex<S> {
    /// Adds (or, for the same subscriber and filter, replaces) a subscription at `qos`.
    pub fn insert(&mut self, filter: &str, who: S, qos: u8) {
        let list = self.list_mut(filter);
        list.retain(|(s, _)| *s != who);
        list.push((who, qos));
    }

    /// Removes a subscription; a filter never subscribed creates nothing (an UNSUBSCRIBE of
    /// made-up filters must not grow the tree).
    pub fn remove(&mut self, filter: &str, who: S) {
        let mut node = &mut self.root;
        let mut levels = filter.split('/').peekable();
        while let Some(level) = levels.next() {
            if level == "#" && levels.peek().is_none() {
                node.rest.retain(|(s, _)| *s != who);
                return;
            }
            match node.children.get_mut(level) {
                Some(child) => node = child,
                None => return,
            }
        }
        node.here.retain(|(s, _)| *s != who);
    }

    fn list_mut(&mut self, filter: &str) -> &mut Vec<(S, u8)> {
        let mut node = &mut self.root;
        let mut levels = filter.split('/').peekable();
        while let Some(level) = levels.next() {
            if level == "#" && levels.peek().is_none() {
                return &mut node.rest;
            }
            node = node.children.entry(level.to_owned()).or_default();
        }
        &mut node.here
    }

    /// Every subscriber whose filter matches `topic`, with the best QoS it asked for (a
    /// subscriber with two matching filters gets the message once). Filters that start with a
    /// wildcard do not match topics that start with `$`.
    pub fn matches(&self, topic: &str) -> Vec<(S, u8)> {
        let mut found: Vec<(S, u8)> = Vec::new();
        let levels: Vec<&str> = topic.split('/').collect();
        let dollar = topic.starts_with('$');
        walk(&self.root, &levels, 0, dollar, &mut found);
        found
    }
}

fn add<S: Copy + PartialEq>(found: &mut Vec<(S, u8)>, from: &[(S, u8)]) {
    for &(who, qos) in from {
        match found.iter_mut().find(|(s, _)| *s == who) {
            Some(entry) => entry.1 = entry.1.max(qos),
            None => found.push((who, qos)),
        }
    }
}

fn walk<S: Copy + PartialEq>(
    node: &Node<S>,
    levels: &[&str],
    depth: usize,
    dollar: bool,
    found: &mut Vec<(S, u8)>,
) {
    let first = depth == 0;
    // `a/#` matches `a` too.
    if !(first && dollar) {
        add(found, &node.rest);
    }
    let Some(level) = levels.get(depth) else {
        add(found, &node.here);
        return;
    };
    if let Some(child) = node.children.get(*level) {
        walk(child, levels, depth + 1, dollar, found);
    }
    if !(first && dollar)
        && let Some(child) = node.children.get("+")
    {
        walk(child, levels, depth + 1, dollar, found);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_and_topics_are_checked() {
        for good in ["a", "/fota/cmd/+", "/fota/#", "#", "+/+", "a/+/b"] {
            assert!(valid_filter(good), "{good}");
        }
        for bad in ["", "a/#/b", "a+", "a/b#", "a\0"] {
            assert!(!valid_filter(bad), "{bad}");
        }
        assert!(valid_topic("/fota/data/dev-1/3"));
        let deep = "a/".repeat(MAX_LEVELS);
        assert!(!valid_topic(&deep) && !valid_filter(&deep), "too many levels");
        assert!(valid_topic(&"a/".repeat(MAX_LEVELS - 1)[..2 * MAX_LEVELS - 3]));
        assert!(!valid_topic("/fota/+") && !valid_topic("") && !valid_topic("a/#"));
    }

    #[test]
    fn wildcards_match_as_mqtt_says() {
        let mut index = FilterIndex::default();
        index.insert("/fota/cmd/+", 1u32, 1);
        index.insert("/fota/data/dev-1/+", 2, 1);
        index.insert("/fota/#", 3, 0);
        index.insert("#", 4, 1);
        index.insert("/fota/cmd/dev-1", 2, 0);
        fn who(index: &FilterIndex<u32>, topic: &str) -> Vec<(u32, u8)> {
            let mut found = index.matches(topic);
            found.sort();
            found
        }
        assert_eq!(who(&index, "/fota/cmd/dev-1"), vec![(1, 1), (2, 0), (3, 0), (4, 1)]);
        assert_eq!(who(&index, "/fota/data/dev-1/7"), vec![(2, 1), (3, 0), (4, 1)]);
        assert_eq!(who(&index, "/fota"), vec![(3, 0), (4, 1)], "a/# matches a");
        assert_eq!(who(&index, "/fota/cmd/$probe-x"), vec![(1, 1), (3, 0), (4, 1)], "$ only counts first");
        assert_eq!(who(&index, "$SYS/x"), vec![], "wildcards never match a $ topic from the first level");
        index.remove("#", 4);
        index.insert("/fota/cmd/+", 1, 0);
        assert_eq!(who(&index, "/fota/cmd/x"), vec![(1, 0), (3, 0)], "a second subscribe replaces the first");
    }
}
