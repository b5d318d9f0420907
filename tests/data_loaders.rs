//! CSV and IDX loaders: good files, gzip, and every malformed case as a typed error naming
//! the file and the line or byte offset.

use std::io::Write;
use std::path::PathBuf;

use typenet::data::*;

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("typenet-data-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn write(name: &str, bytes: &[u8]) -> PathBuf {
    let p = tmp(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

#[test]
fn csv_with_header_and_named_label() {
    let p = write("named.csv", b"a,label,b\n1,0,2\n3,1,4.5\n\n5,2,-6e-1\n");
    let opts = CsvOptions {
        has_header: true,
        label: LabelKind::Class(Column::Name("label".into())),
        ..Default::default()
    };
    let ds = load_csv(&p, &opts).unwrap();
    assert_eq!(ds.len(), 3);
    assert_eq!(ds.sample_shape, vec![2]);
    assert_eq!(ds.inputs, vec![1.0, 2.0, 3.0, 4.5, 5.0, -0.6]);
    assert_eq!(ds.labels, Some(vec![0, 1, 2]));
}

#[test]
fn csv_without_header_regression_target_and_gzip() {
    let text = b"1;2;10.5\r\n3;4;-1\r\n";
    let opts = CsvOptions { delimiter: ';', label: LabelKind::Target(Column::Index(2)), ..Default::default() };
    let plain = load_csv(write("t.csv", text), &opts).unwrap();
    let gz = load_csv(write("t.csv.gz", &gzip(text)), &opts).unwrap();
    assert_eq!(plain, gz);
    assert_eq!(plain.targets, Some(vec![10.5, -1.0]));
    assert_eq!(plain.target_len, 1);
    assert!(plain.labels.is_none());
    let all = load_csv(write("t2.csv", text), &CsvOptions { delimiter: ';', label: LabelKind::None, ..Default::default() }).unwrap();
    assert_eq!(all.feature_len(), 3);
}

#[test]
fn csv_ragged_row_names_file_and_line() {
    let p = write("ragged.csv", b"1,2,0\n3,4,1\n5,6\n");
    let e = load_csv(&p, &CsvOptions::default()).unwrap_err();
    assert!(matches!(e, DataError::Ragged { line: 3, expected: 3, found: 2, .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("ragged.csv:3"), "{msg}");
}

#[test]
fn csv_non_number_names_line_and_column() {
    let p = write("nan.csv", b"x,y,label\n1,2,0\n3,abc,1\n");
    let opts = CsvOptions { has_header: true, ..Default::default() };
    let e = load_csv(&p, &opts).unwrap_err();
    assert!(matches!(&e, DataError::Parse { line: 3, column: 2, field, .. } if field == "abc"), "{e:?}");
    assert!(e.to_string().contains("nan.csv:3: column 2"), "{e}");
    // a class label that is not a non-negative integer
    let p = write("badlabel.csv", b"1,2,0.5\n");
    let e = load_csv(&p, &CsvOptions::default()).unwrap_err();
    assert!(matches!(e, DataError::Parse { line: 1, column: 3, .. }), "{e:?}");
    let p = write("neglabel.csv", b"1,2,-1\n");
    assert!(matches!(load_csv(&p, &CsvOptions::default()), Err(DataError::Parse { .. })));
}

#[test]
fn csv_missing_file_empty_file_and_bad_column() {
    let p = tmp("no-such-file.csv");
    let e = load_csv(&p, &CsvOptions::default()).unwrap_err();
    assert!(matches!(e, DataError::Io { .. }), "{e:?}");
    assert!(e.to_string().contains("no-such-file.csv"), "{e}");
    let e = load_csv(write("empty.csv", b"\n\n"), &CsvOptions::default()).unwrap_err();
    assert!(matches!(e, DataError::Invalid(_)), "{e:?}");
    let opts = CsvOptions { label: LabelKind::Class(Column::Index(7)), ..Default::default() };
    let e = load_csv(write("cols.csv", b"1,2,3\n"), &opts).unwrap_err();
    assert!(matches!(e, DataError::NoSuchColumn { .. }), "{e:?}");
    let opts = CsvOptions { has_header: true, label: LabelKind::Class(Column::Name("y".into())), ..Default::default() };
    let e = load_csv(write("cols2.csv", b"a,b\n1,2\n"), &opts).unwrap_err();
    assert!(e.to_string().contains("\"y\""), "{e}");
    // corrupt gzip stream
    let mut gz = gzip(b"1,2,3\n4,5,6\n");
    let n = gz.len();
    gz.truncate(n - 12);
    let e = load_csv(write("cut.csv.gz", &gz), &CsvOptions::default()).unwrap_err();
    assert!(matches!(e, DataError::Io { .. }), "{e:?}");
}

fn idx_images(count: u32, rows: u32, cols: u32, pixels: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0, 8, 3];
    for d in [count, rows, cols] {
        v.extend(d.to_be_bytes());
    }
    v.extend_from_slice(pixels);
    v
}

fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0, 8, 1];
    v.extend((labels.len() as u32).to_be_bytes());
    v.extend_from_slice(labels);
    v
}

#[test]
fn mnist_idx_loads_plain_and_gzip() {
    let pixels: Vec<u8> = (0..2 * 3 * 2).map(|i| (i * 20) as u8).collect();
    let im = write("img-idx3-ubyte", &idx_images(2, 3, 2, &pixels));
    let lb = write("lbl-idx1-ubyte.gz", &gzip(&idx_labels(&[7, 3])));
    let ds = load_mnist(&im, &lb).unwrap();
    assert_eq!(ds.len(), 2);
    assert_eq!(ds.sample_shape, vec![1, 3, 2]);
    assert_eq!(ds.labels, Some(vec![7, 3]));
    assert_eq!(ds.inputs[1], 20.0 / 255.0);
    assert_eq!(ds.inputs[11], 220.0 / 255.0);
    let flat = ds.reshape(&[6]).unwrap();
    assert_eq!(flat.feature_len(), 6);
}

#[test]
fn idx_wrong_magic() {
    let p = write("magic-idx", &idx_labels(&[1, 2]));
    let e = load_idx_images(&p).unwrap_err();
    assert!(matches!(e, DataError::BadMagic { expected: 0x803, found: 0x801, .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("magic-idx") && msg.contains("byte offset 0"), "{msg}");
    let p = write("garbage-idx", b"PK\x03\x04 not idx");
    assert!(matches!(load_idx_labels(&p), Err(DataError::BadMagic { .. })));
}

#[test]
fn idx_truncated_header_and_data() {
    let full = idx_images(2, 3, 2, &[0; 12]);
    let p = write("short-header-idx", &full[..10]);
    let e = load_idx_images(&p).unwrap_err();
    assert!(matches!(e, DataError::Truncated { offset: 10, expected: 16, .. }), "{e:?}");
    let p = write("short-data-idx", &full[..full.len() - 1]);
    let e = load_idx_images(&p).unwrap_err();
    assert!(matches!(e, DataError::Truncated { offset: 27, expected: 28, found: 27, .. }), "{e:?}");
    assert!(e.to_string().contains("short-data-idx: truncated at byte offset 27"), "{e}");
    let p = write("tiny-idx", &[0, 0]);
    assert!(matches!(load_idx_labels(&p), Err(DataError::Truncated { .. })));
    let labels = idx_labels(&[1, 2, 3]);
    let p = write("short-labels-idx", &labels[..labels.len() - 2]);
    assert!(matches!(load_idx_labels(&p), Err(DataError::Truncated { offset: 9, .. })));
}

#[test]
fn idx_missing_file_and_count_mismatch() {
    let e = load_idx_labels(tmp("nope-idx1-ubyte")).unwrap_err();
    assert!(matches!(e, DataError::Io { .. }) && e.to_string().contains("nope-idx1-ubyte"), "{e}");
    let im = write("im2-idx", &idx_images(2, 1, 1, &[0, 255]));
    let lb = write("lb3-idx", &idx_labels(&[0, 1, 2]));
    let e = load_mnist(&im, &lb).unwrap_err();
    assert!(e.to_string().contains("2 images") && e.to_string().contains("3 labels"), "{e}");
}

#[test]
fn dataset_errors_are_typed() {
    assert!(Dataset::new(vec![0.0f32; 5], &[2]).is_err());
    let ds = Dataset::new(vec![0.0f32; 4], &[2]).unwrap();
    assert!(ds.clone().with_labels(vec![0]).is_err());
    assert!(ds.clone().with_targets(vec![0.0], 1).is_err());
    assert!(ds.clone().reshape(&[3]).is_err());
    assert!(ds.clone().with_one_hot_targets(3).is_err(), "no labels");
    let oh = ds.with_labels(vec![1, 0]).unwrap().with_one_hot_targets(2).unwrap();
    assert_eq!(oh.targets, Some(vec![0.0, 1.0, 1.0, 0.0]));
    let e: Box<dyn std::error::Error> = Box::new(DataError::Invalid("x".into()));
    assert_eq!(e.to_string(), "x");
}

#[test]
fn digits_ship_with_the_crate() {
    let ds = digits();
    assert_eq!((ds.len(), ds.feature_len(), ds.num_classes()), (1797, 64, Some(10)));
    let mut counts = [0usize; 10];
    for l in ds.labels.as_ref().unwrap() {
        counts[*l] += 1;
    }
    assert!(counts.iter().all(|c| (170..=190).contains(c)), "{counts:?}");
    // the shipped file loads identically from disk
    let from_disk = load_csv(concat!(env!("CARGO_MANIFEST_DIR"), "/data/digits.csv.gz"), &CsvOptions::default()).unwrap();
    assert_eq!(from_disk, ds);
}

#[test]
fn karate_club_files_parse() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/data/");
    let opts = CsvOptions { has_header: true, label: LabelKind::Class(Column::Name("club".into())), ..Default::default() };
    let clubs = load_csv(format!("{dir}karate_clubs.csv"), &opts).unwrap();
    assert_eq!(clubs.inputs, (0..34).map(|i| i as f32).collect::<Vec<_>>());
    let labels = clubs.labels.unwrap();
    // the two leaders are in different clubs; the split is 17 / 17
    assert_eq!((labels[0], labels[33], labels.iter().sum::<usize>()), (0, 1, 17));
    let edges = load_csv(format!("{dir}karate_edges.csv"), &CsvOptions { has_header: true, label: LabelKind::None, ..Default::default() }).unwrap();
    assert_eq!(edges.len(), 78);
    let pairs: Vec<(usize, usize)> = edges.inputs.chunks(2).map(|p| (p[0] as usize, p[1] as usize)).collect();
    let g = typenet::graph::Graph::undirected(34, &pairs).unwrap();
    assert_eq!(g.num_edges(), 156);
    assert_eq!((g.in_degree(0), g.in_degree(33)), (16, 17));
}

#[test]
fn census_surnames_parse() {
    use std::io::Read;
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/data/census_surnames.txt.gz");
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap()).read_to_string(&mut text).unwrap();
    let names: Vec<&str> = text.lines().collect();
    assert_eq!(names.len(), 88799);
    assert_eq!(&names[..3], &["smith", "johnson", "williams"]);
    assert!(names.iter().all(|n| (1..=13).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_lowercase())));
}
