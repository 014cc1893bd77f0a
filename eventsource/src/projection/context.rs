//! What a projection's handler gets beside the event: [`Context`].

use crate::event::{EventLocation, Metadata, RecordedEventRef, Timestamp};
use crate::projection::HandlerError;
use crate::version::{Position, StreamId, Version};

/// The transaction a batch runs in.
pub(crate) enum Tx<'a> {
    Sqlite(&'a rusqlite::Transaction<'a>),
    #[cfg(feature = "postgres")]
    Postgres(postgres::Transaction<'a>),
}

/// The envelope of the event being projected, and the transaction of its batch. (In a
/// projection's reset, the envelope is empty: position 0, empty strings.)
///
/// Write a read model that lives beside the events through [`Context::sqlite`] or
/// [`Context::postgres`]: those writes commit with the checkpoint, exactly once. Do not
/// append to the store from a handler (the batch holds the store's write lock on
/// SQLite): record decisions in the read model, or run commands after the batch.
pub struct Context<'a> {
    /// `None` in a reset.
    event: Option<RecordedEventRef<'a>>,
    tx: Tx<'a>,
}

impl std::fmt::Debug for Context<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let backend = match self.tx {
            Tx::Sqlite(_) => "sqlite",
            #[cfg(feature = "postgres")]
            Tx::Postgres(_) => "postgres",
        };
        f.debug_struct("Context")
            .field("event", &self.event)
            .field("backend", &backend)
            .finish()
    }
}

/// The error of [`Context::sqlite`] and [`Context::postgres`] on the other backend.
#[derive(Debug, thiserror::Error)]
#[error(
    "this projection runs on {running}, not {asked}: its handlers must write through `Context::{running}()`"
)]
pub struct WrongBackend {
    running: &'static str,
    asked: &'static str,
}

impl<'a> Context<'a> {
    /// A context for a batch's transaction, before its first event (the reset sees it
    /// so: an empty envelope).
    pub(crate) fn new(tx: Tx<'a>) -> Self {
        Context { event: None, tx }
    }

    pub(crate) fn set_event(&mut self, event: RecordedEventRef<'a>) {
        self.event = Some(event);
    }

    /// The event, or an empty one (position 0, empty strings) in a reset.
    fn event(&self) -> RecordedEventRef<'a> {
        self.event.unwrap_or(RecordedEventRef {
            position: Position::START,
            aggregate_type: "",
            stream_id: "",
            version: Version::NONE,
            event_type: "",
            event_version: 0,
            event_id: "",
            recorded_at: Timestamp::from_micros(0),
            payload: "null",
            metadata: "{}",
        })
    }

    #[cfg(feature = "postgres")]
    pub(crate) fn into_tx(self) -> Tx<'a> {
        self.tx
    }

    /// The event's place in the global order: an idempotency key for read models
    /// outside the store.
    pub fn position(&self) -> Position {
        self.event().position
    }

    /// The aggregate type of the event's stream.
    pub fn aggregate_type(&self) -> &'a str {
        self.event().aggregate_type
    }

    /// The id of the event's stream within its aggregate type.
    pub fn stream_id(&self) -> &'a str {
        self.event().stream_id
    }

    /// The event's stream.
    pub fn stream(&self) -> StreamId {
        StreamId::new(self.event().aggregate_type, self.event().stream_id)
    }

    /// The event's version within its stream.
    pub fn version(&self) -> Version {
        self.event().version
    }

    /// The event's id as stored (a UUID).
    pub fn event_id(&self) -> &'a str {
        self.event().event_id
    }

    /// When the event was appended.
    pub fn recorded_at(&self) -> Timestamp {
        self.event().recorded_at
    }

    /// The event's stored type and the version it was stored at.
    pub fn stored_type(&self) -> (&'a str, u32) {
        let event = self.event();
        (event.event_type, event.event_version)
    }

    /// The event's payload as stored (JSON text).
    pub fn payload(&self) -> &'a str {
        self.event().payload
    }

    /// Where the event is, for messages.
    pub fn location(&self) -> EventLocation {
        self.event().location()
    }

    /// The event's metadata.
    ///
    /// # Errors
    /// When the stored metadata is not a JSON object.
    pub fn metadata(&self) -> Result<Metadata, HandlerError> {
        Ok(serde_json::from_str(self.event().metadata)?)
    }

    /// The batch's transaction on the store's SQLite file: write the read model through
    /// it, and it commits with the checkpoint.
    ///
    /// # Errors
    /// When the projection runs on another backend.
    pub fn sqlite(&self) -> Result<&rusqlite::Transaction<'a>, WrongBackend> {
        match &self.tx {
            Tx::Sqlite(tx) => Ok(tx),
            #[cfg(feature = "postgres")]
            Tx::Postgres(_) => Err(WrongBackend {
                running: "postgres",
                asked: "sqlite",
            }),
        }
    }

    /// The batch's transaction on the store's PostgreSQL database (its search path is
    /// the server's default: name the read model's schema in your SQL): write the read
    /// model through it, and it commits with the checkpoint.
    ///
    /// # Errors
    /// When the projection runs on another backend.
    #[cfg(feature = "postgres")]
    pub fn postgres(&mut self) -> Result<&mut postgres::Transaction<'a>, WrongBackend> {
        match &mut self.tx {
            Tx::Postgres(tx) => Ok(tx),
            Tx::Sqlite(_) => Err(WrongBackend {
                running: "sqlite",
                asked: "postgres",
            }),
        }
    }
}
