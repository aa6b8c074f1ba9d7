//! weir data path.
