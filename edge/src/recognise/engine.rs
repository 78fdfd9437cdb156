//! The two networks behind thin wrappers: the plate detector (letterbox to
//! 416², boxes back in image pixels) and the plate OCR (batched crops to
//! per-slot probabilities). No decisions are taken here.

use fast_image_resize::Resizer;
use ort::session::Session;
use ort::value::TensorRef;

use super::image::RgbImage;
use super::models::{ModelError, ModelFile, DET_SIDE, OCR_H, OCR_W, REGIONS};

/// Inference failed at run time (a bug or a broken runtime, not bad input).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{model}: {message}")]
pub struct InferenceError {
    pub model: &'static str,
    pub message: String,
}

pub(crate) fn infer_err(model: &'static str) -> impl Fn(ort::Error) -> InferenceError {
    move |e| InferenceError {
        model,
        message: e.to_string(),
    }
}

pub(crate) fn session(
    env: &ort::environment::Environment,
    model: ModelFile,
    bytes: &[u8],
    threads: usize,
) -> Result<Session, ModelError> {
    let err = |e: String| ModelError::Session {
        model: model.file.to_string(),
        message: e,
    };
    let builder = Session::builder(env).map_err(|e| err(e.to_string()))?;
    let builder = builder
        .with_intra_threads(threads.max(1))
        .map_err(|e| err(e.to_string()))?;
    let mut builder = builder
        .with_inter_threads(1)
        .map_err(|e| err(e.to_string()))?;
    builder
        .commit_from_memory(bytes)
        .map_err(|e| err(e.to_string()))
}

/// A detected box in image pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
    pub score: f32,
}

impl Detection {
    pub fn width(&self) -> f32 {
        self.x2 - self.x1
    }
    pub fn height(&self) -> f32 {
        self.y2 - self.y1
    }
    /// Intersection over union with another box.
    pub fn iou(&self, o: &Detection) -> f32 {
        let ix = (self.x2.min(o.x2) - self.x1.max(o.x1)).max(0.0);
        let iy = (self.y2.min(o.y2) - self.y1.max(o.y1)).max(0.0);
        let inter = ix * iy;
        let union = self.width() * self.height() + o.width() * o.height() - inter;
        if union <= 0.0 {
            0.0
        } else {
            inter / union
        }
    }
}

pub struct Detector {
    session: Session,
    resizer: Resizer,
    input: Vec<f32>,
    scratch: Vec<u8>,
}

/// How the image sits in the 416² letterbox.
#[derive(Debug, Clone, Copy)]
struct Letterbox {
    ratio: f32,
    left: u32,
    top: u32,
    w: u32,
    h: u32,
}

fn letterbox_geometry(width: u32, height: u32) -> Letterbox {
    let side = DET_SIDE as f32;
    let ratio = (side / width as f32).min(side / height as f32);
    let w = ((width as f32 * ratio).round() as u32).clamp(1, DET_SIDE);
    let h = ((height as f32 * ratio).round() as u32).clamp(1, DET_SIDE);
    let dw = (DET_SIDE - w) as f32 / 2.0;
    let dh = (DET_SIDE - h) as f32 / 2.0;
    Letterbox {
        ratio,
        left: (dw - 0.1).round().max(0.0) as u32,
        top: (dh - 0.1).round().max(0.0) as u32,
        w,
        h,
    }
}

impl Detector {
    pub fn new(session: Session) -> Self {
        let n = (DET_SIDE * DET_SIDE) as usize;
        Self {
            session,
            resizer: Resizer::new(),
            input: vec![0.0; 3 * n],
            scratch: Vec::new(),
        }
    }

    /// Boxes with score ≥ `min_score`, best first, in image pixels.
    pub fn detect(
        &mut self,
        img: &RgbImage,
        min_score: f32,
    ) -> Result<Vec<Detection>, InferenceError> {
        let lb = letterbox_geometry(img.width(), img.height());
        self.scratch.resize((lb.w * lb.h * 3) as usize, 0);
        let region = [0.0, 0.0, img.width() as f32, img.height() as f32];
        if !img.resize_region_into(&mut self.resizer, region, lb.w, lb.h, &mut self.scratch) {
            return Err(InferenceError {
                model: "detector",
                message: "letterbox resize failed".into(),
            });
        }
        // Planar RGB/255 on grey 114.
        let n = (DET_SIDE * DET_SIDE) as usize;
        self.input.fill(114.0 / 255.0);
        let side = DET_SIDE as usize;
        for y in 0..lb.h as usize {
            let row = &self.scratch[y * lb.w as usize * 3..(y + 1) * lb.w as usize * 3];
            let base = (y + lb.top as usize) * side + lb.left as usize;
            for (x, px) in row.chunks_exact(3).enumerate() {
                self.input[base + x] = f32::from(px[0]) / 255.0;
                self.input[n + base + x] = f32::from(px[1]) / 255.0;
                self.input[2 * n + base + x] = f32::from(px[2]) / 255.0;
            }
        }
        let e = infer_err("detector");
        let t =
            TensorRef::from_array_view(([1usize, 3, side, side], &self.input[..])).map_err(&e)?;
        let outputs = self.session.run(ort::inputs![t]).map_err(&e)?;
        let Some(out) = outputs.values().next() else {
            return Err(InferenceError {
                model: "detector",
                message: "no output".into(),
            });
        };
        let (shape, data) = out.try_extract_tensor::<f32>().map_err(&e)?;
        let cols = shape.last().copied().unwrap_or(0);
        if cols != 7 {
            return Err(InferenceError {
                model: "detector",
                message: format!("unexpected output shape {shape:?}"),
            });
        }
        let (iw, ih) = (img.width() as f32, img.height() as f32);
        let mut dets: Vec<Detection> = data
            .chunks_exact(7)
            .filter(|r| r[6].is_finite() && r[6] >= min_score)
            .map(|r| {
                let fx = |v: f32| ((v - lb.left as f32) / lb.ratio).clamp(0.0, iw);
                let fy = |v: f32| ((v - lb.top as f32) / lb.ratio).clamp(0.0, ih);
                Detection {
                    x1: fx(r[1]),
                    y1: fy(r[2]),
                    x2: fx(r[3]),
                    y2: fy(r[4]),
                    score: r[6],
                }
            })
            .filter(|d| d.width() >= 2.0 && d.height() >= 2.0)
            .collect();
        dets.sort_by(|a, b| b.score.total_cmp(&a.score));
        Ok(dets)
    }
}

