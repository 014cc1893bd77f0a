//! The hash chain over the one events table: each event stored with a SHA-256 over its
//! own content and the previous event's hash, in global-position order, so that an edit,
//! a deleted or inserted row, or rows put in another order show up as a broken link.
//!
//! # The encoding, version 1
//!
//! Integers are big-endian; a "string" is its UTF-8 byte length as a `u64`, then the
//! bytes. The *content digest* of an event is SHA-256 of:
//!
//! | field | bytes |
//! |---|---|
//! | the tag `eventsource.event.v1` | 20 ASCII bytes |
//! | aggregate type | string |
//! | stream id | string |
//! | event type | string |
//! | event version | `u32` |
//! | event id | the UUID's 16 bytes |
//! | payload, in canonical JSON | string |
//! | metadata, in canonical JSON | string |
//!
//! and its *hash*, the link of the chain, is SHA-256 of:
//!
//! | field | bytes |
//! |---|---|
//! | the tag `eventsource.chain.v1` | 20 ASCII bytes |
//! | the previous event's hash (32 zero bytes for the first event of the chain) | 32 |
//! | position | `u64` |
//! | stream version | `u64` |
//! | recorded at, in microseconds since the Unix epoch | `i64` |
//! | the content digest | 32 |
//!
//! The split lets PostgreSQL compute the links inside the append statement (with its
//! built-in `sha256`), where positions, versions and the time are known, from digests the
//! client computed before; SQLite computes both in the client.
//!
//! Canonical JSON (see `canonical.rs`) makes the bytes the same whether the payload is
//! read from SQLite (the text as appended) or from PostgreSQL's `jsonb`, so a store copied
//! between the backends has the same hashes.

mod canonical;
mod verify;

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

pub use self::canonical::CanonicalError;
pub use self::verify::{
    ChainHead, ChainProblem, ChainProblemKind, ChainProgress, ChainReport, ChainVerify, VersionGap,
};
use crate::event::EventId;

/// The version of the encoding this build writes (stored with the chain's head).
pub(crate) const ENCODING_VERSION: u32 = 1;

/// The tag of a link.
pub(crate) const LINK_TAG: &[u8; 20] = b"eventsource.chain.v1";
/// The tag of a content digest.
const CONTENT_TAG: &[u8; 20] = b"eventsource.event.v1";

/// A link of the hash chain: the SHA-256 of one stored event and the link before it.
/// Shown and parsed as 64 lowercase hex digits; keep one elsewhere (a log, a ticket)
/// with its position as a checkpoint that [`Verify`](crate::Verify) can check the store
/// against.
///
/// ```
/// use eventsource::ChainHash;
///
/// let hash: ChainHash = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff".parse()?;
/// assert_eq!(hash.to_string(), "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff");
/// assert!("not hex".parse::<ChainHash>().is_err());
/// # Ok::<(), eventsource::ChainHashError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChainHash([u8; 32]);

impl ChainHash {
    /// What the first event of a chain links to: 32 zero bytes.
    pub const GENESIS: ChainHash = ChainHash([0; 32]);

    /// The hash from its 32 bytes.
    ///
    /// ```
    /// use eventsource::ChainHash;
    /// assert_eq!(ChainHash::from_bytes([0; 32]), ChainHash::GENESIS);
    /// ```
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        ChainHash(bytes)
    }

    /// The hash's 32 bytes.
    ///
    /// ```
    /// use eventsource::ChainHash;
    /// assert_eq!(ChainHash::GENESIS.as_bytes(), &[0; 32]);
    /// ```
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The hash from a stored column, if it has 32 bytes.
    pub(crate) fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(bytes).ok().map(ChainHash)
    }
}

impl fmt::Display for ChainHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ChainHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChainHash({self})")
    }
}

/// A [`ChainHash`] could not be parsed: it must be 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a chain hash is 64 hex digits, not {input:?}")]
pub struct ChainHashError {
    /// The text given.
    pub input: String,
}

impl FromStr for ChainHash {
    type Err = ChainHashError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let error = || ChainHashError {
            input: s.to_owned(),
        };
        let bytes = s.as_bytes();
        if bytes.len() != 64 {
            return Err(error());
        }
        let mut hash = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            let digit = |c: u8| match c {
                b'0'..=b'9' => Some(c - b'0'),
                b'a'..=b'f' => Some(c - b'a' + 10),
                b'A'..=b'F' => Some(c - b'A' + 10),
                _ => None,
            };
            let (Some(high), Some(low)) = (digit(pair[0]), digit(pair[1])) else {
                return Err(error());
            };
            hash[i] = high << 4 | low;
        }
        Ok(ChainHash(hash))
    }
}

