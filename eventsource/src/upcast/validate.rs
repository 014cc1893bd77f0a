//! Checking a set of [`Upcasters`] against the events an aggregate decodes, when a
//! repository is built: [`Upcasters::validate`] and [`RegistrationError`].

use std::collections::HashSet;

use super::Upcasters;
use crate::aggregate::EventSet;
use crate::error::RegistrationError;
use crate::event::EventKey;

impl Upcasters {
    /// Checks the upcasters against what the aggregate's events `E` decode (their
    /// [`HISTORIES`](EventSet::HISTORIES)): every chain of declared outputs must end at a
    /// (type, version) that `E` decodes. [`Repository::with_upcasters`] calls it.
    ///
    /// [`Repository::with_upcasters`]: crate::Repository::with_upcasters
    ///
    /// # Errors
    /// [`RegistrationError::Duplicate`], then, following the registered keys in order,
    /// the first [`RegistrationError::Cycle`] or [`RegistrationError::NotDecodable`].
    ///
    /// ```
    /// use eventsource::{event, Aggregate, Apply, EventKey, RegistrationError, Upcasters};
    /// use serde::{Deserialize, Serialize};
    ///
    /// #[event(name = "money.deposited", version = 2)]
    /// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    /// pub struct Deposited { pub amount: u64, pub currency: String }
    ///
    /// #[derive(Debug, Default, Aggregate)]
    /// #[aggregate(name = "account", events(Deposited))]
    /// pub struct Account;
    /// # impl Apply<Deposited> for Account { fn apply(&mut self, _: &Deposited) {} }
    ///
    /// let ok = Upcasters::new().payload("money.deposited", 1, Ok);
    /// assert_eq!(ok.validate::<AccountEvent>(), Ok(()));
    ///
    /// let short = Upcasters::new().rename("cash.in", 1, "money.deposited", 1);
    /// assert_eq!(
    ///     short.validate::<AccountEvent>().map_err(|e| e.to_string()),
    ///     Err("the upcaster of `cash.in@1` produces `money.deposited@1`, which the aggregate \
    ///          does not decode (it decodes `money.deposited` at version 2)".into()),
    /// );
    /// ```
    pub fn validate<E: EventSet>(&self) -> Result<(), RegistrationError> {
        if let Some(key) = self.duplicates.first() {
            return Err(RegistrationError::Duplicate { key: key.clone() });
        }
        let decodable = decodable::<E>();
        let mut done = HashSet::new();
        for key in self.registered() {
            self.walk(&key, &decodable, &mut Vec::new(), &mut done)?;
        }
        Ok(())
    }

    /// Whether the chain from a stored `key` ends at versions `E` decodes, through the
    /// upcasters or directly.
    pub(crate) fn reaches<E: EventSet>(&self, key: &EventKey) -> Result<(), RegistrationError> {
        let decodable = decodable::<E>();
        if self.entry(&key.event_type, key.version).is_none() {
            if decodable.contains(&(key.event_type.as_str(), key.version)) {
                return Ok(());
            }
            return Err(not_decodable(key.clone(), key.clone(), &decodable));
        }
        self.walk(key, &decodable, &mut Vec::new(), &mut HashSet::new())
    }

    /// Follows the declared outputs from `key` (registered) depth first.
    fn walk(
        &self,
        key: &EventKey,
        decodable: &HashSet<(&str, u32)>,
        path: &mut Vec<EventKey>,
        done: &mut HashSet<EventKey>,
    ) -> Result<(), RegistrationError> {
        if done.contains(key) {
            return Ok(());
        }
        if let Some(start) = path.iter().position(|k| k == key) {
            let mut cycle = path[start..].to_vec();
            cycle.push(key.clone());
            return Err(RegistrationError::Cycle { cycle });
        }
        let Some(entry) = self.entry(&key.event_type, key.version) else {
            return Ok(());
        };
        path.push(key.clone());
        for output in &entry.outputs {
            if self.handles(&output.event_type, output.version) {
                self.walk(output, decodable, path, done)?;
            } else if !decodable.contains(&(output.event_type.as_str(), output.version)) {
                return Err(not_decodable(key.clone(), output.clone(), decodable));
            }
        }
        path.pop();
        done.insert(key.clone());
        Ok(())
    }
}

/// Every stored (name, version) that `E` decodes without upcasters.
fn decodable<E: EventSet>() -> HashSet<(&'static str, u32)> {
    E::HISTORIES
        .iter()
        .flat_map(|history| history.iter().map(|s| (s.name, s.version)))
        .collect()
}

