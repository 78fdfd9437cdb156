//! Plate recognition: detector + OCR through ONNX Runtime.

pub mod cli;
