use std::fmt;
use std::path::PathBuf;

/// Why a dataset could not be loaded or built. Every file error names the file, and the line
/// (CSV, 1-based) or byte offset (IDX) where the problem is.
#[derive(Debug)]
pub enum DataError {
    /// The file could not be opened or read (missing, unreadable, bad gzip stream).
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A CSV field is not a number (or a label is not a class index).
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// 1-based column number.
        column: usize,
        /// The offending field.
        field: String,
        /// What was expected.
        expected: &'static str,
    },
    /// A CSV row has a different number of fields from the first one.
    Ragged {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// Fields in the first data row.
        expected: usize,
        /// Fields in this row.
        found: usize,
    },
    /// The CSV label column does not exist (index out of range or header name not found).
    NoSuchColumn {
        /// The file.
        path: PathBuf,
        /// The column asked for.
        column: String,
    },
    /// An IDX file does not start with the expected magic number.
    BadMagic {
        /// The file.
        path: PathBuf,
        /// What the loader expected (e.g. `0x00000803` for images).
        expected: u32,
        /// What the file holds at offset 0.
        found: u32,
    },
    /// The file ends before the data its header announces.
    Truncated {
        /// The file.
        path: PathBuf,
        /// Byte offset (in the decompressed data) where more data was expected.
        offset: usize,
        /// Bytes expected in total.
        expected: usize,
        /// Bytes present.
        found: usize,
    },
    /// Inconsistent data (e.g. image and label counts differ, labels out of range, empty file).
    Invalid(String),
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            DataError::Parse { path, line, column, field, expected } => write!(
                f,
                "{}:{line}: column {column}: expected {expected}, found {field:?}",
                path.display()
            ),
            DataError::Ragged { path, line, expected, found } => write!(
                f,
                "{}:{line}: expected {expected} fields (as in the first row), found {found}",
                path.display()
            ),
            DataError::NoSuchColumn { path, column } => {
                write!(f, "{}: no column {column}", path.display())
            }
            DataError::BadMagic { path, expected, found } => write!(
                f,
                "{}: byte offset 0: bad IDX magic number {found:#010x}, expected {expected:#010x}",
                path.display()
            ),
            DataError::Truncated { path, offset, expected, found } => write!(
                f,
                "{}: truncated at byte offset {offset}: expected {expected} bytes, file has {found}",
                path.display()
            ),
            DataError::Invalid(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for DataError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DataError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
