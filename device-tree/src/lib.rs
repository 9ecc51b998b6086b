//! device-tree: skeleton, filled by its issue.