/// The content of one stored event, as the chain covers it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Link<'a> {
    pub position: u64,
    pub aggregate_type: &'a str,
    pub stream_id: &'a str,
    pub version: u64,
    pub event_type: &'a str,
    pub event_version: u32,
    pub event_id: &'a EventId,
    pub recorded_at: i64,
    pub payload: &'a str,
    pub metadata: &'a str,
}

/// Computes links, reusing one buffer for the canonical JSON.
#[derive(Debug, Default)]
pub(crate) struct Hasher {
    scratch: Vec<u8>,
    canonical: canonical::Canonicalizer,
}

impl Hasher {
    /// Runs `f` with this thread's hasher, whose buffers are kept from one append to
    /// the next (a fresh one if the thread's is in use).
    pub(crate) fn with<T>(f: impl FnOnce(&mut Hasher) -> T) -> T {
        thread_local! {
            static HASHER: std::cell::RefCell<Hasher> = std::cell::RefCell::new(Hasher::default());
        }
        HASHER.with(|hasher| match hasher.try_borrow_mut() {
            Ok(mut hasher) => f(&mut hasher),
            Err(_) => f(&mut Hasher::default()),
        })
    }

    /// The hash of `link` after `prev`.
    ///
    /// # Errors
    /// The payload or the metadata is not JSON (a row edited by hand).
    pub(crate) fn link(
        &mut self,
        prev: &ChainHash,
        link: &Link<'_>,
    ) -> Result<ChainHash, CanonicalError> {
        let content = self.content(
            link.aggregate_type,
            link.stream_id,
            link.event_type,
            link.event_version,
            link.event_id,
            link.payload,
            link.metadata,
        )?;
        Ok(chain_link(
            prev,
            link.position,
            link.version,
            link.recorded_at,
            &content,
        ))
    }

    /// The content digest of an event (what its link covers besides its place).
    ///
    /// # Errors
    /// The payload or the metadata is not JSON.
    #[allow(
        clippy::too_many_arguments,
        reason = "the fields of the encoding, in its order"
    )]
    pub(crate) fn content(
        &mut self,
        aggregate_type: &str,
        stream_id: &str,
        event_type: &str,
        event_version: u32,
        event_id: &EventId,
        payload: &str,
        metadata: &str,
    ) -> Result<[u8; 32], CanonicalError> {
        let mut sha = Sha256::new();
        sha.update(CONTENT_TAG);
        string(&mut sha, aggregate_type.as_bytes());
        string(&mut sha, stream_id.as_bytes());
        string(&mut sha, event_type.as_bytes());
        sha.update(event_version.to_be_bytes());
        sha.update(event_id.as_uuid().as_bytes());
        self.scratch.clear();
        self.canonical
            .canonicalize(payload, &mut self.scratch)
            .map_err(|e| CanonicalError {
                what: "the payload",
                ..e
            })?;
        string(&mut sha, &self.scratch);
        self.scratch.clear();
        self.canonical
            .canonicalize(metadata, &mut self.scratch)
            .map_err(|e| CanonicalError {
                what: "the metadata",
                ..e
            })?;
        string(&mut sha, &self.scratch);
        Ok(sha.finalize().into())
    }
}

/// The link of the event at `position` (stream `version`, stored at `recorded_at`) with
/// content digest `content`, after `prev`.
pub(crate) fn chain_link(
    prev: &ChainHash,
    position: u64,
    version: u64,
    recorded_at: i64,
    content: &[u8; 32],
) -> ChainHash {
    let mut sha = Sha256::new();
    sha.update(LINK_TAG);
    sha.update(prev.0);
    sha.update(position.to_be_bytes());
    sha.update(version.to_be_bytes());
    sha.update(recorded_at.to_be_bytes());
    sha.update(content);
    ChainHash(sha.finalize().into())
}

fn string(sha: &mut Sha256, bytes: &[u8]) {
    sha.update((bytes.len() as u64).to_be_bytes());
    sha.update(bytes);
}

