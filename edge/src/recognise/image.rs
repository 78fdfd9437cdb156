//! Frames in memory: decoding (JPEG through zune-jpeg, PNG/BMP through
//! `image`), EXIF orientation, crop-and-resize (fast_image_resize, bilinear
//! like OpenCV's `INTER_LINEAR`, which the models were trained with), and JPEG
//! encoding for the crop and overview blobs the store keeps.

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

use super::exif;

/// Largest side we accept; larger is refused before allocating.
pub const MAX_SIDE: u32 = 16_384;
/// Largest pixel count we accept (about 100 megapixels).
pub const MAX_PIXELS: u64 = 100_000_000;

/// An 8-bit RGB image, rows top to bottom, no padding.
#[derive(Clone, PartialEq, Eq)]
pub struct RgbImage {
    width: u32,
    height: u32,
    data: Vec<u8>,
}

impl std::fmt::Debug for RgbImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RgbImage({}x{})", self.width, self.height)
    }
}

/// Why an image could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("empty file")]
    Empty,
    #[error("not a JPEG, PNG or BMP image")]
    UnknownFormat,
    #[error("corrupt or unsupported JPEG: {0}")]
    Jpeg(String),
    #[error("corrupt or unsupported image: {0}")]
    Other(String),
    #[error("image of {width}x{height} is outside the accepted size (1..={MAX_SIDE} a side)")]
    Size { width: u64, height: u64 },
}