fn not_decodable(
    upcaster: EventKey,
    produces: EventKey,
    decodable: &HashSet<(&str, u32)>,
) -> RegistrationError {
    let mut versions: Vec<u32> = decodable
        .iter()
        .filter(|(name, _)| *name == produces.event_type)
        .map(|&(_, version)| version)
        .collect();
    versions.sort_unstable();
    RegistrationError::NotDecodable {
        upcaster,
        produces,
        decodable: versions,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::EventType;
    use crate::event::EventShape;
    use crate::event::{DecodeFailure, Payload};
    use crate::upcast::RawEvent;

    /// A hand-written event set decoding `new@1`, `new@2` and `legacy@1`.
    #[derive(Debug, Clone, PartialEq)]
    struct Events(String, u32);

    impl EventSet for Events {
        const TYPES: &'static [EventType] = &[EventType {
            name: "new",
            version: 2,
        }];
        const HISTORIES: &'static [&'static [EventShape]] = &[&[
            EventShape {
                name: "new",
                version: 2,
                shape: "",
            },
            EventShape {
                name: "new",
                version: 1,
                shape: "",
            },
            EventShape {
                name: "legacy",
                version: 1,
                shape: "",
            },
        ]];

        fn event_type(&self) -> EventType {
            Self::TYPES[0]
        }

        fn encode(&self) -> Result<String, serde_json::Error> {
            Ok(String::new())
        }

        fn decode(t: &str, v: u32, _: Payload<'_>) -> Result<Self, DecodeFailure> {
            Ok(Events(t.to_owned(), v))
        }
    }

    fn key(t: &str, v: u32) -> EventKey {
        EventKey::new(t, v)
    }

    #[test]
    fn a_cycle_is_named_with_its_keys() {
        let up = Upcasters::new()
            .rename("a", 1, "b", 1)
            .rename("b", 1, "a", 1);
        assert_eq!(
            up.validate::<Events>(),
            Err(RegistrationError::Cycle {
                cycle: vec![key("a", 1), key("b", 1), key("a", 1)]
            })
        );
    }

    #[test]
    fn validation_accepts_chains_into_any_decodable_version() {
        let up = Upcasters::new()
            .rename("Older", 1, "legacy", 1)
            .payload("new", 1, Ok)
            .rename("alias", 3, "new", 1)
            .custom("both", 1, &[("new", 2), ("alias", 3)], |_| Ok(vec![]))
            .discard("noise", 1);
        assert_eq!(up.validate::<Events>(), Ok(()));
        assert_eq!(up.reaches::<Events>(&key("alias", 3)), Ok(()));
        assert_eq!(up.reaches::<Events>(&key("new", 1)), Ok(()));
        assert!(up.reaches::<Events>(&key("new", 7)).is_err());
    }

    #[test]
    fn validation_reports_duplicates_before_anything_else() {
        let up = Upcasters::new()
            .discard("x", 1)
            .rename("new", 2, "new", 2)
            .custom("x", 1, &[], |_| Ok(vec![]));
        assert_eq!(
            up.validate::<Events>(),
            Err(RegistrationError::Duplicate { key: key("x", 1) })
        );
        // The first registration stays.
        assert_eq!(
            up.upcast(RawEvent::new("x", 1, json!(1))).ok(),
            Some(vec![])
        );
    }

    #[test]
    fn validation_names_a_chain_that_stops_short() {
        let up = Upcasters::new()
            .rename("a", 1, "b", 1)
            .payload("b", 1, Ok)
            .custom("c", 1, &[("new", 2), ("nowhere", 1)], |_| Ok(vec![]));
        let err = up.validate::<Events>();
        assert_eq!(
            err,
            Err(RegistrationError::NotDecodable {
                upcaster: key("b", 1),
                produces: key("b", 2),
                decodable: vec![],
            })
        );
        assert_eq!(
            err.map_err(|e| e.to_string()),
            Err(
                "the upcaster of `b@1` produces `b@2`, which the aggregate does not decode \
                 (it has no event type `b`)"
                    .into()
            )
        );
        let up = Upcasters::new().payload("new", 2, Ok);
        assert_eq!(
            up.validate::<Events>().map_err(|e| e.to_string()),
            Err(
                "the upcaster of `new@2` produces `new@3`, which the aggregate does not \
                 decode (it decodes `new` at versions 1, 2)"
                    .into()
            )
        );
    }
}
