//! Which US state issued a plate, read from the words printed on it.
//!
//! Data flow for one plate crop ([`StateReader::read`]):
//! 1. **words** — PP-OCRv4 ([`ppocr`]) reads the plate's printed lines. By
//!    default ([`Mode::Bands`]) it reads fixed bands of the crop where
//!    plates print their state name and slogan (the top and the bottom) in
//!    one batch; [`Mode::Detect`] first finds the text lines with the
//!    detection model and reads each.
//! 2. **match** — the words are matched fuzzily against the names, slogans
//!    and web addresses of the 50 states and DC ([`table`], [`matching`]).
//! 3. **abstain** — a state is given only when the top state's confidence
//!    reaches [`StateOptions::threshold`]; otherwise `state` is `None` and
//!    the top three still say what was likely.
//!
//! The models come from `.runtime/ppocr/` (`scripts/install-ppocr.sh`), each
//! checked against the SHA-256 pinned in [`models`]. Nothing read here is
//! logged: the evidence names a state.

pub mod matching;
pub mod models;
pub mod ppocr;
pub mod table;

use std::path::Path;

use self::matching::Line;
use self::models::{TEXT_DETECTOR, TEXT_RECOGNISER};
use super::engine::{self, InferenceError};
use super::image::RgbImage;
use super::models::{load_verified, ModelError};
use super::runtime;

/// Which state issued a plate, or that it could not be told.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StateRead {
    /// Two-letter postal code, upper case (DC included), only above the
    /// threshold.
    pub state: Option<String>,
    /// Confidence of the top state, 0..1 (also when abstaining).
    pub confidence: f32,
    /// Up to three (code, confidence), best first (may be non-empty when
    /// abstaining).
    pub top3: Vec<(String, f32)>,
    /// What on the plate the state was read from, for provenance, e.g.
    /// `printed "CALIFORNIA"`, `slogan "Sunshine State"` (never logged).
    pub evidence: Option<String>,
}

/// How the plate's words are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Read fixed bands of the crop (top and bottom), no text detection.
    Bands,
    /// Detect text lines, then read each.
    Detect,
}

/// How the state reader works; `Default` is the tuned setting.
#[derive(Debug, Clone)]
pub struct StateOptions {
    pub mode: Mode,
    /// A state is given only at this confidence or above (chosen on the
    /// development set; see docs/recognition-state.md).
    pub threshold: f32,
    /// ONNX Runtime intra-op threads per model.
    pub threads: usize,
    /// Bands read in [`Mode::Bands`], as (top, bottom) fractions of the
    /// crop's height.
    pub bands: Vec<(f32, f32)>,
    /// The horizontal extent of every band, as (left, right) fractions of
    /// the crop's width: the corners hold registration stickers, not the
    /// state's words, and a narrower band reads faster.
    pub band_x: (f32, f32),
}

impl Default for StateOptions {
    fn default() -> Self {
        Self {
            mode: Mode::Bands,
            threshold: DEFAULT_THRESHOLD,
            threads: 1,
            bands: vec![(0.0, 0.33), (0.7, 1.0)],
            band_x: (0.1, 0.9),
        }
    }
}

/// See [`StateOptions::threshold`]. On the development set every threshold
/// from 0.10 to 0.95 keeps every given state right (the highest confidence
/// any wrong state reached there is 0.06), so the set does not pin it. At
/// 0.5 a name matched at the similarity floor (a quarter of its letters
/// misread) is given only when the OCR is sure of the line (mean character
/// probability ≥ 0.78), a slogan at the floor only at ≥ 0.93, and 96 % of
/// the development crops still get a state. Below [`matching::WEAK_CAP`]
/// unaccepted fuzzy candidates would be given: never go there.
pub const DEFAULT_THRESHOLD: f32 = 0.5;

/// Why the state reader could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum StateLoadError {
    #[error(transparent)]
    Locate(#[from] models::LocateError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("{model}: {message}")]
    Metadata { model: String, message: String },
}

/// The PP-OCR sessions. Not shareable between threads at once: make one
/// per worker.
pub struct StateReader {
    recogniser: ppocr::Recogniser,
    detector: Option<ppocr::Detector>,
    options: StateOptions,
}

impl std::fmt::Debug for StateReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateReader")
            .field("options", &self.options)
            .finish()
    }
}

impl StateReader {
    /// Loads the models from the folder [`models::locate`] finds.
    pub fn load(options: StateOptions) -> Result<Self, StateLoadError> {
        let dir = models::locate()?;
        Self::load_from(&dir, options)
    }