impl RgbImage {
    /// Wraps RGB bytes; `None` unless `data.len() == width * height * 3` and
    /// the size is within bounds.
    pub fn from_raw(width: u32, height: u32, data: Vec<u8>) -> Option<Self> {
        let ok = (1..=MAX_SIDE).contains(&width)
            && (1..=MAX_SIDE).contains(&height)
            && data.len() as u64 == u64::from(width) * u64::from(height) * 3;
        ok.then_some(Self {
            width,
            height,
            data,
        })
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    /// The RGB bytes, `width * height * 3` of them.
    pub fn as_raw(&self) -> &[u8] {
        &self.data
    }

    pub fn into_raw(self) -> Vec<u8> {
        self.data
    }

    /// The region `[x1,x2) × [y1,y2)` clamped to the image, copied out.
    /// `None` if the clamped region is empty.
    pub fn crop(&self, x1: f32, y1: f32, x2: f32, y2: f32) -> Option<RgbImage> {
        let (x1, y1, x2, y2) = self.clamp_box(x1, y1, x2, y2)?;
        let (w, h) = (x2 - x1, y2 - y1);
        let mut data = Vec::with_capacity(w as usize * h as usize * 3);
        for y in y1..y2 {
            let start = (y as usize * self.width as usize + x1 as usize) * 3;
            data.extend_from_slice(&self.data[start..start + w as usize * 3]);
        }
        Some(RgbImage {
            width: w,
            height: h,
            data,
        })
    }

    fn clamp_box(&self, x1: f32, y1: f32, x2: f32, y2: f32) -> Option<(u32, u32, u32, u32)> {
        let cx = |v: f32| v.round().clamp(0.0, self.width as f32) as u32;
        let cy = |v: f32| v.round().clamp(0.0, self.height as f32) as u32;
        let (x1, x2, y1, y2) = (cx(x1), cx(x2), cy(y1), cy(y2));
        (x2 > x1 && y2 > y1).then_some((x1, y1, x2, y2))
    }

    /// Bilinear resize of the region `[x1,x2) × [y1,y2)` (clamped to the
    /// image) into `out` as `w × h` RGB. Returns false if the region is empty.
    pub fn resize_region_into(
        &self,
        resizer: &mut Resizer,
        region: [f32; 4],
        w: u32,
        h: u32,
        out: &mut [u8],
    ) -> bool {
        let [x1, y1, x2, y2] = region;
        let x1 = x1.clamp(0.0, self.width as f32);
        let x2 = x2.clamp(0.0, self.width as f32);
        let y1 = y1.clamp(0.0, self.height as f32);
        let y2 = y2.clamp(0.0, self.height as f32);
        if x2 - x1 < 1.0 || y2 - y1 < 1.0 || out.len() != w as usize * h as usize * 3 {
            return false;
        }
        let Ok(src) = ImageRef::new(self.width, self.height, &self.data, PixelType::U8x3) else {
            return false;
        };
        let Ok(mut dst) = Image::from_slice_u8(w, h, out, PixelType::U8x3) else {
            return false;
        };
        let opts = ResizeOptions::new()
            .resize_alg(ResizeAlg::Interpolation(FilterType::Bilinear))
            .crop(
                f64::from(x1),
                f64::from(y1),
                f64::from(x2 - x1),
                f64::from(y2 - y1),
            );
        resizer.resize(&src, &mut dst, &opts).is_ok()
    }

    /// Encodes as baseline JPEG (the crop and overview blobs of a read).
    pub fn encode_jpeg(&self, quality: u8) -> Result<Vec<u8>, String> {
        let (Ok(w), Ok(h)) = (u16::try_from(self.width), u16::try_from(self.height)) else {
            return Err(format!(
                "{}x{} is too large for JPEG",
                self.width, self.height
            ));
        };
        let mut out = Vec::new();
        jpeg_encoder::Encoder::new(&mut out, quality.clamp(1, 100))
            .encode(&self.data, w, h, jpeg_encoder::ColorType::Rgb)
            .map_err(|e| e.to_string())?;
        Ok(out)
    }

    /// Applies an EXIF orientation (1..=8) so the result is upright.
    pub fn oriented(self, orientation: u16) -> RgbImage {
        match orientation {
            2 => self.remap(false, true, false),
            3 => self.remap(false, true, true),
            4 => self.remap(false, false, true),
            5 => self.remap(true, false, false),
            6 => self.remap(true, true, false),
            7 => self.remap(true, true, true),
            8 => self.remap(true, false, true),
            _ => self,
        }
    }

    /// Output pixel (x, y) takes source pixel (sx, sy) where, before
    /// flipping, `transpose` swaps the axes; then x and/or y are mirrored.
    fn remap(self, transpose: bool, flip_x: bool, flip_y: bool) -> RgbImage {
        let (w, h) = if transpose {
            (self.height, self.width)
        } else {
            (self.width, self.height)
        };
        let mut data = vec![0u8; self.data.len()];
        for y in 0..h {
            for x in 0..w {
                let xx = if flip_x { w - 1 - x } else { x };
                let yy = if flip_y { h - 1 - y } else { y };
                let (sx, sy) = if transpose { (yy, xx) } else { (xx, yy) };
                let s = (sy as usize * self.width as usize + sx as usize) * 3;
                let d = (y as usize * w as usize + x as usize) * 3;
                data[d..d + 3].copy_from_slice(&self.data[s..s + 3]);
            }
        }
        RgbImage {
            width: w,
            height: h,
            data,
        }
    }
}

/// What the file says about itself besides its pixels.
#[derive(Debug, Clone, Default)]
pub struct ImageMeta {
    /// EXIF `DateTimeOriginal` ("YYYY:MM:DD HH:MM:SS[.frac]"), if any.
    pub capture_time: Option<String>,
}

/// Decodes a JPEG, PNG or BMP file's bytes to upright RGB.
pub fn decode(bytes: &[u8]) -> Result<RgbImage, DecodeError> {
    decode_with_meta(bytes).map(|(img, _)| img)
}

/// As [`decode`], also returning the capture time when the file has one.
pub fn decode_with_meta(bytes: &[u8]) -> Result<(RgbImage, ImageMeta), DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    if bytes.starts_with(&[0xFF, 0xD8]) {
        return decode_jpeg(bytes);
    }
    let other = bytes.starts_with(b"\x89PNG") || bytes.starts_with(b"BM");
    if !other {
        return Err(DecodeError::UnknownFormat);
    }
    let img = image::load_from_memory(bytes).map_err(|e| DecodeError::Other(e.to_string()))?;
    let (w, h) = (img.width(), img.height());
    check_size(u64::from(w), u64::from(h))?;
    let rgb = img.into_rgb8().into_raw();
    let img = RgbImage::from_raw(w, h, rgb).ok_or(DecodeError::Size {
        width: u64::from(w),
        height: u64::from(h),
    })?;
    Ok((img, ImageMeta::default()))
}

