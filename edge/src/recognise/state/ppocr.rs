//! The two PP-OCRv4 networks behind thin wrappers: text detection (a DB
//! probability map turned into line boxes) and text recognition (lines to
//! strings by greedy CTC decoding). No decisions about states are taken here.
//!
//! Both models were trained on BGR images scaled to -1..1 (PaddleOCR reads
//! with OpenCV); the recogniser takes lines 48 pixels high, as wide as their
//! aspect asks, and its character list is in the model's ONNX metadata under
//! `character` (blank first, a space last, as PaddleOCR adds them).

use fast_image_resize::Resizer;
use ort::session::Session;
use ort::value::TensorRef;

use crate::recognise::engine::{infer_err, InferenceError};
use crate::recognise::image::RgbImage;

/// Height of a recognised line.
pub const REC_H: u32 = 48;
/// Narrowest line input. PaddleOCR pads every line to 320 wide; the network
/// takes any width, and time grows with it, so lines are padded only to a
/// multiple of 8.
pub const REC_MIN_W: u32 = 32;
/// Widest line input we build (a line wider than this is squeezed).
pub const REC_MAX_W: u32 = 640;

/// One recognised line: its text (blank and repeats removed) and the
/// probability of each kept character.
#[derive(Debug, Clone, PartialEq)]
pub struct TextLine {
    pub text: String,
    pub char_probs: Vec<f32>,
}

impl TextLine {
    /// Mean character probability, 0 for an empty line.
    pub fn confidence(&self) -> f32 {
        if self.char_probs.is_empty() {
            0.0
        } else {
            self.char_probs.iter().sum::<f32>() / self.char_probs.len() as f32
        }
    }
}

/// Greedy CTC decoding of `steps × classes` probabilities: the best class per
/// step, repeats collapsed, blanks (class 0) dropped. Classes past the end of
/// `chars` (which lists classes 1..) are dropped too.
pub fn ctc_decode(probs: &[f32], classes: usize, chars: &[String]) -> TextLine {
    let mut text = String::new();
    let mut char_probs = Vec::new();
    let mut last = 0usize;
    if classes == 0 {
        return TextLine { text, char_probs };
    }
    for row in probs.chunks_exact(classes) {
        let (best, p) = row
            .iter()
            .copied()
            .enumerate()
            .fold(
                (0usize, f32::MIN),
                |a, (i, v)| if v > a.1 { (i, v) } else { a },
            );
        if best != 0 && best != last {
            if let Some(c) = chars.get(best - 1) {
                text.push_str(c);
                char_probs.push(p);
            }
        }
        last = best;
    }
    TextLine { text, char_probs }
}

/// The recognition network and its character list.
pub struct Recogniser {
    session: Session,
    chars: Vec<String>,
    resizer: Resizer,
    scratch: Vec<u8>,
    input: Vec<f32>,
}

impl Recogniser {
    /// Wraps a session; the character list is read from its metadata.
    pub fn new(session: Session) -> Result<Self, String> {
        let meta = session.metadata().map_err(|e| e.to_string())?;
        let Some(list) = meta.custom("character") else {
            return Err("the recognition model has no `character` metadata".into());
        };
        drop(meta);
        let mut chars: Vec<String> = list.lines().map(str::to_string).collect();
        chars.push(" ".into());
        Ok(Self {
            session,
            chars,
            resizer: Resizer::new(),
            scratch: Vec::new(),
            input: Vec::new(),
        })
    }

    /// How many characters the model knows (without blank).
    pub fn alphabet_len(&self) -> usize {
        self.chars.len()
    }

