//! Plate recognition: detector + OCR through ONNX Runtime.
//!
//! Data flow for one frame ([`Recogniser::recognise`]):
//! 1. **detect** — the YOLOv9-t detector ([`models::DETECTOR`]) finds plate
//!    boxes in a 416² letterbox of the frame;
//! 2. **OCR** — each box is cut out several times with a little margin
//!    (the detector's boxes are tight; see [`RecogniserOptions::crop_pads`])
//!    and every crop is read, in one batch per model, by the CCT-xs v2 OCR
//!    and (by default) the v1 OCR. A box whose first crop, read by v2 alone, is already sure
//!    ([`RecogniserOptions::sure_confidence`]) skips the rest of the
//!    ensemble, which keeps the average cost near one OCR call per plate.
//! 3. **decide** — the per-slot probabilities of all reads of a box are
//!    fused, O is folded into 0 on US-style plates (see [`decide`]), and the
//!    most probable well-formed strings become the text and its
//!    alternatives. Boxes that do not read as a plate rank last; faint boxes
//!    that do not read as a plate are dropped.
//!
//! Setup:
//! - the ONNX Runtime library is found as [`runtime`] says (`ORT_DYLIB_PATH`,
//!   else `.runtime/onnxruntime/` above the executable or the current
//!   directory; `scripts/install-ort.sh` puts it there);
//! - the models directory comes from the caller: on the command line
//!   `--models DIR`, else the environment variable `ALPR_MODELS`, else
//!   `./models`. Every file is checked against the SHA-256 pinned in
//!   [`models`] before it is loaded; a missing or altered file is named in
//!   the error.
//!
//! Streams: [`fusion::Tracker`] turns per-frame reads into one read per
//! vehicle pass. Parallel folders: [`pipeline`].

pub mod batch;
pub mod decide;
pub mod engine;
pub mod exif;
pub mod fusion;
pub mod image;
pub mod labelled;
pub mod models;
pub mod runtime;
pub mod state;

use std::path::Path;
use std::time::{Duration, Instant};

pub use self::engine::{Detection, InferenceError};
pub use self::image::{decode, DecodeError, RgbImage};
pub use self::models::ModelError;
pub use self::runtime::RuntimeError;

use self::engine::{Detector, Ocr, OcrOut};
use self::models::{DETECTOR, OCR_V1, OCR_V2, REGIONS};

/// See [`RecogniserOptions::sure_detection_score`].
const MIN_WEAK_BOX_READ: f32 = 0.05;

/// The environment variable naming the models directory.
pub const MODELS_ENV: &str = "ALPR_MODELS";

/// How the recogniser works; `Default` is the tuned setting.
#[derive(Debug, Clone)]
pub struct RecogniserOptions {
    /// ONNX Runtime intra-op threads per model. 1 when several recognisers
    /// run side by side (one per core); the core count for lowest latency
    /// of a single recogniser.
    pub threads: usize,
    /// Detector boxes below this score are ignored.
    pub min_detection_score: f32,
    /// Boxes below this score are kept only if they read as a plate (string
    /// probability at least 0.05): a faint plate is found, a faint
    /// non-plate is not reported.
    pub sure_detection_score: f32,
    /// Margins, as a fraction of the box's width and height on each side,
    /// of the crops read for each box (one crop per entry).
    pub crop_pads: Vec<(f32, f32)>,
    /// Also read every crop with the v1 OCR and fuse it in.
    pub use_v1: bool,
    /// At most this many plates per frame (best first).
    pub max_plates: usize,
    /// Read O as 0 on plates whose region guess is the United States,
    /// Canada or unknown (those print O and 0 alike); elsewhere (Brazil's
    /// letter blocks, say) the OCR's own O/0 choice stands.
    pub fold_o_into_zero: bool,
    /// How many alternatives to keep per plate.
    pub alternatives: usize,
    /// A box whose first crop, read by the v2 OCR alone, gives a string at
    /// least this probable is not read again; others get every crop and
    /// model. `None` reads every box with everything.
    pub sure_confidence: Option<f32>,
}

