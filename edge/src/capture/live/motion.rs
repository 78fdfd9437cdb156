//! Cheap frames skipped cheaply: a small grey picture of the region of
//! interest, compared with the last frame's. When nothing in it moved the
//! detector need not run (the scene, and so its reading, is as before).
//! A picture that does not change at all, not by one grey level, for
//! [`FROZEN_AFTER`] is a frozen camera (an encoder stuck on one frame):
//! real sensors always show some noise.

use std::time::{Duration, Instant};

use crate::recognise::image::RgbImage;

/// The grey thumbnail's size, in cells.
const W: usize = 96;
const H: usize = 54;
/// A cell moved when its mean grey level changed by more than this.
const CELL_DELTA: i16 = 10;
/// Every this many pixels, across and down, inside a cell.
const STEP: usize = 4;
/// An unchanged picture for this long is a frozen camera.
pub const FROZEN_AFTER: Duration = Duration::from_secs(8);

/// What one frame showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Motion {
    /// The first frame, or a new size: nothing to compare with.
    First,
    Moved,
    Still,
}

/// Compares each frame with the one before, inside a polygon.
#[derive(Debug)]
pub struct MotionGate {
    /// The polygon, in fractions of the frame's width and height; empty
    /// for the whole frame.
    roi: Vec<[f32; 2]>,
    /// Which cells are inside the polygon.
    mask: Vec<bool>,
    /// The fraction of the region's cells that must change.
    threshold: f32,
    prev: Option<(u32, u32, Vec<u8>)>,
    unchanged_since: Option<Instant>,
}

impl MotionGate {
    pub fn new(roi: &[[f32; 2]], threshold: f32) -> Self {
        let mask = (0..W * H)
            .map(|i| {
                let (x, y) = ((i % W) as f32 + 0.5, (i / W) as f32 + 0.5);
                roi.len() < 3 || inside(roi, x / W as f32, y / H as f32)
            })
            .collect();
        MotionGate {
            roi: roi.to_vec(),
            mask,
            threshold: threshold.clamp(0.0, 1.0),
            prev: None,
            unchanged_since: None,
        }
    }

    /// The region of interest this gate watches.
    pub fn roi(&self) -> &[[f32; 2]] {
        &self.roi
    }

    /// Compare `image` with the frame before.
    pub fn check(&mut self, image: &RgbImage) -> Motion {
        let thumb = thumbnail(image);
        let size = (image.width(), image.height());
        let verdict = match &self.prev {
            Some((w, h, prev)) if (*w, *h) == size => {
                let (mut cells, mut moved, mut exact) = (0usize, 0usize, true);
                for ((a, b), m) in prev.iter().zip(&thumb).zip(&self.mask) {
                    exact &= a == b;
                    if *m {
                        cells += 1;
                        if (i16::from(*a) - i16::from(*b)).abs() > CELL_DELTA {
                            moved += 1;
                        }
                    }
                }
                if exact {
                    self.unchanged_since.get_or_insert_with(Instant::now);
                } else {
                    self.unchanged_since = None;
                }
                let needed = ((cells as f32 * self.threshold).ceil() as usize).max(1);
                if moved >= needed {
                    Motion::Moved
                } else {
                    Motion::Still
                }
            }
            _ => {
                self.unchanged_since = None;
                Motion::First
            }
        };
        self.prev = Some((size.0, size.1, thumb));
        verdict
    }

    /// True once the picture has not changed at all for [`FROZEN_AFTER`].
    pub fn frozen(&self) -> bool {
        self.unchanged_since
            .is_some_and(|t| t.elapsed() >= FROZEN_AFTER)
    }
}

/// The mean grey level of each cell, sampled every [`STEP`] pixels.
fn thumbnail(image: &RgbImage) -> Vec<u8> {
    let (w, h) = (image.width() as usize, image.height() as usize);
    let px = image.as_raw();
    let mut out = vec![0u8; W * H];
    if w == 0 || h == 0 {
        return out;
    }
    for cy in 0..H {
        let (y0, y1) = (cy * h / H, ((cy + 1) * h / H).max(cy * h / H + 1).min(h));
        for cx in 0..W {
            let (x0, x1) = (cx * w / W, ((cx + 1) * w / W).max(cx * w / W + 1).min(w));
            let (mut sum, mut n) = (0u32, 0u32);
            for y in (y0..y1).step_by(STEP) {
                for x in (x0..x1).step_by(STEP) {
                    let i = (y * w + x) * 3;
                    if let Some(p) = px.get(i..i + 3) {
                        // Rec. 601 luma, in integers.
                        sum +=
                            (77 * u32::from(p[0]) + 150 * u32::from(p[1]) + 29 * u32::from(p[2]))
                                >> 8;
                        n += 1;
                    }
                }
            }
            out[cy * W + cx] = (sum / n.max(1)) as u8;
        }
    }
    out
}

/// Whether (x, y) lies inside the polygon (even-odd rule).
fn inside(poly: &[[f32; 2]], x: f32, y: f32) -> bool {
    let mut c = false;
    let mut j = poly.len() - 1;
    for i in 0..poly.len() {
        let ([xi, yi], [xj, yj]) = (poly[i], poly[j]);
        if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
            c = !c;
        }
        j = i;
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(w: u32, h: u32, paint: impl Fn(u32, u32) -> u8) -> RgbImage {
        let mut v = Vec::with_capacity((w * h * 3) as usize);
        for y in 0..h {
            for x in 0..w {
                let g = paint(x, y);
                v.extend_from_slice(&[g, g, g]);
            }
        }
        RgbImage::from_raw(w, h, v).expect("size")
    }

    #[test]
    fn motion_outside_the_region_is_not_motion_and_inside_it_is() {
        // The region: the left half of the frame.
        let mut gate = MotionGate::new(&[[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0]], 0.01);
        let empty = frame(640, 360, |_, _| 60);
        let right = frame(640, 360, |x, y| {
            if x > 400 && y > 100 && y < 250 {
                200
            } else {
                60
            }
        });
        let left = frame(640, 360, |x, y| {
            if x < 200 && y > 100 && y < 250 {
                200
            } else {
                60
            }
        });
        assert_eq!(gate.check(&empty), Motion::First);
        assert_eq!(gate.check(&empty), Motion::Still);
        assert_eq!(
            gate.check(&right),
            Motion::Still,
            "a car outside the region"
        );
        assert_eq!(gate.check(&left), Motion::Moved, "a car inside it");
        assert!(!gate.frozen());
    }

    #[test]
    fn a_new_frame_size_starts_over() {
        let mut gate = MotionGate::new(&[], 0.01);
        assert_eq!(gate.check(&frame(64, 36, |_, _| 1)), Motion::First);
        assert_eq!(gate.check(&frame(128, 72, |_, _| 1)), Motion::First);
    }
}
