//! Image stage: decode (PNG/JPEG/DICOM) -> grayscale u8 -> crop/resize -> augmented copies ->
//! shards. See [`stage`] for how a build runs it.

pub mod augment;
pub mod decode;
pub mod dicom;
pub mod facts;
pub mod phash;
pub mod preprocess;
pub mod stage;
