//! Frames to bytes and back: the length prefix, bounded decoding that never
//! panics, and the compact entries a frame carries (rebuilt into signed
//! entries at the hub).

use super::*;

/// Why bytes are not a frame.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("frame of {len} bytes is over the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
    #[error("frame truncated")]
    Truncated,
    #[error("malformed frame: {0}")]
    Malformed(#[from] postcard::Error),
    #[error("{0} trailing bytes after the frame")]
    Trailing(usize),
    #[error("invalid frame: {0}")]
    Invalid(&'static str),
}

pub(super) fn decode_exact<'a, T: Deserialize<'a>>(
    bytes: &'a [u8],
    max: usize,
) -> Result<T, WireError> {
    if bytes.len() > max {
        return Err(WireError::TooLarge {
            len: bytes.len(),
            max,
        });
    }
    let (v, rest) = postcard::take_from_bytes(bytes)?;
    if !rest.is_empty() {
        return Err(WireError::Trailing(rest.len()));
    }
    Ok(v)
}

impl Frame {
    /// The lane this frame belongs to.
    pub fn lane(&self) -> Lane {
        match self {
            Frame::Entries(_) | Frame::Ack(_) | Frame::Loss { .. } => Lane::Entries,
            Frame::Image(_) | Frame::ImageAck { .. } => Lane::Images,
            _ => Lane::Control,
        }
    }

    /// Length prefix and body, ready to write.
    pub fn encode(&self) -> Vec<u8> {
        let mut out =
            postcard::to_extend(self, vec![0u8; LEN_PREFIX]).expect("a frame always serialises");
        let len = u32::try_from(out.len() - LEN_PREFIX).unwrap_or(u32::MAX);
        out[..LEN_PREFIX].copy_from_slice(&len.to_be_bytes());
        out
    }

    /// Decode a frame body (without its length prefix) and check its bounds.
    pub fn decode_body(body: &[u8], max: usize) -> Result<Frame, WireError> {
        let f: Frame = decode_exact(body, max)?;
        f.validate()?;
        Ok(f)
    }

    /// Read the length prefix; refuse before allocating if it is too large.
    pub fn body_len(prefix: [u8; LEN_PREFIX], max: usize) -> Result<usize, WireError> {
        let len = u32::from_be_bytes(prefix) as usize;
        if len > max {
            return Err(WireError::TooLarge { len, max });
        }
        Ok(len)
    }

    /// Decode one whole frame from the front of `buf`, returning it and the
    /// bytes used; `Ok(None)` if `buf` holds only part of a frame.
    pub fn decode_prefixed(buf: &[u8], max: usize) -> Result<Option<(Frame, usize)>, WireError> {
        let Some(prefix) = buf.get(..LEN_PREFIX) else {
            return Ok(None);
        };
        let prefix: [u8; LEN_PREFIX] = prefix.try_into().map_err(|_| WireError::Truncated)?;
        let len = Self::body_len(prefix, max)?;
        let Some(body) = buf.get(LEN_PREFIX..LEN_PREFIX + len) else {
            return Ok(None);
        };
        Ok(Some((Self::decode_body(body, max)?, LEN_PREFIX + len)))
    }

    pub(super) fn validate(&self) -> Result<(), WireError> {
        match self {
            Frame::Entries(e) => {
                if e.entries.is_empty() || e.entries.len() > MAX_ENTRIES_PER_FRAME {
                    return Err(WireError::Invalid("entry count out of range"));
                }
                let Some(end) = e.first_seq.checked_add(e.entries.len() as u64) else {
                    return Err(WireError::Invalid("sequence overflow"));
                };
                if let Some(c) = &e.checkpoint {
                    if c.checkpoint.format != FORMAT_VERSION || c.checkpoint.size != end {
                        return Err(WireError::Invalid(
                            "checkpoint does not end where the entries do",
                        ));
                    }
                }
            }
            Frame::Image(i) if i.bytes.len() > MAX_IMAGE_BYTES => {
                return Err(WireError::Invalid("image over the size limit"));
            }
            Frame::Welcome(w) if w.receipt_cert.len() > MAX_SIGNER_CERT => {
                return Err(WireError::Invalid(
                    "receipt certificate over the size limit",
                ));
            }
            Frame::Loss { entry } if entry.len() > crate::log::MAX_ENTRY_BYTES => {
                return Err(WireError::Invalid("loss entry over the size limit"));
            }
            Frame::Policy { policy } if policy.len() > crate::control::MAX_POLICY_BYTES => {
                return Err(WireError::Invalid("policy over the size limit"));
            }
            Frame::Holds { doc } if doc.len() > crate::control::holds_doc::MAX_HOLDS_DOC_BYTES => {
                return Err(WireError::Invalid("holds document over the size limit"));
            }
            Frame::LocalEntries { doc }
                if doc.len() > crate::hotlist::local::MAX_LOCAL_DOC_BYTES =>
            {
                return Err(WireError::Invalid(
                    "local entries document over the size limit",
                ));
            }
            Frame::Hello(h) => {
                if h.hotlists.len() > MAX_HOTLIST_SOURCES {
                    return Err(WireError::Invalid("too many bulk lists in hello"));
                }
                if !h.hotlists.iter().all(|l| valid_source_name(&l.source)) {
                    return Err(WireError::Invalid("invalid bulk list name"));
                }
            }
            Frame::HotlistDelta {
                source,
                from,
                to,
                delta,
            } => {
                if !valid_source_name(source) {
                    return Err(WireError::Invalid("invalid bulk list name"));
                }
                if from >= to {
                    return Err(WireError::Invalid("a delta must go forward"));
                }
                if delta.len() > MAX_HOTLIST_CHUNK {
                    return Err(WireError::Invalid("delta over the size limit"));
                }
            }
            Frame::HotlistFull {
                source,
                generation,
                total,
                offset,
                chunk,
            } => {
                if !valid_source_name(source) {
                    return Err(WireError::Invalid("invalid bulk list name"));
                }
                if *generation == 0 {
                    return Err(WireError::Invalid("generations count from 1"));
                }
                if chunk.len() > MAX_HOTLIST_CHUNK {
                    return Err(WireError::Invalid("chunk over the size limit"));
                }
                if *total > MAX_GENERATION_BYTES {
                    return Err(WireError::Invalid("generation over the size limit"));
                }
                let end = offset.checked_add(chunk.len() as u64);
                if end.is_none_or(|e| e > *total) || (chunk.is_empty() && *total > 0) {
                    return Err(WireError::Invalid("chunk outside its generation"));
                }
            }
            Frame::HotlistApplied { source, .. } if !valid_source_name(source) => {
                return Err(WireError::Invalid("invalid bulk list name"));
            }
            Frame::ShowHeld { sources, .. } => {
                if sources.len() > MAX_HOTLIST_SOURCES {
                    return Err(WireError::Invalid("too many bulk lists asked for"));
                }
                if !sources.iter().all(|s| valid_source_name(s)) {
                    return Err(WireError::Invalid("invalid bulk list name"));
                }
            }
            Frame::HeldPolicy { policy } if policy.len() > crate::control::MAX_POLICY_BYTES => {
                return Err(WireError::Invalid("policy over the size limit"));
            }
            Frame::HeldList { header } if header.len() > MAX_HELD_HEADER => {
                return Err(WireError::Invalid("generation header over the size limit"));
            }
            Frame::WantImages { images } if images.len() > MAX_WANTED_IMAGES => {
                return Err(WireError::Invalid("too many wanted images"));
            }
            Frame::Refused(r) if r.detail.len() > 1024 => {
                return Err(WireError::Invalid("refusal text too long"));
            }
            _ => {}
        }
        Ok(())
    }
}

impl Entries {
    /// A frame of consecutive entries `log` (which must not be empty), with
    /// an optional checkpoint at its end. `None` if `log` is empty or its
    /// sequence numbers are not consecutive.
    pub fn from_log(log: Vec<SignedEntry>, checkpoint: Option<SignedCheckpoint>) -> Option<Self> {
        let first = log.first()?;
        let (first_seq, prev) = (first.seq(), first.header.prev);
        let consecutive = log
            .iter()
            .enumerate()
            .all(|(i, e)| Some(e.seq()) == first_seq.checked_add(i as u64));
        if !consecutive {
            return None;
        }
        Some(Entries {
            first_seq,
            prev,
            entries: log.into_iter().map(WireEntry::from_entry).collect(),
            checkpoint,
        })
    }

    /// Sequence number one past the last entry.
    pub fn end(&self) -> u64 {
        self.first_seq.saturating_add(self.entries.len() as u64)
    }

    /// Rebuild the full entries of `device` (hashing each header to link the
    /// next). For tests and tools; the hub's verifier does this in one pass
    /// with its checks ([`crate::sync::verify_batch`]).
    pub fn rebuild(self, device: &DeviceId) -> Vec<SignedEntry> {
        let mut prev = self.prev;
        let mut out = Vec::with_capacity(self.entries.len());
        for (i, w) in self.entries.into_iter().enumerate() {
            let e = w.into_entry(device.clone(), self.first_seq + i as u64, prev);
            prev = e.hash();
            out.push(e);
        }
        out
    }
}
