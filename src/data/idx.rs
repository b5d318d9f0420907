//! MNIST's IDX format (<http://yann.lecun.com/exdb/mnist/>): big-endian header with a magic
//! number `0x000008NN` (unsigned bytes, `NN` dimensions), the sizes, then the bytes.
//! Files may be gzip-compressed (`train-images-idx3-ubyte.gz` as distributed).

use std::io::Read;
use std::path::Path;

use super::{DataError, Dataset};

/// Magic number of an IDX file of unsigned-byte labels (1 dimension).
pub const IDX_LABELS_MAGIC: u32 = 0x0000_0801;
/// Magic number of an IDX file of unsigned-byte images (3 dimensions).
pub const IDX_IMAGES_MAGIC: u32 = 0x0000_0803;

/// Images read from an IDX file.
#[derive(Debug, Clone, PartialEq)]
pub struct IdxImages {
    /// `count * rows * cols` pixels scaled from `0..=255` to `0.0..=1.0`.
    pub pixels: Vec<f32>,
    /// Number of images.
    pub count: usize,
    /// Image height.
    pub rows: usize,
    /// Image width.
    pub cols: usize,
}

fn read_bytes(path: &Path) -> Result<Vec<u8>, DataError> {
    let raw = std::fs::read(path).map_err(|source| DataError::Io { path: path.into(), source })?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|source| DataError::Io { path: path.into(), source })?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Checks the magic number and returns the dimensions and the offset of the data.
fn header(path: &Path, bytes: &[u8], magic: u32) -> Result<(Vec<usize>, usize), DataError> {
    let truncated = |need: usize| DataError::Truncated {
        path: path.into(),
        offset: bytes.len(),
        expected: need,
        found: bytes.len(),
    };
    if bytes.len() < 4 {
        return Err(truncated(4));
    }
    let found = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    if found != magic {
        return Err(DataError::BadMagic { path: path.into(), expected: magic, found });
    }
    let ndims = (magic & 0xff) as usize;
    let data_at = 4 + 4 * ndims;
    if bytes.len() < data_at {
        return Err(truncated(data_at));
    }
    let dims = (0..ndims)
        .map(|d| {
            let o = 4 + 4 * d;
            u32::from_be_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]) as usize
        })
        .collect::<Vec<_>>();
    let need = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .and_then(|n| n.checked_add(data_at))
        .ok_or_else(|| DataError::Invalid(format!("{}: IDX dimensions {dims:?} overflow", path.display())))?;
    if bytes.len() < need {
        return Err(truncated(need));
    }
    Ok((dims, data_at))
}

/// Reads an IDX image file (magic `0x00000803`), scaling pixels to `0.0..=1.0`.
pub fn load_idx_images(path: impl AsRef<Path>) -> Result<IdxImages, DataError> {
    let path = path.as_ref();
    let bytes = read_bytes(path)?;
    let (dims, at) = header(path, &bytes, IDX_IMAGES_MAGIC)?;
    let n = dims[0] * dims[1] * dims[2];
    let pixels = bytes[at..at + n].iter().map(|&b| b as f32 / 255.0).collect();
    Ok(IdxImages { pixels, count: dims[0], rows: dims[1], cols: dims[2] })
}

/// Reads an IDX label file (magic `0x00000801`).
pub fn load_idx_labels(path: impl AsRef<Path>) -> Result<Vec<usize>, DataError> {
    let path = path.as_ref();
    let bytes = read_bytes(path)?;
    let (dims, at) = header(path, &bytes, IDX_LABELS_MAGIC)?;
    Ok(bytes[at..at + dims[0]].iter().map(|&b| b as usize).collect())
}

/// Loads MNIST-style images and labels into a [`Dataset`] with per-sample shape
/// `[1, rows, cols]` (ready for `conv2d`; use [`Dataset::reshape`] for `[rows·cols]`) and
/// pixels in `0.0..=1.0`. The two files must hold the same number of samples.
pub fn load_mnist(images: impl AsRef<Path>, labels: impl AsRef<Path>) -> Result<Dataset<f32>, DataError> {
    let im = load_idx_images(images.as_ref())?;
    let lb = load_idx_labels(labels.as_ref())?;
    if lb.len() != im.count {
        return Err(DataError::Invalid(format!(
            "{} holds {} images but {} holds {} labels",
            images.as_ref().display(),
            im.count,
            labels.as_ref().display(),
            lb.len()
        )));
    }
    if im.count == 0 || im.rows * im.cols == 0 {
        return Err(DataError::Invalid(format!("{}: no images", images.as_ref().display())));
    }
    Dataset::new(im.pixels, &[1, im.rows, im.cols])?.with_labels(lb)
}
