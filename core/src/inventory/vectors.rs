//! Placeholder while the vector layer is written.
