//! PNG figures without system libraries or fonts: training curves ([`History::plot`]), a
//! confusion matrix ([`ConfusionMatrix::plot`]), a scatter plot ([`scatter`]) and a grid of
//! grey-scale images ([`image_grid`]).
//!
//! A small raster canvas draws lines, dots and boxes; numbers (axis ranges, counts) use a
//! built-in 3×5 pixel glyph set, and series are told apart by colour (the colours are listed
//! on each function). The PNG is encoded here (zlib through `flate2`, already a dependency).

use std::io::Write;
use std::path::Path;

use super::fit::History;
use super::metrics::ConfusionMatrix;

/// An RGB colour.
pub type Rgb = [u8; 3];

/// Blue: training curves, generated samples.
pub const BLUE: Rgb = [31, 119, 180];
/// Orange: validation curves, reference points.
pub const ORANGE: Rgb = [255, 127, 14];
/// Green: accuracy curves.
pub const GREEN: Rgb = [44, 160, 44];
/// Red: validation accuracy.
pub const RED: Rgb = [214, 39, 40];
const GREY: Rgb = [150, 150, 150];
const BLACK: Rgb = [0, 0, 0];
const WHITE: Rgb = [255, 255, 255];

/// A white RGB canvas.
#[derive(Debug, Clone)]
pub struct Canvas {
    w: usize,
    h: usize,
    px: Vec<u8>,
}

impl Canvas {
    /// A `w × h` white canvas.
    pub fn new(w: usize, h: usize) -> Self {
        Canvas { w, h, px: vec![255; w * h * 3] }
    }

    /// Sets one pixel (ignored outside the canvas).
    pub fn set(&mut self, x: i64, y: i64, c: Rgb) {
        if x >= 0 && y >= 0 && (x as usize) < self.w && (y as usize) < self.h {
            let i = (y as usize * self.w + x as usize) * 3;
            self.px[i..i + 3].copy_from_slice(&c);
        }
    }

    /// Fills a rectangle.
    pub fn fill(&mut self, x0: i64, y0: i64, w: i64, h: i64, c: Rgb) {
        for y in y0..y0 + h {
            for x in x0..x0 + w {
                self.set(x, y, c);
            }
        }
    }

    /// A line two pixels wide.
    pub fn line(&mut self, (x0, y0): (f64, f64), (x1, y1): (f64, f64), c: Rgb) {
        let n = ((x1 - x0).abs().max((y1 - y0).abs()).ceil() as usize).max(1);
        for i in 0..=n {
            let t = i as f64 / n as f64;
            let (x, y) = (x0 + t * (x1 - x0), y0 + t * (y1 - y0));
            self.fill(x.round() as i64, y.round() as i64, 2, 2, c);
        }
    }

    /// A filled disc of radius `r`.
    pub fn dot(&mut self, x: f64, y: f64, r: f64, c: Rgb) {
        let ri = r.ceil() as i64;
        for dy in -ri..=ri {
            for dx in -ri..=ri {
                if ((dx * dx + dy * dy) as f64) <= r * r {
                    self.set(x.round() as i64 + dx, y.round() as i64 + dy, c);
                }
            }
        }
    }

    /// Writes `text` (digits, `.`, `-`, `+`, `e`, `%`, space) with the built-in 3×5 glyphs
    /// scaled by `s`, top-left at `(x, y)`.
    pub fn text(&mut self, x: i64, y: i64, text: &str, s: i64, c: Rgb) {
        for (k, ch) in text.chars().enumerate() {
            let g = glyph(ch);
            for (row, bits) in g.iter().enumerate() {
                for col in 0..3 {
                    if bits & (0b100 >> col) != 0 {
                        self.fill(x + (k as i64 * 4 + col) * s, y + row as i64 * s, s, s, c);
                    }
                }
            }
        }
    }

    /// Encodes the canvas as a PNG and writes it atomically (beside, then renamed).
    pub fn save_png(&self, path: impl AsRef<Path>) -> std::io::Result<()> {
        let bytes = encode_png(self.w as u32, self.h as u32, &self.px)?;
        let path = path.as_ref();
        let tmp = path.with_extension("png.tmp");
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, path)
    }
}

fn glyph(c: char) -> [u8; 5] {
    match c {
        '0' => [0b111, 0b101, 0b101, 0b101, 0b111],
        '1' => [0b010, 0b110, 0b010, 0b010, 0b111],
        '2' => [0b111, 0b001, 0b111, 0b100, 0b111],
        '3' => [0b111, 0b001, 0b111, 0b001, 0b111],
        '4' => [0b101, 0b101, 0b111, 0b001, 0b001],
        '5' => [0b111, 0b100, 0b111, 0b001, 0b111],
        '6' => [0b111, 0b100, 0b111, 0b101, 0b111],
        '7' => [0b111, 0b001, 0b010, 0b010, 0b010],
        '8' => [0b111, 0b101, 0b111, 0b101, 0b111],
        '9' => [0b111, 0b101, 0b111, 0b001, 0b111],
        '.' => [0, 0, 0, 0, 0b010],
        '-' => [0, 0, 0b111, 0, 0],
        '+' => [0, 0b010, 0b111, 0b010, 0],
        'e' => [0, 0b111, 0b111, 0b100, 0b111],
        '%' => [0b101, 0b001, 0b010, 0b100, 0b101],
        _ => [0; 5],
    }
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut c = 0xffff_ffffu32;
    for &b in bytes {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 { 0xedb8_8320 ^ (c >> 1) } else { c >> 1 };
        }
    }
    !c
}

