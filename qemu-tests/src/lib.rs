//! qemu-tests: skeleton, filled by its issue.
