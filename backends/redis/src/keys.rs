//! Key names: one key per live slot, under the instance's prefix.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::time::{SystemTime, UNIX_EPOCH};

/// Slots per cluster hash tag: a batch of consecutive slots shares one hash
/// slot of a cluster, so that it stays one pipeline there too.
const SLOTS_PER_GROUP: u32 = 64;

/// Names the keys of one backend instance.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys under `prefix`, or under a random prefix unique to this instance.
    pub(crate) fn new(prefix: Option<&str>) -> Self {
        let prefix = match prefix {
            Some(p) => p.to_string(),
            None => format!("pagebackup:{:016x}", random_u64()),
        };
        Keys { prefix }
    }

    /// The prefix.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The key of `slot` at `generation`: `PREFIX:{GROUP}:SLOT:GENERATION`.
    /// The generation in the name means that a write still in flight for a
    /// freed slot can never land on the key of the slot's next page.
    pub(crate) fn key(&self, slot: u32, generation: u32) -> String {
        format!("{}:{{{}}}:{slot}:{generation}", self.prefix, group(slot))
    }
}

impl Keys {
    /// The group in the name of `key`, one of this instance's keys.
    pub(crate) fn group_of(&self, key: &str) -> u32 {
        key.strip_prefix(self.prefix.as_str())
            .and_then(|rest| rest.strip_prefix(":{"))
            .and_then(|rest| rest.split_once('}'))
            .and_then(|(tag, _)| tag.parse().ok())
            .unwrap_or(0)
    }
}

/// The hash-tag group of `slot`: keys of one group share a cluster hash slot.
pub(crate) fn group(slot: u32) -> u32 {
    slot / SLOTS_PER_GROUP
}

/// 64 bits no other process or instance is likely to draw: the std hasher's
/// random keys, mixed with the time and the process id.
fn random_u64() -> u64 {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    RandomState::new().hash_one((nanos, std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_prefix_group_slot_and_generation() {
        let keys = Keys::new(Some("app"));
        assert_eq!(keys.key(0, 1), "app:{0}:0:1");
        assert_eq!(keys.key(63, 3), "app:{0}:63:3");
        assert_eq!(keys.key(64, 1), "app:{1}:64:1");
        assert_eq!(keys.group_of(&keys.key(6400, 2)), 100);
        let (a, b) = (Keys::new(None), Keys::new(None));
        assert!(
            a.prefix().starts_with("pagebackup:") && a.prefix().len() == 27,
            "{}",
            a.prefix()
        );
        assert_ne!(a.prefix(), b.prefix());
    }
}