fn encode_png(w: u32, h: u32, rgb: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut raw = Vec::with_capacity((w as usize * 3 + 1) * h as usize);
    for row in rgb.chunks(w as usize * 3) {
        raw.push(0); // filter: none
        raw.extend_from_slice(row);
    }
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&raw)?;
    let idat = z.finish()?;
    let mut out = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
    let mut chunk = |kind: &[u8; 4], data: &[u8]| {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc32(&body).to_be_bytes());
    };
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB, no interlace
    chunk(b"IHDR", &ihdr);
    chunk(b"IDAT", &idat);
    chunk(b"IEND", &[]);
    Ok(out)
}

/// A short label for an axis end: `0.123`, `12.3`, `1.2e-5`.
fn num(v: f64) -> String {
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e4).contains(&a) {
        format!("{v:.1e}")
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

/// One panel of line series over a shared x axis (`1..=n`), with its y range printed.
fn panel(c: &mut Canvas, x0: i64, y0: i64, w: i64, h: i64, series: &[(&[f64], Rgb)]) {
    let vals: Vec<f64> = series.iter().flat_map(|(s, _)| s.iter().copied()).filter(|v| v.is_finite()).collect();
    let n = series.iter().map(|(s, _)| s.len()).max().unwrap_or(0);
    // frame
    for (a, b) in [((x0, y0), (x0 + w, y0)), ((x0, y0 + h), (x0 + w, y0 + h)), ((x0, y0), (x0, y0 + h)), ((x0 + w, y0), (x0 + w, y0 + h))] {
        c.line((a.0 as f64, a.1 as f64), (b.0 as f64, b.1 as f64), GREY);
    }
    if vals.is_empty() || n == 0 {
        return;
    }
    let (mut lo, mut hi) = vals.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| (l.min(*v), h.max(*v)));
    if hi - lo < 1e-12 {
        lo -= 0.5;
        hi += 0.5;
    }
    let pad = (hi - lo) * 0.05;
    let (lo, hi) = (lo - pad, hi + pad);
    let px = |i: usize| x0 as f64 + 8.0 + (w as f64 - 16.0) * if n > 1 { i as f64 / (n - 1) as f64 } else { 0.5 };
    let py = |v: f64| y0 as f64 + h as f64 - (v - lo) / (hi - lo) * h as f64;
    for (s, col) in series {
        for i in 1..s.len() {
            if s[i - 1].is_finite() && s[i].is_finite() {
                c.line((px(i - 1), py(s[i - 1])), (px(i), py(s[i])), *col);
            }
        }
        for (i, v) in s.iter().enumerate() {
            if v.is_finite() {
                c.dot(px(i), py(*v), 3.0, *col);
            }
        }
    }
    c.text(x0 + 4, y0 + 4, &num(hi), 2, BLACK);
    c.text(x0 + 4, y0 + h - 14, &num(lo), 2, BLACK);
    c.text(x0 + w - 4 - 8 * n.to_string().len() as i64, y0 + h + 6, &n.to_string(), 2, BLACK);
    c.text(x0, y0 + h + 6, "1", 2, BLACK);
}

impl History {
    /// Draws the loss curves (training blue, validation orange) and, when recorded, the
    /// accuracy curves (training green, validation red) against the epoch, to a PNG.
    pub fn plot(&self, path: impl AsRef<Path>) -> std::io::Result<()> {
        let train = self.train_loss();
        let val: Vec<f64> = self.epochs.iter().map(|e| e.val_loss.unwrap_or(f64::NAN)).collect();
        let tacc: Vec<f64> = self.epochs.iter().map(|e| e.train_accuracy.unwrap_or(f64::NAN)).collect();
        let vacc: Vec<f64> = self.epochs.iter().map(|e| e.val_accuracy.unwrap_or(f64::NAN)).collect();
        let has_acc = tacc.iter().chain(&vacc).any(|v| v.is_finite());
        let mut c = Canvas::new(if has_acc { 960 } else { 480 }, 360);
        panel(&mut c, 20, 20, 440, 300, &[(&train, BLUE), (&val, ORANGE)]);
        if has_acc {
            panel(&mut c, 500, 20, 440, 300, &[(&tacc, GREEN), (&vacc, RED)]);
        }
        c.save_png(path)
    }
}

