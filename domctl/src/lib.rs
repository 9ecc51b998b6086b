//! domctl: skeleton, filled by its issue.