impl Default for RecogniserOptions {
    fn default() -> Self {
        Self {
            threads: 1,
            min_detection_score: 0.2,
            sure_detection_score: 0.3,
            crop_pads: vec![(0.08, 0.15), (0.04, 0.08), (0.12, 0.22)],
            use_v1: true,
            max_plates: 8,
            fold_o_into_zero: true,
            alternatives: 8,
            sure_confidence: Some(0.95),
        }
    }
}

/// Why a frame could not be recognised.
#[derive(Debug, thiserror::Error)]
pub enum RecogniseError {
    #[error("could not read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("inference failed: {0}")]
    Inference(#[from] InferenceError),
}

/// A region guess from the OCR's region head.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RegionGuess {
    pub name: String,
    pub probability: f32,
}

/// Another reading of the same plate.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Alternative {
    pub text: String,
    pub probability: f32,
}

/// One plate read from one frame.
#[derive(Debug, Clone)]
pub struct PlateRead {
    /// A–Z and 0–9 only, 2..=8 characters.
    pub text: String,
    /// Probability (0..1) that `text` is exactly right, per the fused OCR.
    pub confidence: f32,
    /// One probability per character of `text`.
    pub char_confidence: Vec<f32>,
    /// The detector's box in frame pixels.
    pub bbox: Detection,
    pub region: Option<RegionGuess>,
    /// Other readings, most probable first (excluding `text`), including the
    /// O spellings of any 0 when O was folded into 0.
    pub alternatives: Vec<Alternative>,
    /// What the recogniser decided beyond the raw argmax, for people.
    pub decisions: Vec<String>,
    /// The plate with a small margin, RGB.
    pub crop: RgbImage,
    /// e.g. `yolo-v9-t-416@5a5eac89`.
    pub detector_model: String,
    /// e.g. `cct_xs_v2_global@8031afb5+cct_xs_v1_global@c1ae2ae0`.
    pub ocr_model: String,
}

impl PlateRead {
    /// The crop as JPEG bytes (the blob whose SHA-256 is a read's `crop_hash`).
    pub fn crop_jpeg(&self) -> Result<Vec<u8>, String> {
        self.crop.encode_jpeg(90)
    }
}

/// Time spent per stage on one frame.
#[derive(Debug, Clone, Copy, Default)]
pub struct StageTimes {
    pub decode: Duration,
    pub detect: Duration,
    pub ocr: Duration,
    pub decide: Duration,
}

impl StageTimes {
    pub fn total(&self) -> Duration {
        self.decode + self.detect + self.ocr + self.decide
    }
}

/// Detector and OCR sessions. Not shareable between threads at once (ONNX
/// Runtime sessions run with `&mut`): make one per worker.
pub struct Recogniser {
    detector: Detector,
    ocr_v2: Ocr,
    ocr_v1: Option<Ocr>,
    options: RecogniserOptions,
    detector_id: String,
    ocr_id: String,
}

impl std::fmt::Debug for Recogniser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recogniser")
            .field("detector", &self.detector_id)
            .field("ocr", &self.ocr_id)
            .field("options", &self.options)
            .finish()
    }
}

impl Recogniser {
    /// Loads ONNX Runtime (once per process), checks the model files in
    /// `models_dir` against their pinned hashes and opens them.
    pub fn open(models_dir: &Path, options: RecogniserOptions) -> Result<Self, ModelError> {
        let mut files = vec![DETECTOR, OCR_V2];
        if options.use_v1 {
            files.push(OCR_V1);
        }
        let bytes = models::load_verified(models_dir, &files)?;
        let (_, env) = runtime::environment()?;
        let t = options.threads;
        let detector = Detector::new(engine::session(env, DETECTOR, &bytes[0], t)?);
        let ocr_v2 = Ocr::new(engine::session(env, OCR_V2, &bytes[1], 1)?, "ocr v2");
        let ocr_v1 = match bytes.get(2) {
            Some(b) => Some(Ocr::new(engine::session(env, OCR_V1, b, 1)?, "ocr v1")),
            None => None,
        };
        let mut ocr_id = OCR_V2.id();
        if ocr_v1.is_some() {
            ocr_id = format!("{ocr_id}+{}", OCR_V1.id());
        }
        let mut rec = Self {
            detector,
            ocr_v2,
            ocr_v1,
            options,
            detector_id: DETECTOR.id(),
            ocr_id,
        };
        rec.warm_up().map_err(|e| ModelError::Session {
            model: e.model.to_string(),
            message: format!("first inference failed: {}", e.message),
        })?;
        Ok(rec)
    }