    /// Reads each region (`[x1,y1,x2,y2]` in image pixels, clamped) as one
    /// line of text, all in one batch. An empty region reads as "".
    pub fn read(
        &mut self,
        img: &RgbImage,
        regions: &[[f32; 4]],
    ) -> Result<Vec<TextLine>, InferenceError> {
        if regions.is_empty() {
            return Ok(Vec::new());
        }
        // Each line keeps its aspect at height 48; the batch is as wide as
        // its widest line, padded with zeros (mid grey).
        let widths: Vec<u32> = regions
            .iter()
            .map(|[x1, y1, x2, y2]| {
                let (w, h) = ((x2 - x1).max(1.0), (y2 - y1).max(1.0));
                ((REC_H as f32 * w / h).ceil() as u32).clamp(8, REC_MAX_W)
            })
            .collect();
        let batch_w = widths
            .iter()
            .copied()
            .max()
            .unwrap_or(REC_MIN_W)
            .max(REC_MIN_W);
        let (h, bw) = (REC_H as usize, batch_w as usize);
        let plane = h * bw;
        self.input.clear();
        self.input.resize(regions.len() * 3 * plane, 0.0);
        let mut ok = vec![false; regions.len()];
        for (i, (r, &w)) in regions.iter().zip(&widths).enumerate() {
            self.scratch.resize((w * REC_H * 3) as usize, 0);
            if !img.resize_region_into(&mut self.resizer, *r, w, REC_H, &mut self.scratch) {
                continue;
            }
            ok[i] = true;
            let base = i * 3 * plane;
            fill_bgr_planes(
                &self.scratch,
                w as usize,
                &mut self.input[base..base + 3 * plane],
                bw,
            );
        }
        let e = infer_err("ppocr-rec");
        let t =
            TensorRef::from_array_view(([regions.len(), 3, h, bw], &self.input[..])).map_err(&e)?;
        let outputs = self.session.run(ort::inputs![t]).map_err(&e)?;
        let Some(out) = outputs.values().next() else {
            return Err(InferenceError {
                model: "ppocr-rec",
                message: "no output".into(),
            });
        };
        let (shape, data) = out.try_extract_tensor::<f32>().map_err(&e)?;
        let dims: Vec<usize> = shape.iter().map(|&d| d.max(0) as usize).collect();
        let [n, steps, classes] = dims[..] else {
            return Err(InferenceError {
                model: "ppocr-rec",
                message: format!("unexpected output shape {shape:?}"),
            });
        };
        if n != regions.len() || data.len() != n * steps * classes {
            return Err(InferenceError {
                model: "ppocr-rec",
                message: format!("unexpected output shape {shape:?}"),
            });
        }
        Ok((0..n)
            .map(|i| {
                if !ok[i] {
                    return TextLine {
                        text: String::new(),
                        char_probs: Vec::new(),
                    };
                }
                let per = steps * classes;
                ctc_decode(&data[i * per..(i + 1) * per], classes, &self.chars)
            })
            .collect())
    }
}

/// Writes packed RGB pixels (`w` wide) as planar BGR scaled to -1..1 into
/// `out` (three planes of `stride` × rows, already zeroed).
fn fill_bgr_planes(rgb: &[u8], w: usize, out: &mut [f32], stride: usize) {
    let rows = rgb.len() / (3 * w.max(1));
    let plane = out.len() / 3;
    for y in 0..rows {
        let row = &rgb[y * w * 3..(y + 1) * w * 3];
        for (x, px) in row.chunks_exact(3).enumerate() {
            let at = y * stride + x;
            let f = |v: u8| f32::from(v) / 127.5 - 1.0;
            out[at] = f(px[2]);
            out[plane + at] = f(px[1]);
            out[2 * plane + at] = f(px[0]);
        }
    }
}

/// The detection network.
pub struct Detector {
    session: Session,
    resizer: Resizer,
    scratch: Vec<u8>,
    input: Vec<f32>,
}

/// Pixels of the probability map above this are text (PaddleOCR `thresh`).
const DET_THRESH: f32 = 0.3;
/// A box whose mean probability is below this is dropped (`box_thresh`).
const DET_BOX_THRESH: f32 = 0.5;
/// How far a box grows from its shrunk text kernel (`unclip_ratio`).
const DET_UNCLIP: f32 = 1.6;

impl Detector {
    pub fn new(session: Session) -> Self {
        Self {
            session,
            resizer: Resizer::new(),
            scratch: Vec::new(),
            input: Vec::new(),
        }
    }

    /// Text line boxes (`[x1,y1,x2,y2]` in image pixels), top to bottom.
    /// The image is scaled so its longer side is `side` (rounded to 32).
    pub fn detect(&mut self, img: &RgbImage, side: u32) -> Result<Vec<[f32; 4]>, InferenceError> {
        let (iw, ih) = (img.width() as f32, img.height() as f32);
        let scale = side as f32 / iw.max(ih);
        let round32 = |v: f32| (((v / 32.0).round() as u32).max(1) * 32) as usize;
        let (w, h) = (round32(iw * scale), round32(ih * scale));
        self.scratch.resize(w * h * 3, 0);
        let region = [0.0, 0.0, iw, ih];
        if !img.resize_region_into(
            &mut self.resizer,
            region,
            w as u32,
            h as u32,
            &mut self.scratch,
        ) {
            return Err(InferenceError {
                model: "ppocr-det",
                message: "resize failed".into(),
            });
        }
        self.input.clear();
        self.input.resize(3 * w * h, 0.0);
        fill_bgr_planes(&self.scratch, w, &mut self.input, w);
        let e = infer_err("ppocr-det");
        let t = TensorRef::from_array_view(([1usize, 3, h, w], &self.input[..])).map_err(&e)?;
        let outputs = self.session.run(ort::inputs![t]).map_err(&e)?;
        let Some(out) = outputs.values().next() else {
            return Err(InferenceError {
                model: "ppocr-det",
                message: "no output".into(),
            });
        };
        let (_, data) = out.try_extract_tensor::<f32>().map_err(&e)?;
        if data.len() != w * h {
            return Err(InferenceError {
                model: "ppocr-det",
                message: format!("probability map of {} values for {w}x{h}", data.len()),
            });
        }
        let (sx, sy) = (iw / w as f32, ih / h as f32);
        let mut boxes: Vec<[f32; 4]> = text_boxes(data, w, h)
            .into_iter()
            .map(|[x1, y1, x2, y2]| {
                [
                    (x1 * sx).clamp(0.0, iw),
                    (y1 * sy).clamp(0.0, ih),
                    (x2 * sx).clamp(0.0, iw),
                    (y2 * sy).clamp(0.0, ih),
                ]
            })
            .collect();
        boxes.sort_by(|a, b| a[1].total_cmp(&b[1]));
        Ok(boxes)
    }
}

