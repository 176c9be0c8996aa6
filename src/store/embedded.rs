//! The embedded in-process store (placeholder while being implemented).
