//! Crop (top fraction, then centre square) and resize with fast_image_resize.

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

/// A square region of the source image: left, top, side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Square {
    /// Left column.
    pub x: u32,
    /// Top row.
    pub y: u32,
    /// Side length.
    pub side: u32,
}

/// Drops the top `crop_top` fraction of rows, then takes the centred square of what is left.
pub fn crop_square(width: u32, height: u32, crop_top: f32) -> Square {
    let top = (height as f32 * crop_top.clamp(0.0, 0.9)) as u32;
    let h = height - top;
    let side = h.min(width).max(1);
    Square {
        x: (width - side.min(width)) / 2,
        y: top + (h - side.min(h)) / 2,
        side,
    }
}

/// Resizes `region` of `img` to an `out`×`out` square: area (box) filter when shrinking,
/// bilinear when enlarging.
pub fn resize_region<C: std::ops::Deref<Target = [u8]>>(
    resizer: &mut Resizer,
    img: &image::ImageBuffer<image::Luma<u8>, C>,
    region: Square,
    out: u32,
) -> Vec<u8> {
    let mut dst = vec![0u8; out as usize * out as usize];
    resize_region_into(resizer, img, region, out, &mut dst);
    dst
}

/// [`resize_region`] into `dst` (`out * out` bytes).
pub fn resize_region_into<C: std::ops::Deref<Target = [u8]>>(
    resizer: &mut Resizer,
    img: &image::ImageBuffer<image::Luma<u8>, C>,
    region: Square,
    out: u32,
    dst: &mut [u8],
) {
    let src = ImageRef::new(img.width(), img.height(), img.as_raw(), PixelType::U8)
        .expect("gray buffer matches its size");
    let mut dst = Image::from_slice_u8(out, out, dst, PixelType::U8).expect("out * out bytes");
    let filter = if region.side >= out {
        FilterType::Box
    } else {
        FilterType::Bilinear
    };
    let opts = ResizeOptions::new()
        .crop(
            region.x as f64,
            region.y as f64,
            region.side as f64,
            region.side as f64,
        )
        .resize_alg(ResizeAlg::Convolution(filter));
    resizer
        .resize(&src, &mut dst, &opts)
        .expect("same pixel type, valid crop");
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::GrayImage;

    #[test]
    fn crop_drops_the_top_then_centres() {
        assert_eq!(
            crop_square(100, 200, 0.08),
            Square {
                x: 0,
                y: 16 + 42,
                side: 100
            }
        );
        assert_eq!(
            crop_square(300, 100, 0.0),
            Square {
                x: 100,
                y: 0,
                side: 100
            }
        );
    }

    #[test]
    fn resize_keeps_a_flat_image_flat() {
        let img = GrayImage::from_pixel(640, 512, image::Luma([77]));
        let mut r = Resizer::new();
        let out = resize_region(&mut r, &img, crop_square(640, 512, 0.08), 224);
        assert_eq!(out.len(), 224 * 224);
        assert!(out.iter().all(|&v| v == 77));
    }
}
