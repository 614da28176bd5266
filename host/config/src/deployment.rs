//! The part a host plays (`role`) and the storage classes a deployment maps to disks
//! (`[storage]`): the two names every layer above the config speaks.

use std::fmt;

/// The part a host plays in a deployment: `web` faces users and keeps no PHI on its own disks
/// (its PHI classes go to a services host); `services` holds the data; `testing` is a single
/// machine for development and tests, where everything is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Faces users; never keeps PHI on its own disks.
    Web,
    /// Holds the data.
    Services,
    /// One machine for development and tests.
    Testing,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Web => "web",
            Role::Services => "services",
            Role::Testing => "testing",
        })
    }
}

/// The storage classes a deployment maps to disks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StorageClass {
    /// General storage.
    Default,
    /// Temporary processing files that must be cleaned up.
    Scratch,
    /// Permanent cohort submission files.
    Submission,
}

impl StorageClass {
    /// Every class, in config order.
    pub const ALL: [StorageClass; 3] = [StorageClass::Default, StorageClass::Scratch, StorageClass::Submission];

    /// The class's name in config files and addresses.
    pub fn as_str(self) -> &'static str {
        match self {
            StorageClass::Default => "default",
            StorageClass::Scratch => "scratch",
            StorageClass::Submission => "submission",
        }
    }

    /// Parses a class name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

impl fmt::Display for StorageClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