fn check_size(w: u64, h: u64) -> Result<(), DecodeError> {
    let side = u64::from(MAX_SIDE);
    if w == 0 || h == 0 || w > side || h > side || w * h > MAX_PIXELS {
        return Err(DecodeError::Size {
            width: w,
            height: h,
        });
    }
    Ok(())
}

fn decode_jpeg(bytes: &[u8]) -> Result<(RgbImage, ImageMeta), DecodeError> {
    use zune_jpeg::zune_core::bytestream::ZCursor;
    use zune_jpeg::zune_core::colorspace::ColorSpace;
    use zune_jpeg::zune_core::options::DecoderOptions;

    let opts = DecoderOptions::default()
        .jpeg_set_out_colorspace(ColorSpace::RGB)
        .set_max_width(MAX_SIDE as usize)
        .set_max_height(MAX_SIDE as usize);
    let mut dec = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), opts);
    dec.decode_headers()
        .map_err(|e| DecodeError::Jpeg(e.to_string()))?;
    let info = dec
        .info()
        .ok_or_else(|| DecodeError::Jpeg("no frame header".into()))?;
    let (w, h) = (u32::from(info.width), u32::from(info.height));
    check_size(u64::from(w), u64::from(h))?;
    let (orientation, capture_time) = match dec.exif() {
        Some(e) => {
            // zune hands over the APP1 payload; the TIFF body follows "Exif\0\0".
            let tiff = e.strip_prefix(b"Exif\0\0").unwrap_or(e);
            (exif::orientation(tiff), exif::capture_time(tiff))
        }
        None => (None, None),
    };
    let size = dec
        .output_buffer_size()
        .ok_or_else(|| DecodeError::Jpeg("no output size".into()))?;
    if size != w as usize * h as usize * 3 {
        return Err(DecodeError::Jpeg(format!(
            "decoder would give {size} bytes for {w}x{h} RGB"
        )));
    }
    let mut data = vec![0u8; size];
    dec.decode_into(&mut data)
        .map_err(|e| DecodeError::Jpeg(e.to_string()))?;
    let img = RgbImage::from_raw(w, h, data).ok_or(DecodeError::Size {
        width: u64::from(w),
        height: u64::from(h),
    })?;
    let img = match orientation {
        Some(o) => img.oriented(o),
        None => img,
    };
    Ok((img, ImageMeta { capture_time }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(w: u32, h: u32) -> RgbImage {
        let data = (0..w * h)
            .flat_map(|i| [(i % 251) as u8, (i / 251) as u8, 7])
            .collect();
        RgbImage::from_raw(w, h, data).expect("valid size")
    }

    #[test]
    fn orientation_6_rotates_clockwise() {
        let a = img(3, 2);
        let r = a.clone().oriented(6);
        assert_eq!((r.width(), r.height()), (2, 3));
        // Top-right of the upright image is the source's top-left.
        assert_eq!(&r.as_raw()[3..6], &a.as_raw()[0..3]);
        // Every orientation keeps the pixel set and round-trips through 1.
        for o in 1..=8 {
            let r = a.clone().oriented(o);
            assert_eq!(r.as_raw().len(), a.as_raw().len());
        }
        assert_eq!(a.clone().oriented(3).oriented(3), a);
        // 6 then 8 (clockwise then counter-clockwise) is the identity.
        let r = a.clone().oriented(6);
        assert_eq!(r.oriented(8), a);
    }

    #[test]
    fn jpeg_round_trip_and_corrupt_input() {
        let a = img(40, 30);
        let j = a.encode_jpeg(90).expect("encode");
        let b = decode(&j).expect("decode");
        assert_eq!((b.width(), b.height()), (40, 30));
        // Truncated and garbage inputs are errors, not panics.
        for cut in [2, 10, 50, j.len() / 2] {
            let _ = decode(&j[..cut]);
        }
        assert!(matches!(decode(b""), Err(DecodeError::Empty)));
        assert!(matches!(decode(b"hello"), Err(DecodeError::UnknownFormat)));
        assert!(decode(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 2]).is_err());
    }

    #[test]
    fn crop_clamps() {
        let a = img(10, 10);
        let c = a.crop(-5.0, 8.0, 3.0, 20.0).expect("non-empty");
        assert_eq!((c.width(), c.height()), (3, 2));
        assert!(a.crop(11.0, 0.0, 20.0, 5.0).is_none());
    }
}
