//! The HTTP fault layer (to be written).