impl ConfusionMatrix {
    /// Draws the matrix as a heat map (rows: actual class, columns: predicted; darker =
    /// more samples, each row scaled by its total) with the counts written in the cells, to
    /// a PNG.
    pub fn plot(&self, path: impl AsRef<Path>) -> std::io::Result<()> {
        let k = self.counts.len().max(1);
        let cell = 48i64;
        let m = 40i64;
        let mut c = Canvas::new((m + cell * k as i64 + 10) as usize, (m + cell * k as i64 + 10) as usize);
        for (i, row) in self.counts.iter().enumerate() {
            let total = row.iter().sum::<usize>().max(1) as f64;
            for (j, &n) in row.iter().enumerate() {
                let f = n as f64 / total;
                let shade = |base: u8| (255.0 - f * (255.0 - base as f64)) as u8;
                let col = [shade(8), shade(48), shade(107)];
                let (x, y) = (m + j as i64 * cell, m + i as i64 * cell);
                c.fill(x, y, cell - 1, cell - 1, col);
                let s = n.to_string();
                let tc = if f > 0.5 { WHITE } else { BLACK };
                c.text(x + (cell - 8 * s.len() as i64) / 2, y + cell / 2 - 5, &s, 2, tc);
            }
            c.text(m / 2 - 4, m + i as i64 * cell + cell / 2 - 5, &(i % 10).to_string(), 2, BLACK);
            c.text(m + i as i64 * cell + cell / 2 - 3, m / 2 - 5, &(i % 10).to_string(), 2, BLACK);
        }
        c.save_png(path)
    }
}

/// A scatter plot of `points` (blue) over `marks` (orange, larger), e.g. generated samples
/// over the modes of the data; the axes span `[-lim, lim]` both ways.
pub fn scatter(path: impl AsRef<Path>, points: &[(f64, f64)], marks: &[(f64, f64)], lim: f64) -> std::io::Result<()> {
    let size = 480.0;
    let mut c = Canvas::new(size as usize, size as usize);
    let to = |(x, y): (f64, f64)| ((x / lim + 1.0) * size / 2.0, (1.0 - y / lim) * size / 2.0);
    c.line((0.0, size / 2.0), (size, size / 2.0), GREY);
    c.line((size / 2.0, 0.0), (size / 2.0, size), GREY);
    for p in points {
        let (x, y) = to(*p);
        c.dot(x, y, 1.5, BLUE);
    }
    for p in marks {
        let (x, y) = to(*p);
        c.dot(x, y, 5.0, ORANGE);
    }
    c.text(4, 4, &num(lim), 2, BLACK);
    c.save_png(path)
}

/// Grey-scale images (`w × h` values each, row-major, scaled together from their overall
/// minimum (white) to maximum (black)) laid out `cols` per row, each pixel drawn `scale`
/// pixels wide.
pub fn image_grid(
    path: impl AsRef<Path>,
    images: &[Vec<f32>],
    (w, h): (usize, usize),
    cols: usize,
    scale: usize,
) -> std::io::Result<()> {
    let cols = cols.max(1);
    let rows = images.len().div_ceil(cols).max(1);
    let gap = 2;
    let cw = cols * (w * scale + gap) + gap;
    let ch = rows * (h * scale + gap) + gap;
    let mut c = Canvas::new(cw, ch);
    c.fill(0, 0, cw as i64, ch as i64, GREY);
    let (lo, hi) = images.iter().flatten().filter(|v| v.is_finite()).fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), v| (l.min(*v), h.max(*v)));
    let span = if hi > lo { hi - lo } else { 1.0 };
    for (k, img) in images.iter().enumerate() {
        let (gx, gy) = ((k % cols) * (w * scale + gap) + gap, (k / cols) * (h * scale + gap) + gap);
        for y in 0..h {
            for x in 0..w {
                let v = img.get(y * w + x).copied().unwrap_or(lo);
                let g = 255 - (((v - lo) / span).clamp(0.0, 1.0) * 255.0) as u8;
                c.fill((gx + x * scale) as i64, (gy + y * scale) as i64, scale as i64, scale as i64, [g, g, g]);
            }
        }
    }
    c.save_png(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_of_iend_is_the_known_constant() {
        // Every PNG ends with IEND whose CRC is ae 42 60 82.
        assert_eq!(crc32(b"IEND"), 0xae42_6082);
    }

    #[test]
    fn png_decodes_back() {
        let mut c = Canvas::new(3, 2);
        c.set(1, 0, [10, 20, 30]);
        let bytes = encode_png(3, 2, &c.px).unwrap();
        assert_eq!(&bytes[..8], &[0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a]);
        // IDAT holds a zlib stream of the filtered rows
        let start = bytes.windows(4).position(|w| w == b"IDAT").unwrap();
        let len = u32::from_be_bytes(bytes[start - 4..start].try_into().unwrap()) as usize;
        let mut d = flate2::read::ZlibDecoder::new(&bytes[start + 4..start + 4 + len]);
        let mut raw = Vec::new();
        std::io::Read::read_to_end(&mut d, &mut raw).unwrap();
        assert_eq!(raw.len(), 2 * (1 + 9));
        assert_eq!(&raw[1..7], &[255, 255, 255, 10, 20, 30]);
    }
}
