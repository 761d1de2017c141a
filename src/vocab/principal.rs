//! Who is calling: the subject, its roles and its teams, however it authenticated.

use std::collections::BTreeSet;

/// The roles paved knows; configuration and tokens may grant only these (an unknown name is
/// refused where it is read, naming the known ones).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Every Backstage user: orders and reads their teams' resources.
    Developer,
    /// Decides approvals for their own teams.
    Lead,
    /// Decides everything, sees everything.
    PlatformAdmin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Developer, Role::Lead, Role::PlatformAdmin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Developer => "developer",
            Role::Lead => "lead",
            Role::PlatformAdmin => "platform-admin",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                let known: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
                format!("unknown role {s:?} (known: {})", known.join(", "))
            })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Entity ref (`user:default/jane`), or `anonymous`.
    pub subject: String,
    pub roles: BTreeSet<Role>,
    pub groups: BTreeSet<String>,
    /// The plugin that called on the subject's behalf (`plugin:scaffolder`), if any.
    pub via: Option<String>,
}

impl Principal {
    pub fn anonymous() -> Self {
        Self {
            subject: "anonymous".into(),
            roles: BTreeSet::new(),
            groups: BTreeSet::new(),
            via: None,
        }
    }

    pub fn is_anonymous(&self) -> bool {
        self.subject == "anonymous"
    }

    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    pub fn is_admin(&self) -> bool {
        self.has_role(Role::PlatformAdmin)
    }

    pub fn member_of(&self, team: &str) -> bool {
        self.groups.contains(team)
    }
}