    /// Runs every model once on a blank picture: ONNX Runtime finishes
    /// setting up on the first run, which would otherwise land on the first
    /// real frame (and prove the models work before the node says it is up).
    fn warm_up(&mut self) -> Result<(), InferenceError> {
        let blank = RgbImage::from_raw(64, 32, vec![114; 64 * 32 * 3]).ok_or(InferenceError {
            model: "warm-up",
            message: "blank image".into(),
        })?;
        self.detector.detect(&blank, 1.0)?;
        let region = [[0.0, 0.0, 64.0, 32.0]];
        self.ocr_v2.read(&blank, &region)?;
        if let Some(v1) = &mut self.ocr_v1 {
            v1.read(&blank, &region)?;
        }
        Ok(())
    }

    pub fn options(&self) -> &RecogniserOptions {
        &self.options
    }

    pub fn detector_model(&self) -> &str {
        &self.detector_id
    }

    pub fn ocr_model(&self) -> &str {
        &self.ocr_id
    }

    /// Reads the plates in a frame, best first. No plate gives an empty list.
    pub fn recognise(&mut self, image: &RgbImage) -> Result<Vec<PlateRead>, InferenceError> {
        self.recognise_timed(image).map(|(r, _)| r)
    }

    /// Reads an image file (JPEG, PNG or BMP), timing each stage.
    pub fn recognise_file(
        &mut self,
        path: &Path,
    ) -> Result<(Vec<PlateRead>, StageTimes), RecogniseError> {
        let t0 = Instant::now();
        let bytes = std::fs::read(path).map_err(|source| RecogniseError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let img = decode(&bytes)?;
        let decode_time = t0.elapsed();
        let (reads, mut times) = self.recognise_timed(&img)?;
        times.decode = decode_time;
        Ok((reads, times))
    }

    /// As [`Self::recognise`], with the time of each stage (decode is zero).
    pub fn recognise_timed(
        &mut self,
        image: &RgbImage,
    ) -> Result<(Vec<PlateRead>, StageTimes), InferenceError> {
        let mut times = StageTimes::default();
        let t = Instant::now();
        let mut dets = self
            .detector
            .detect(image, self.options.min_detection_score)?;
        // The detector runs NMS; drop any near-duplicates it left.
        let mut kept: Vec<Detection> = Vec::new();
        for d in dets.drain(..) {
            if kept.iter().all(|k| k.iou(&d) < 0.6) {
                kept.push(d);
            }
        }
        kept.truncate(self.options.max_plates.max(1) * 2);
        times.detect = t.elapsed();

        let t = Instant::now();
        let pads = if self.options.crop_pads.is_empty() {
            vec![(0.08, 0.15)]
        } else {
            self.options.crop_pads.clone()
        };
        // Stage 1: the v2 OCR reads the first crop of every box.
        let first: Vec<[f32; 4]> = kept.iter().map(|d| pad_box(d, pads[0])).collect();
        let mut outs: Vec<Vec<OcrOut>> = self
            .ocr_v2
            .read(image, &first)?
            .into_iter()
            .map(|o| o.into_iter().collect())
            .collect();
        // Stage 2: boxes that read with less than `sure_confidence` get the
        // whole ensemble: the other crops with v2, every crop with v1.
        let doubtful: Vec<usize> = (0..kept.len())
            .filter(|&i| {
                self.options
                    .sure_confidence
                    .is_none_or(|sure| self.quick_confidence(&outs[i]) < sure)
            })
            .collect();
        if !doubtful.is_empty() {
            let rest: Vec<[f32; 4]> = doubtful
                .iter()
                .flat_map(|&i| pads[1..].iter().map(move |&p| (i, p)))
                .map(|(i, p)| pad_box(&kept[i], p))
                .collect();
            let all: Vec<[f32; 4]> = doubtful
                .iter()
                .flat_map(|&i| pads.iter().map(move |&p| (i, p)))
                .map(|(i, p)| pad_box(&kept[i], p))
                .collect();
            let (v2, v1) = self.read_both(image, &rest, &all);
            let (v2, v1) = (v2?, v1?);
            let (n2, n1) = (pads.len() - 1, pads.len());
            for (k, &i) in doubtful.iter().enumerate() {
                let more = v2
                    .iter()
                    .skip(k * n2)
                    .take(n2)
                    .chain(v1.iter().skip(k * n1).take(n1));
                outs[i].extend(more.flatten().cloned());
            }
        }
        times.ocr = t.elapsed();

        let t = Instant::now();
        let mut reads = Vec::new();
        for (i, det) in kept.iter().enumerate() {
            let o: Vec<&OcrOut> = outs[i].iter().collect();
            if let Some(read) = self.decide(image, det, &o, first.get(i).copied()) {
                // A weak box must at least read as a plate.
                if det.score >= self.options.sure_detection_score
                    || read.confidence >= MIN_WEAK_BOX_READ
                {
                    reads.push(read);
                }
            }
        }
        // Rank: a box that reads as a plate beats one that does not.
        reads.sort_by(|a, b| {
            let ka = a.confidence.sqrt() * a.bbox.score;
            let kb = b.confidence.sqrt() * b.bbox.score;
            kb.total_cmp(&ka)
        });
        reads.truncate(self.options.max_plates.max(1));
        times.decide = t.elapsed();
        Ok((reads, times))
    }

    /// v2 on `v2_regions` and v1 (if enabled) on `v1_regions`; side by side
    /// when this recogniser has more than one core. The OCR models are
    /// small, so each has one thread.
    #[allow(clippy::type_complexity)]
    fn read_both(
        &mut self,
        image: &RgbImage,
        v2_regions: &[[f32; 4]],
        v1_regions: &[[f32; 4]],
    ) -> (
        Result<Vec<Option<OcrOut>>, InferenceError>,
        Result<Vec<Option<OcrOut>>, InferenceError>,
    ) {
        let threads = self.options.threads;
        match &mut self.ocr_v1 {
            Some(v1) if threads > 1 && !v2_regions.is_empty() => {
                let v2 = &mut self.ocr_v2;
                std::thread::scope(|s| {
                    let h = s.spawn(move || v1.read(image, v1_regions));
                    let a = v2.read(image, v2_regions);
                    let b = h.join().unwrap_or_else(|_| {
                        Err(InferenceError {
                            model: "ocr v1",
                            message: "worker panicked".into(),
                        })
                    });
                    (a, b)
                })
            }
            Some(v1) => (
                self.ocr_v2.read(image, v2_regions),
                v1.read(image, v1_regions),
            ),
            None => (self.ocr_v2.read(image, v2_regions), Ok(Vec::new())),
        }
    }

    /// Whether O is read as 0 on a plate of this region.
    fn folds(&self, region: Option<&RegionGuess>) -> bool {
        const ALIKE: [&str; 3] = ["United States", "Canada", "Unknown"];
        self.options.fold_o_into_zero && region.is_none_or(|r| ALIKE.contains(&r.name.as_str()))
    }

    /// Probability of the best well-formed string from these reads alone.
    fn quick_confidence(&self, outs: &[OcrOut]) -> f32 {
        let reads: Vec<(&engine::SlotProbs, f32)> = outs.iter().map(|o| (&o.slots, 1.0)).collect();
        let Some(mut f) = decide::fuse(&reads) else {
            return 0.0;
        };
        let refs: Vec<&OcrOut> = outs.iter().collect();
        if self.folds(region_guess(&refs).as_ref()) {
            decide::fold_o_into_zero(&mut f);
        }
        decide::best_strings(&f, 1)
            .first()
            .map_or(0.0, |c| c.probability)
    }

    fn decide(
        &self,
        image: &RgbImage,
        det: &Detection,
        outs: &[&OcrOut],
        crop_region: Option<[f32; 4]>,
    ) -> Option<PlateRead> {
        let reads: Vec<(&engine::SlotProbs, f32)> = outs
            .iter()
            .map(|o| (&o.slots, read_weight(&o.slots)))
            .collect();
        let raw = decide::fuse(&reads)?;
        let mut fused = raw.clone();
        let mut decisions = Vec::new();
        let region = region_guess(outs);
        let fold = self.folds(region.as_ref());
        if fold {
            let changed = decide::fold_o_into_zero(&mut fused);
            if changed {
                decisions.push(
                    "O read as 0 (US plates print them alike); O spellings kept as alternatives"
                        .to_string(),
                );
            }
        }
        let k = self.options.alternatives + 1;
        let mut cands = decide::best_strings(&fused, k);
        if cands.is_empty() {
            return None;
        }
        let best = cands.remove(0);
        let mut alternatives: Vec<Alternative> = cands
            .into_iter()
            .map(|c| Alternative {
                text: c.text,
                probability: c.probability,
            })
            .collect();
        if fold {
            for v in decide::o_variants(&best.text, best.probability, &raw) {
                if v.probability > 0.0 {
                    alternatives.push(Alternative {
                        text: v.text,
                        probability: v.probability,
                    });
                }
            }
        }
        alternatives.sort_by(|a, b| b.probability.total_cmp(&a.probability));
        let mut seen = std::collections::HashSet::new();
        seen.insert(best.text.clone());
        alternatives.retain(|a| seen.insert(a.text.clone()));
        alternatives.truncate(self.options.alternatives);

        let [x1, y1, x2, y2] = crop_region.unwrap_or([det.x1, det.y1, det.x2, det.y2]);
        let crop = image.crop(x1, y1, x2, y2)?;
        Some(PlateRead {
            text: best.text,
            confidence: best.probability.clamp(0.0, 1.0),
            char_confidence: best.char_probs.iter().map(|p| p.clamp(0.0, 1.0)).collect(),
            bbox: *det,
            region,
            alternatives,
            decisions,
            crop,
            detector_model: self.detector_id.clone(),
            ocr_model: self.ocr_id.clone(),
        })
    }
}

/// How much one OCR read counts in the fusion: the probability of its own
/// best string (so a blurred or badly cropped read counts less), floored so
/// that no read is ignored outright.
fn read_weight(r: &engine::SlotProbs) -> f32 {
    let p: f32 = r
        .probs
        .iter()
        .map(|row| row.iter().copied().fold(0.0, f32::max))
        .product();
    0.05 + p
}

/// `d` grown by `pad` (fractions of its width and height) on every side.
fn pad_box(d: &Detection, (px, py): (f32, f32)) -> [f32; 4] {
    let (mx, my) = (d.width() * px, d.height() * py);
    [d.x1 - mx, d.y1 - my, d.x2 + mx, d.y2 + my]
}

/// Averages the region head over the reads that have one.
fn region_guess(outs: &[&OcrOut]) -> Option<RegionGuess> {
    let mut votes = [0f32; REGIONS.len()];
    let mut n = 0;
    for o in outs {
        if let Some((i, p)) = o.region {
            if let Some(v) = votes.get_mut(i) {
                *v += p;
                n += 1;
            }
        }
    }
    let (i, v) = votes
        .iter()
        .copied()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(&b.1))?;
    (n > 0 && v > 0.0).then(|| RegionGuess {
        name: REGIONS[i].to_string(),
        probability: v / n as f32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recogniser_moves_to_a_worker_thread() {
        fn send<T: Send>() {}
        send::<Recogniser>();
        send::<PlateRead>();
    }

    #[test]
    fn weak_reads_weigh_less() {
        let blurred = engine::SlotProbs {
            probs: vec![[1.0 / 37.0; 37]; 2],
        };
        let mut row = [0f32; 37];
        row[5] = 1.0;
        let clear = engine::SlotProbs {
            probs: vec![row; 2],
        };
        assert!(read_weight(&clear) > 10.0 * read_weight(&blurred));
    }
}