    /// Loads the models from `dir`, each checked against its pinned hash.
    pub fn load_from(dir: &Path, options: StateOptions) -> Result<Self, StateLoadError> {
        let (_, env) = runtime::environment().map_err(ModelError::from)?;
        let files = match options.mode {
            Mode::Bands => vec![TEXT_RECOGNISER],
            Mode::Detect => vec![TEXT_RECOGNISER, TEXT_DETECTOR],
        };
        let bytes = load_verified(dir, &files)?;
        let t = options.threads.max(1);
        let rec = engine::session(env, TEXT_RECOGNISER, &bytes[0], t)?;
        let recogniser =
            ppocr::Recogniser::new(rec).map_err(|message| StateLoadError::Metadata {
                model: TEXT_RECOGNISER.file.to_string(),
                message,
            })?;
        let detector = match bytes.get(1) {
            Some(b) => Some(ppocr::Detector::new(engine::session(
                env,
                TEXT_DETECTOR,
                b,
                t,
            )?)),
            None => None,
        };
        Ok(Self {
            recogniser,
            detector,
            options,
        })
    }

    /// The models in use, e.g. `ppocr-v4-rec@48fc40f2`.
    pub fn model_id(&self) -> String {
        match self.detector {
            Some(_) => format!("{}+{}", TEXT_DETECTOR.id(), TEXT_RECOGNISER.id()),
            None => TEXT_RECOGNISER.id(),
        }
    }

    /// The lines of text read on a plate crop, top to bottom: every band
    /// (or every detected line) at once.
    pub fn lines(&mut self, crop: &RgbImage) -> Result<Vec<Line>, InferenceError> {
        let regions = match (&mut self.detector, self.options.mode) {
            (Some(det), Mode::Detect) => det.detect(crop, 320)?,
            _ => (0..self.options.bands.len())
                .map(|i| self.band(crop, i))
                .collect(),
        };
        self.read_regions(crop, &regions)
    }

    /// Reads which state issued the plate in `crop` (a plate crop, RGB).
    /// In [`Mode::Bands`] the bands are read one after another and reading
    /// stops at the first that settles the state, so most plates cost one
    /// band (the top, where most print their name). A state read only from
    /// words another state prints too (WASHINGTON, part of "Washington DC")
    /// does not settle it.
    pub fn read(&mut self, crop: &RgbImage) -> Result<StateRead, InferenceError> {
        self.read_with_lines(crop).map(|(r, _)| r)
    }

    /// As [`StateReader::read`], also returning the lines read (for tuning;
    /// never logged).
    pub fn read_with_lines(
        &mut self,
        crop: &RgbImage,
    ) -> Result<(StateRead, Vec<Line>), InferenceError> {
        let threshold = self.options.threshold;
        if self.options.mode == Mode::Detect {
            let lines = self.lines(crop)?;
            return Ok((decide(&lines, threshold), lines));
        }
        let mut lines = Vec::new();
        let mut read = decide(&lines, threshold);
        for i in 0..self.options.bands.len() {
            let band = self.band(crop, i);
            lines.extend(self.read_regions(crop, &[band])?);
            let settled;
            (read, settled) = decide_settled(&lines, threshold);
            if settled {
                break;
            }
        }
        Ok((read, lines))
    }

    /// Band `i` of the options in crop pixels.
    fn band(&self, crop: &RgbImage, i: usize) -> [f32; 4] {
        let (w, h) = (crop.width() as f32, crop.height() as f32);
        let (top, bottom) = self.options.bands.get(i).copied().unwrap_or((0.0, 1.0));
        let (left, right) = self.options.band_x;
        [left * w, top * h, right * w, bottom * h]
    }

    fn read_regions(
        &mut self,
        crop: &RgbImage,
        regions: &[[f32; 4]],
    ) -> Result<Vec<Line>, InferenceError> {
        let read = self.recogniser.read(crop, regions)?;
        Ok(read
            .into_iter()
            .map(|l| Line {
                confidence: l.confidence(),
                text: l.text,
            })
            .collect())
    }
}

/// The state the lines name, given only at `threshold` or above.
pub fn decide(lines: &[Line], threshold: f32) -> StateRead {
    decide_settled(lines, threshold).0
}

/// As [`decide`], and whether the read is settled: a state was given, and
/// not only from words another state also prints (then the next band is
/// read too).
pub fn decide_settled(lines: &[Line], threshold: f32) -> (StateRead, bool) {
    let ranked = matching::rank(lines);
    let confidence = ranked.top3.first().map_or(0.0, |(_, c)| *c);
    let state = ranked
        .top3
        .first()
        .filter(|(_, c)| *c >= threshold && !ranked.unsure)
        .map(|(code, _)| code.clone());
    let settled = state.is_some() && !ranked.ambiguous;
    let read = StateRead {
        state,
        confidence,
        top3: ranked.top3,
        evidence: ranked.evidence,
    };
    (read, settled)
}
