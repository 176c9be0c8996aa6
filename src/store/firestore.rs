//! The Firestore store (placeholder while being implemented).