/// Canonical JSON of `text` (for tests that compare the backends' spellings).
#[doc(hidden)]
pub fn canonical_json(text: &str) -> Result<String, CanonicalError> {
    let mut out = Vec::new();
    canonical::Canonicalizer::default().canonicalize(text, &mut out)?;
    String::from_utf8(out).map_err(|_| CanonicalError {
        what: "the text",
        offset: 0,
        reason: "canonical form is not UTF-8",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link<'a>(id: &'a EventId, payload: &'a str) -> Link<'a> {
        Link {
            position: 7,
            aggregate_type: "account",
            stream_id: "acc-1",
            version: 2,
            event_type: "money.deposited",
            event_version: 1,
            event_id: id,
            recorded_at: 1_700_000_000_000_000,
            payload,
            metadata: "{}",
        }
    }

    #[test]
    fn every_field_and_the_previous_hash_change_the_link() -> Result<(), CanonicalError> {
        let id = EventId::new();
        let other_id = EventId::new();
        let mut h = Hasher::default();
        let base = link(&id, r#"{"amount":5}"#);
        let hash = h.link(&ChainHash::GENESIS, &base)?;
        // Spelled differently, the same JSON: the same link.
        let respelled = h.link(&ChainHash::GENESIS, &link(&id, r#"{ "amount" : 5.0 }"#))?;
        assert_eq!(hash, respelled);
        let changed = [
            Link {
                position: 8,
                ..base
            },
            Link {
                aggregate_type: "accoun",
                ..base
            },
            Link {
                stream_id: "acc-2",
                ..base
            },
            Link { version: 3, ..base },
            Link {
                event_type: "money.withdrawn",
                ..base
            },
            Link {
                event_version: 2,
                ..base
            },
            Link {
                event_id: &other_id,
                ..base
            },
            Link {
                recorded_at: 1_700_000_000_000_001,
                ..base
            },
            Link {
                payload: r#"{"amount":6}"#,
                ..base
            },
            Link {
                metadata: r#"{"a":1}"#,
                ..base
            },
            // Length prefixes: moving a byte from one string to the next is a change.
            Link {
                aggregate_type: "accounta",
                stream_id: "cc-1",
                ..base
            },
        ];
        for (i, changed) in changed.iter().enumerate() {
            assert_ne!(h.link(&ChainHash::GENESIS, changed)?, hash, "field {i}");
        }
        assert_ne!(h.link(&hash, &base)?, hash);
        Ok(())
    }

    #[test]
    fn text_that_is_not_json_is_named() {
        let id = EventId::new();
        let mut h = Hasher::default();
        let bad_payload = h.link(&ChainHash::GENESIS, &link(&id, "{nope"));
        assert!(bad_payload.is_err_and(|e| e.to_string().starts_with("the payload is not JSON")),);
        let bad_metadata = h.link(
            &ChainHash::GENESIS,
            &Link {
                metadata: "[",
                ..link(&id, "{}")
            },
        );
        assert!(bad_metadata.is_err_and(|e| e.to_string().starts_with("the metadata is not JSON")),);
    }

    #[test]
    fn canonical_json_is_exposed_for_the_backend_tests() -> Result<(), CanonicalError> {
        assert_eq!(
            canonical_json(r#"{ "b": 1.0, "a": [true] }"#)?,
            r#"{"a":[true],"b":1}"#
        );
        assert!(canonical_json("{").is_err());
        Ok(())
    }

    #[test]
    fn hashes_print_and_parse_as_hex() -> Result<(), ChainHashError> {
        let hash = ChainHash::from_bytes([0xab; 32]);
        assert_eq!(hash.to_string(), "ab".repeat(32));
        assert_eq!("AB".repeat(32).parse::<ChainHash>()?, hash);
        // Every digit, in both cases, to its nibble.
        let digits = "0123456789abcdef".repeat(4);
        let mut bytes = [0u8; 32];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = u8::try_from((2 * i % 16) * 16 + (2 * i + 1) % 16).unwrap_or(0);
        }
        assert_eq!(digits.parse::<ChainHash>()?, ChainHash::from_bytes(bytes));
        assert_eq!(
            digits.to_uppercase().parse::<ChainHash>()?,
            ChainHash::from_bytes(bytes)
        );
        assert_eq!(ChainHash::from_bytes(bytes).to_string(), digits);
        assert_eq!(
            format!("{:?}", ChainHash::from_bytes(bytes)),
            format!("ChainHash({digits})")
        );
        assert!("ab".repeat(31).parse::<ChainHash>().is_err());
        assert!("g".repeat(64).parse::<ChainHash>().is_err());
        Ok(())
    }
}
