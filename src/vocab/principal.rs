//! Who is calling: the subject, its roles and its teams, however it authenticated.

use std::collections::BTreeSet;

/// The roles paved knows; configuration and tokens may grant only these.
pub const ROLES: &[&str] = &["developer", "lead", "platform-admin"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Entity ref (`user:default/jane`), or `anonymous`.
    pub subject: String,
    pub roles: BTreeSet<String>,
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

    pub fn has_role(&self, role: &str) -> bool {
        self.roles.contains(role)
    }

    pub fn is_admin(&self) -> bool {
        self.has_role("platform-admin")
    }

    pub fn member_of(&self, team: &str) -> bool {
        self.groups.contains(team)
    }
}
