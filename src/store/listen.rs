//! Listening to changes of a fixed set of documents (Firestore's `Listen`
//! stream with a documents target).
//!
//! Only document-id targets: on the emulator a query listener is sent a RESET
//! and its whole result set on every change (FIRESTORE-NOTES.md), while a
//! documents target gets incremental changes. The stream is long-lived and is
//! not bounded by any request deadline; it ends (with an error, or `None`) when
//! the connection breaks, and the caller opens a new one. Nothing is resumed:
//! a listener that reconnects must re-read whatever it keeps track of.

use futures::stream::BoxStream;

use super::{DocPath, StoreResult};

/// What a listen stream reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenEvent {
    /// The document was written or deleted (or, before [`ListenEvent::Current`],
    /// is part of the initial state: Firestore reports a missing document as
    /// deleted, the embedded store reports existing ones only). At least once
    /// per change: the emulator may repeat a document's state.
    Changed(DocPath),
    /// Every change committed before the stream was opened has been delivered:
    /// from here on, the stream is live. Sent once per stream.
    Current,
}

/// A stream of [`ListenEvent`]s. An `Err` item ends it.
pub type ListenStream = BoxStream<'static, StoreResult<ListenEvent>>;
