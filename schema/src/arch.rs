//! The host architecture of a board (and of its control domain, which runs on it).

/// A board's CPU architecture.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Arch {
    Arm64,
    X86_64,
}

impl Arch {
    /// The name in manifests and board files (`arm64`, `x86_64`).
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::Arm64 => "arm64",
            Arch::X86_64 => "x86_64",
        }
    }

    /// Debian's name for the architecture (`dpkg --print-architecture`).
    pub fn debian(self) -> &'static str {
        match self {
            Arch::Arm64 => "arm64",
            Arch::X86_64 => "amd64",
        }
    }

    /// The architecture Debian calls `name` (a lock file's `architecture`); the GNU names
    /// (`aarch64`, `x86_64`, `x86-64`) are accepted too.
    pub fn from_debian(name: &str) -> Option<Self> {
        match name {
            "arm64" | "aarch64" => Some(Arch::Arm64),
            "amd64" | "x86_64" | "x86-64" => Some(Arch::X86_64),
            _ => None,
        }
    }

    /// The GNU / `uname -m` name (`aarch64`, `x86_64`): multiarch paths, ELF tools' names.
    pub fn gnu(self) -> &'static str {
        match self {
            Arch::Arm64 => "aarch64",
            Arch::X86_64 => "x86_64",
        }
    }

    /// The Rust target a static control-domain binary (domforge-init) is built for.
    pub fn musl_target(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64-unknown-linux-musl",
            Arch::Arm64 => "aarch64-unknown-linux-musl",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Arch;

    /// Debian's names (dpkg-architecture's table) and the GNU ones (`uname -m`).
    #[test]
    fn names_match_debian_and_gnu() {
        for (arch, debian, gnu) in [
            (Arch::Arm64, "arm64", "aarch64"),
            (Arch::X86_64, "amd64", "x86_64"),
        ] {
            assert_eq!(arch.debian(), debian);
            assert_eq!(arch.gnu(), gnu);
            assert_eq!(Arch::from_debian(debian), Some(arch));
            assert_eq!(Arch::from_debian(gnu), Some(arch));
        }
        assert_eq!(Arch::from_debian("armhf"), None);
    }
}
