//! weir test kit.
