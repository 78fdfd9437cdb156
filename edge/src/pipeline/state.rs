//! The state each read's plate was issued in, read once per read on its
//! crop (`[capture] read_state`), as the signed read records it.

use alpr_shared::types::{confidence_from_f32, Issuer, MAX_TEXT_LEN};
use anyhow::Context;
use tracing::warn;

use crate::config::CaptureConfig;
use crate::recognise::state::{StateOptions, StateReader};
use crate::recognise::PlateRead;

/// The state reader and the model id its readings record.
pub(super) struct StateReading {
    reader: std::sync::Mutex<StateReader>,
    model: String,
}

impl StateReading {
    pub(super) fn open(cfg: &CaptureConfig) -> anyhow::Result<Option<StateReading>> {
        if !cfg.read_state {
            return Ok(None);
        }
        let reader = StateReader::load(StateOptions {
            threads: 1,
            ..StateOptions::default()
        })
        .context(
            "loading the state reader's models (scripts/setup.sh installs them; or set \
             read_state = false in [capture])",
        )?;
        Ok(Some(StateReading {
            model: reader.model_id(),
            reader: std::sync::Mutex::new(reader),
        }))
    }

    /// The issuer of a plate: its region estimate and, when the reader
    /// could look, its state reading (an error costs the state, not the
    /// read).
    pub(super) fn issuer(&self, plate: &PlateRead) -> Issuer {
        let region = plate.region.as_ref().map(|r| r.name.clone());
        let read = match self.reader.lock() {
            Ok(mut r) => r.read(&plate.crop).map_err(|e| e.to_string()),
            Err(_) => Err("the state reader failed earlier".into()),
        };
        match read {
            Ok(s) => Issuer::Read {
                region,
                state: alpr_shared::types::StateReading {
                    state: s.state,
                    confidence: confidence_from_f32(s.confidence),
                    top: s
                        .top3
                        .into_iter()
                        .map(|(code, c)| (code, confidence_from_f32(c)))
                        .collect(),
                    evidence: s.evidence.map(|e| e.chars().take(MAX_TEXT_LEN).collect()),
                    model: self.model.clone(),
                },
            },
            Err(e) => {
                warn!(error = %e, "state not read");
                Issuer::from_region(region)
            }
        }
    }
}
