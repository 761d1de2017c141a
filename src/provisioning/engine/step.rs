//! The steps a request runs, as the engine knows them. Stored (and shown in the request's
//! status and logs) by name: `validate`, `create db`, `store credentials`, ...

use std::fmt;

use crate::{templates::RenderedSpec, vocab::status::Operation};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Every part's spec parses for its driver.
    Validate,
    /// The resource row exists (its name is the team's).
    Plan,
    Create(String),
    /// The part is converged to the new spec with the password it has.
    Update(String),
    /// The part is visible on its target as applied.
    Configure(String),
    Destroy(String),
    StoreCredentials,
    /// The resource is ready and its entity refreshed.
    Publish,
    /// Credentials destroyed, the name freed, the entity removed.
    Unpublish,
}

impl Step {
    /// The steps of `operation` on `spec`, in order.
    pub fn plan(operation: Operation, spec: &RenderedSpec) -> Vec<Step> {
        let parts = || spec.parts.iter().map(|p| p.id.clone());
        let mut steps = vec![Step::Validate];
        match operation {
            Operation::Delete => {
                // Parts go in reverse order: what was created last depends on what came first.
                steps.extend(spec.parts.iter().rev().map(|p| Step::Destroy(p.id.clone())));
                steps.push(Step::Unpublish);
            }
            Operation::Update => {
                // The resource exists: converge each part to the new spec, verify, publish.
                steps.extend(parts().map(Step::Update));
                steps.extend(parts().map(Step::Configure));
                steps.push(Step::Publish);
            }
            Operation::Create => {
                steps.push(Step::Plan);
                steps.extend(parts().map(Step::Create));
                steps.extend(parts().map(Step::Configure));
                steps.push(Step::StoreCredentials);
                steps.push(Step::Publish);
            }
        }
        steps
    }

    /// A step that calls a driver (acts on a target); the others only touch paved's database.
    pub fn calls_a_driver(&self) -> bool {
        matches!(
            self,
            Step::Create(_) | Step::Update(_) | Step::Configure(_) | Step::Destroy(_)
        )
    }

    /// A stored step name read back; `None` for one this engine does not know.
    pub fn parse(name: &str) -> Option<Step> {
        Some(match name {
            "validate" => Step::Validate,
            "plan" => Step::Plan,
            "store credentials" => Step::StoreCredentials,
            "publish" => Step::Publish,
            "unpublish" => Step::Unpublish,
            other => {
                let (action, part) = other.split_once(' ')?;
                let part = part.to_owned();
                match action {
                    "create" => Step::Create(part),
                    "update" => Step::Update(part),
                    "configure" => Step::Configure(part),
                    "destroy" => Step::Destroy(part),
                    _ => return None,
                }
            }
        })
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Validate => f.write_str("validate"),
            Step::Plan => f.write_str("plan"),
            Step::Create(p) => write!(f, "create {p}"),
            Step::Update(p) => write!(f, "update {p}"),
            Step::Configure(p) => write!(f, "configure {p}"),
            Step::Destroy(p) => write!(f, "destroy {p}"),
            Step::StoreCredentials => f.write_str("store credentials"),
            Step::Publish => f.write_str("publish"),
            Step::Unpublish => f.write_str("unpublish"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_step_name_reads_back_as_the_same_step() {
        for step in [
            Step::Validate,
            Step::Plan,
            Step::Create("db".into()),
            Step::Update("db".into()),
            Step::Configure("cache".into()),
            Step::Destroy("cache".into()),
            Step::StoreCredentials,
            Step::Publish,
            Step::Unpublish,
        ] {
            assert_eq!(Step::parse(&step.to_string()), Some(step));
        }
        assert_eq!(Step::parse("reticulate splines"), None);
        assert_eq!(Step::parse("frobnicate"), None);
    }
}