/// One OCR output: `slots × 37` probabilities, row per slot.
#[derive(Debug, Clone, PartialEq)]
pub struct SlotProbs {
    pub probs: Vec<[f32; 37]>,
}

/// OCR output for one crop.
#[derive(Debug, Clone)]
pub struct OcrOut {
    pub slots: SlotProbs,
    /// Region head (v2 only): index into [`REGIONS`] and its probability.
    pub region: Option<(usize, f32)>,
}

pub struct Ocr {
    session: Session,
    name: &'static str,
    resizer: Resizer,
    batch: Vec<u8>,
}

impl Ocr {
    pub fn new(session: Session, name: &'static str) -> Self {
        Self {
            session,
            name,
            resizer: Resizer::new(),
            batch: Vec::new(),
        }
    }

    /// Reads each region (`[x1,y1,x2,y2]` in image pixels, may reach past
    /// the edges: clamped) in one batch. Empty regions give `None`.
    pub fn read(
        &mut self,
        img: &RgbImage,
        regions: &[[f32; 4]],
    ) -> Result<Vec<Option<OcrOut>>, InferenceError> {
        let per = (OCR_W * OCR_H * 3) as usize;
        self.batch.clear();
        self.batch.resize(per * regions.len(), 0);
        let mut ok = vec![false; regions.len()];
        for (i, r) in regions.iter().enumerate() {
            let out = &mut self.batch[i * per..(i + 1) * per];
            ok[i] = img.resize_region_into(&mut self.resizer, *r, OCR_W, OCR_H, out);
        }
        let n = regions.len();
        if n == 0 {
            return Ok(Vec::new());
        }
        let e = infer_err(self.name);
        let t =
            TensorRef::from_array_view(([n, OCR_H as usize, OCR_W as usize, 3], &self.batch[..]))
                .map_err(&e)?;
        let outputs = self.session.run(ort::inputs![t]).map_err(&e)?;
        let mut plate: Option<(Vec<usize>, Vec<f32>)> = None;
        let mut region: Option<Vec<f32>> = None;
        for v in outputs.values() {
            let (shape, data) = v.try_extract_tensor::<f32>().map_err(&e)?;
            let dims: Vec<usize> = shape.iter().map(|&d| d.max(0) as usize).collect();
            match dims.as_slice() {
                [b, s, 37] if *b == n && data.len() == n * s * 37 => {
                    plate = Some((dims.clone(), data.to_vec()))
                }
                [b, r] if *b == n && *r == REGIONS.len() && data.len() == n * r => {
                    region = Some(data.to_vec())
                }
                _ => {}
            }
        }
        let Some((dims, data)) = plate else {
            return Err(InferenceError {
                model: self.name,
                message: "no [N,slots,37] output".into(),
            });
        };
        let slots = dims[1];
        let mut res = Vec::with_capacity(n);
        for i in 0..n {
            if !ok[i] {
                res.push(None);
                continue;
            }
            let probs = (0..slots)
                .map(|s| {
                    let mut row = [0f32; 37];
                    let start = (i * slots + s) * 37;
                    row.copy_from_slice(&data[start..start + 37]);
                    row
                })
                .collect();
            let reg = region.as_ref().and_then(|r| {
                let row = &r[i * REGIONS.len()..(i + 1) * REGIONS.len()];
                row.iter()
                    .copied()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(&b.1))
            });
            res.push(Some(OcrOut {
                slots: SlotProbs { probs },
                region: reg,
            }));
        }
        Ok(res)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letterbox_matches_ultralytics() {
        let lb = letterbox_geometry(1280, 720);
        assert_eq!((lb.w, lb.h, lb.left, lb.top), (416, 234, 0, 91));
        let lb = letterbox_geometry(918, 1632);
        assert_eq!(lb.h, 416);
        assert!(lb.left > 0 && lb.top == 0);
    }

    #[test]
    fn iou() {
        let a = Detection {
            x1: 0.0,
            y1: 0.0,
            x2: 10.0,
            y2: 10.0,
            score: 1.0,
        };
        let mut b = a;
        b.x1 = 5.0;
        assert!((a.iou(&b) - 0.5).abs() < 1e-6);
    }
}
