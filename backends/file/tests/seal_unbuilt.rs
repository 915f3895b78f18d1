//! Without the `seal` feature, `seal=on` is a config error at open that
//! names the feature, never pages stored unsealed.
#![cfg(not(feature = "seal"))]

use pagebackup_core::ErrorKind;
use pagebackup_file::{FileBackend, FileConfig};

#[test]
fn seal_on_needs_the_feature() {
    let config = FileConfig::from_params(&[("seal", "on")]).unwrap();
    let error = FileBackend::new(config).unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Config);
    assert!(error.to_string().contains("enable the `seal` feature"), "{error}");
}
