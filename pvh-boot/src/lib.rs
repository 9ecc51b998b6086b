//! pvh-boot: skeleton, filled by its issue.