/// DB post-processing, axis-aligned: connected regions of the thresholded
/// map (8-neighbours), each kept if its mean probability is high enough,
/// grown by the unclip distance (area × ratio / perimeter) on every side.
fn text_boxes(map: &[f32], w: usize, h: usize) -> Vec<[f32; 4]> {
    let mut label = vec![false; w * h];
    let mut boxes = Vec::new();
    let mut stack = Vec::new();
    for start in 0..w * h {
        if label[start] || map[start] <= DET_THRESH {
            continue;
        }
        label[start] = true;
        stack.push(start);
        let (mut x1, mut y1, mut x2, mut y2) = (w, h, 0usize, 0usize);
        let (mut sum, mut count) = (0f32, 0usize);
        while let Some(i) = stack.pop() {
            let (x, y) = (i % w, i / w);
            x1 = x1.min(x);
            x2 = x2.max(x);
            y1 = y1.min(y);
            y2 = y2.max(y);
            sum += map[i];
            count += 1;
            for dy in -1i32..=1 {
                for dx in -1i32..=1 {
                    let (nx, ny) = (x as i32 + dx, y as i32 + dy);
                    if nx < 0 || ny < 0 || nx >= w as i32 || ny >= h as i32 {
                        continue;
                    }
                    let j = ny as usize * w + nx as usize;
                    if !label[j] && map[j] > DET_THRESH {
                        label[j] = true;
                        stack.push(j);
                    }
                }
            }
        }
        let (bw, bh) = ((x2 - x1 + 1) as f32, (y2 - y1 + 1) as f32);
        if bw.min(bh) < 3.0 || sum / (count as f32) < DET_BOX_THRESH {
            continue;
        }
        let d = bw * bh * DET_UNCLIP / (2.0 * (bw + bh));
        boxes.push([
            x1 as f32 - d,
            y1 as f32 - d,
            x2 as f32 + 1.0 + d,
            y2 as f32 + 1.0 + d,
        ]);
    }
    boxes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctc_collapses_repeats_and_drops_blanks() {
        let chars: Vec<String> = ["A", "B"].iter().map(|s| s.to_string()).collect();
        // steps: A A blank A B B  → "AAB"
        let rows = [
            [0.1, 0.8, 0.1],
            [0.1, 0.9, 0.0],
            [0.9, 0.05, 0.05],
            [0.2, 0.7, 0.1],
            [0.1, 0.1, 0.8],
            [0.1, 0.2, 0.7],
        ];
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        let l = ctc_decode(&flat, 3, &chars);
        assert_eq!(l.text, "AAB");
        assert_eq!(l.char_probs.len(), 3);
        assert!((l.confidence() - (0.8 + 0.7 + 0.8) / 3.0).abs() < 1e-6);
        assert_eq!(ctc_decode(&[], 3, &chars).confidence(), 0.0);
    }

    #[test]
    fn db_boxes_grow_from_their_kernel() {
        let (w, h) = (40, 20);
        let mut map = vec![0f32; w * h];
        for y in 8..12 {
            for x in 5..35 {
                map[y * w + x] = 0.9;
            }
        }
        // A faint blob is dropped.
        map[2 * w + 2] = 0.35;
        map[2 * w + 3] = 0.35;
        let b = text_boxes(&map, w, h);
        assert_eq!(b.len(), 1);
        let [x1, y1, x2, y2] = b[0];
        assert!(x1 < 5.0 && x2 > 35.0 && y1 < 8.0 && y2 > 12.0, "{b:?}");
    }
}
