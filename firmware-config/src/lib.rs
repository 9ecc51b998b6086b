//! firmware-config
