//! The sync core: how an edge uploads its signed log to the hub, as state
//! machines without I/O (the quinn-proto style).
//!
//! [`EdgeSync`] and [`HubSession`] take frames and the current time and
//! return frames, events and deadlines; they never touch a socket, a clock
//! or a disk. The edge and hub binaries are thin drivers around them (QUIC
//! streams, timers, redb), and the tests in this module run both cores over
//! a simulated link — loss, bursts, duplication, reordering, delay, outages —
//! under a virtual clock, deterministically.
//!
//! The flow: the edge says [`Hello`](crate::wire::Hello); the hub answers
//! with its latest signed receipt; the edge sends [`Entries`](crate::wire::Entries)
//! from that point, a window at a time, each frame with a checkpoint the
//! edge signs of its log up to the frame's end; the hub verifies each batch
//! ([`verify_batch`]: rebuild the compact entries, check each once,
//! each signature with `verify_strict` under the certificate in force for
//! it, the checkpoint against the entries), places it
//! on the stored chain ([`chain::place`]: duplicates are skipped, forks,
//! broken links and gaps refused), checks the checkpoint against the one it
//! kept ([`chain::check_checkpoint`]: a node shows one history), commits,
//! and only then answers with a new signed receipt. Images follow on their
//! own lane once the entry that names them is acknowledged.
//!
//! The edge takes no receipt on trust: its count may not exceed the edge's
//! log and its head must be the edge's own entry there, or the core stops
//! uploading ([`LinkState::Conflict`]: a wiped store, or two devices with
//! one identity). A receipt that goes backwards with a matching head is a
//! hub restored from a backup ([`EdgeEvent::HubBehind`]): the driver
//! re-queues the images above it, and the hub asks for images it lacks
//! ([`crate::wire::Frame::WantImages`]). An entry the edge cannot read back
//! from its own store is replaced by the node's signed loss record
//! ([`EdgeEvent::LocalLoss`], [`crate::wire::Frame::Loss`],
//! [`crate::log::loss`]), which the hub places as a covered gap.

pub mod chain;
mod edge;
mod hub;

#[cfg(test)]
mod harness;
#[cfg(test)]
mod tests;

pub use chain::{
    check_checkpoint, decide, new_key_effect, place, ChainError, ChainState, Decision, HeldKey,
    Placement, Progress,
};
pub use edge::{EdgeEvent, EdgeSync, LinkState, LogSource, Outgoing, SyncTuning};
pub use hub::{
    verify_batch, verify_frame, HubOutput, HubSession, NewKey, NodeKey, NodeKeys, Validity,
    Verified, VerifiedBatch,
};

/// Monotonic time as the cores see it: any fixed origin, chosen by the driver
/// (a real clock's start, or a test's virtual clock).
pub type Now = std::time::Duration;
#[cfg(test)]
mod vectors;
