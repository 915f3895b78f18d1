//! Key names: one key per live slot, under the prefix and the instance's id.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::time::{SystemTime, UNIX_EPOCH};

/// Slots per cluster hash tag: a batch of consecutive slots shares one hash
/// slot of a cluster, so that it stays one pipeline there too.
const SLOTS_PER_GROUP: u32 = 64;

/// The prefix of an instance opened without one, shared by all such instances.
pub(crate) const DEFAULT_PREFIX: &str = "pagebackup";

/// Names the keys of one backend instance.
///
/// Layout (values of a page are bound to the three numbers in its name):
///
/// - `PREFIX:{IID:GROUP}:SLOT:GENERATION`: the page of `SLOT` at
///   `GENERATION`; `IID` is the instance id (16 hex digits), `GROUP` the
///   slot's hash-tag group;
/// - `PREFIX:IID`: the instance's registration (`SET NX` at open, so no
///   two live instances share an id);
/// - `PREFIX:owner`: the claim on a named prefix, holding the claiming
///   instance's id.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
    instance: u64,
}

impl Keys {
    /// Keys under `prefix` (or [`DEFAULT_PREFIX`]) for the instance `instance`.
    pub(crate) fn new(prefix: Option<&str>, instance: u64) -> Self {
        Keys {
            prefix: prefix.unwrap_or(DEFAULT_PREFIX).to_string(),
            instance,
        }
    }

    /// The prefix.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The instance id.
    pub(crate) fn instance(&self) -> u64 {
        self.instance
    }

    /// The instance id as it appears in keys.
    pub(crate) fn instance_hex(&self) -> String {
        format!("{:016x}", self.instance)
    }

    /// The key of `slot` at `generation`: `PREFIX:{IID:GROUP}:SLOT:GENERATION`.
    /// The generation in the name means that a write still in flight for a
    /// freed slot can never land on the key of the slot's next page; the
    /// instance id, that no other instance's write or delete can.
    pub(crate) fn key(&self, slot: u32, generation: u32) -> String {
        format!(
            "{}:{{{:016x}:{}}}:{slot}:{generation}",
            self.prefix,
            self.instance,
            group(slot)
        )
    }

    /// The key registering the instance: `PREFIX:IID`.
    pub(crate) fn registration(&self) -> String {
        format!("{}:{:016x}", self.prefix, self.instance)
    }

    /// The key claiming the prefix: `PREFIX:owner`.
    pub(crate) fn owner(&self) -> String {
        format!("{}:owner", self.prefix)
    }

    /// The group in the name of `key`, one of this instance's page keys.
    pub(crate) fn group_of(&self, key: &str) -> u32 {
        key.strip_prefix(self.prefix.as_str())
            .and_then(|rest| rest.strip_prefix(":{"))
            .and_then(|rest| rest.split_once('}'))
            .and_then(|(tag, _)| tag.rsplit_once(':'))
            .and_then(|(_, group)| group.parse().ok())
            .unwrap_or(0)
    }
}

/// The hash-tag group of `slot`: keys of one group share a cluster hash slot.
pub(crate) fn group(slot: u32) -> u32 {
    slot / SLOTS_PER_GROUP
}

/// 64 bits no other process or instance is likely to draw: the std hasher's
/// random keys, mixed with the time and the process id.
pub(crate) fn random_u64() -> u64 {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    RandomState::new().hash_one((nanos, std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_prefix_instance_group_slot_and_generation() {
        let keys = Keys::new(Some("app"), 0xabc);
        assert_eq!(keys.key(0, 1), "app:{0000000000000abc:0}:0:1");
        assert_eq!(keys.key(63, 3), "app:{0000000000000abc:0}:63:3");
        assert_eq!(keys.key(64, 1), "app:{0000000000000abc:1}:64:1");
        assert_eq!(keys.group_of(&keys.key(6400, 2)), 100);
        assert_eq!(keys.registration(), "app:0000000000000abc");
        assert_eq!(keys.owner(), "app:owner");
        let shared = Keys::new(None, 1);
        assert_eq!(shared.prefix(), DEFAULT_PREFIX);
        assert_ne!(random_u64(), random_u64());
    }
}
