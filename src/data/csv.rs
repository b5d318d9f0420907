//! CSV loading (plain or gzip-compressed).

use std::io::Read;
use std::path::{Path, PathBuf};

use super::{DataError, Dataset};

/// A CSV column: by 0-based index, the last one, or by header name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Column {
    /// 0-based index.
    Index(usize),
    /// The last column.
    Last,
    /// The column with this header name (needs `has_header`).
    Name(String),
}

/// What the label column holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelKind {
    /// No label column: every column is an input feature.
    None,
    /// A class index (a non-negative integer, `3` or `3.0`) → [`Dataset::labels`].
    Class(Column),
    /// A real-valued regression target → [`Dataset::targets`] (one per sample).
    Target(Column),
}

/// How to read a CSV file. `Default`: no header, `,` separated, class label in the last
/// column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvOptions {
    /// Whether the first non-empty line is a header of column names.
    pub has_header: bool,
    /// Field separator.
    pub delimiter: char,
    /// Which column is the label and what it holds; every other column is an input feature.
    pub label: LabelKind,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions { has_header: false, delimiter: ',', label: LabelKind::Class(Column::Last) }
    }
}

/// Loads a CSV file into a [`Dataset`] of `f32` (per-sample shape `[features]`). Files whose
/// content starts with the gzip magic bytes are decompressed first, whatever their name.
/// Empty lines are skipped; fields are trimmed and may be double-quoted.
///
/// Errors ([`DataError`]): missing/unreadable file, a field that is not a number (file, line,
/// column), a row with a different field count from the first (file, line), an unknown
/// label column.
pub fn load_csv(path: impl AsRef<Path>, opts: &CsvOptions) -> Result<Dataset<f32>, DataError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| DataError::Io { path: path.into(), source })?;
    parse_csv(&bytes, path, opts)
}

/// Parses CSV `bytes` (plain or gzip) as [`load_csv`] does; `name` is used in errors.
pub fn parse_csv(bytes: &[u8], name: impl AsRef<Path>, opts: &CsvOptions) -> Result<Dataset<f32>, DataError> {
    let path: PathBuf = name.as_ref().into();
    let text = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(bytes)
            .read_to_end(&mut out)
            .map_err(|source| DataError::Io { path: path.clone(), source })?;
        String::from_utf8_lossy(&out).into_owned()
    } else {
        String::from_utf8_lossy(bytes).into_owned()
    };

    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_end_matches('\r')))
        .filter(|(_, l)| !l.trim().is_empty());
    let split = |l: &str| -> Vec<String> {
        l.split(opts.delimiter)
            .map(|f| {
                let f = f.trim();
                f.strip_prefix('"').and_then(|f| f.strip_suffix('"')).unwrap_or(f).to_string()
            })
            .collect()
    };

    let header = if opts.has_header { lines.next().map(|(_, l)| split(l)) } else { None };
    let mut width = header.as_ref().map(|h| h.len());
    let mut label_col: Option<usize> = None;
    let (label_spec, is_class) = match &opts.label {
        LabelKind::None => (None, false),
        LabelKind::Class(c) => (Some(c), true),
        LabelKind::Target(c) => (Some(c), false),
    };
    let resolve = |c: &Column, w: usize| -> Result<usize, DataError> {
        let no_col = |s: String| DataError::NoSuchColumn { path: path.clone(), column: s };
        match c {
            Column::Index(i) if *i < w => Ok(*i),
            Column::Index(i) => Err(no_col(format!("{i} (rows have {w} fields)"))),
            Column::Last => Ok(w - 1),
            Column::Name(n) => header
                .as_ref()
                .and_then(|h| h.iter().position(|x| x == n))
                .ok_or_else(|| no_col(format!("named {n:?}"))),
        }
    };

    let mut inputs = Vec::new();
    let mut labels = Vec::new();
    let mut targets = Vec::new();
    let mut rows = 0usize;
    for (line, l) in lines {
        let fields = split(l);
        let w = *width.get_or_insert(fields.len());
        if fields.len() != w {
            return Err(DataError::Ragged { path, line, expected: w, found: fields.len() });
        }
        if label_col.is_none() {
            if let Some(c) = label_spec {
                label_col = Some(resolve(c, w)?);
            }
        }
        for (j, f) in fields.iter().enumerate() {
            let v: f64 = f.parse().map_err(|_| DataError::Parse {
                path: path.clone(),
                line,
                column: j + 1,
                field: f.clone(),
                expected: "a number",
            })?;
            if Some(j) == label_col {
                if is_class {
                    if !(v >= 0.0 && v.fract() == 0.0 && v < u32::MAX as f64) {
                        return Err(DataError::Parse {
                            path: path.clone(),
                            line,
                            column: j + 1,
                            field: f.clone(),
                            expected: "a class index (non-negative integer)",
                        });
                    }
                    labels.push(v as usize);
                } else {
                    targets.push(v as f32);
                }
            } else {
                inputs.push(v as f32);
            }
        }
        rows += 1;
    }
    if rows == 0 {
        return Err(DataError::Invalid(format!("{}: no data rows", path.display())));
    }
    let w = width.unwrap_or(0);
    let features = w - usize::from(label_col.is_some());
    if features == 0 {
        return Err(DataError::Invalid(format!("{}: no feature columns", path.display())));
    }
    let mut ds = Dataset::new(inputs, &[features])?;
    if label_col.is_some() {
        ds = if is_class { ds.with_labels(labels)? } else { ds.with_targets(targets, 1)? };
    }
    Ok(ds)
}
