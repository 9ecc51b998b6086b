//! images: skeleton, filled by its issue.
