//! What a failed step says, so the developer waiting for it can act: which step and where in
//! the run ("failed at step 3 of 6: create database"), the cause as the driver saw it (with
//! the server's environment, host and port, never a password), what to do next where paved
//! knows it, and where the request's logs are.

/// A step's place in its run.
pub(super) struct At<'a> {
    /// 1-based.
    pub position: usize,
    pub total: usize,
    pub step: &'a str,
}

/// Already explained: a message that went through [`explain`] (a rerun of the job passes it
/// through `fail_request` again).
pub(super) fn is_explained(message: &str) -> bool {
    message.starts_with("failed at step ")
}

pub(super) fn explain(at: &At<'_>, cause: &str, logs: &str) -> String {
    let mut m = format!(
        "failed at step {} of {}: {}: {}",
        at.position,
        at.total,
        at.step,
        cause.trim_end_matches('.')
    );
    if let Some(r) = remedy(cause) {
        m.push_str(". What next: ");
        m.push_str(&r);
    }
    m.push_str(". Logs: ");
    m.push_str(logs);
    m
}

/// `message` (from [`explain`]) with one more thing to do, told before the logs' link.
pub(super) fn then(message: &str, next: &str) -> String {
    match message.rfind(". Logs: ") {
        Some(i) => format!("{}. {next}{}", &message[..i], &message[i..]),
        None => format!("{message}. {next}"),
    }
}

/// What a developer or the platform team does about a cause paved recognizes.
fn remedy(cause: &str) -> Option<String> {
    let c = cause.to_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|n| c.contains(n));
    const NO_TARGET: &str = " target configured for environment ";
    if let Some(i) = c.find(NO_TARGET) {
        let driver = c[..i].rsplit(' ').next().unwrap_or_default();
        let env: String = c[i + NO_TARGET.len()..]
            .trim_start_matches('"')
            .chars()
            .take_while(|ch| *ch != '"')
            .collect();
        return Some(format!(
            "paved has no {driver} server for environment {env}; the platform team adds one under drivers.{driver}.targets"
        ));
    }
    Some(
        if has(&[
            "connection refused",
            "cannot connect",
            "no answer within",
            "connection reset",
        ]) {
            "the server is not accepting connections at that address; the platform team checks that it is running and reachable from paved (drivers settings)".into()
        } else if has(&[
            "password authentication failed",
            "wrongpass",
            "noauth",
            "authentication required",
        ]) {
            "the server refused paved's own login; the platform team fixes the credentials in paved's target URL for this environment".into()
        } else if has(&[
            "permission denied",
            "must be owner",
            "noperm",
            "must have createrole",
            "must have createdb",
        ]) {
            "paved's account on the server lacks a privilege it needs (CREATEDB and CREATEROLE on PostgreSQL, ACL management on Redis); the platform team grants it".into()
        } else if has(&["too many connections", "remaining connection slots"]) {
            "the server has no connection slots left; the platform team raises its limit or frees connections".into()
        } else if has(&["already exists", "not this resource's"]) {
            "something of that name exists on the server and is not this resource's; order it under another name".into()
        } else if has(&["timed out", "timeout"]) {
            "the server did not answer in time (overloaded, or a lock held by another session); order again later, or ask the platform team if it persists".into()
        } else {
            return None;
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOGS: &str = "/api/paved/v1/requests/r1/logs";

    #[test]
    fn a_refused_connection_names_the_step_the_place_and_what_next() {
        let at = At {
            position: 3,
            total: 6,
            step: "create database",
        };
        let m = explain(
            &at,
            "PostgreSQL (dev) at 127.0.0.1:1: cannot connect: error communicating with database: Connection refused (os error 111)",
            LOGS,
        );
        assert!(
            m.starts_with("failed at step 3 of 6: create database: PostgreSQL (dev) at 127.0.0.1:1: cannot connect"),
            "{m}"
        );
        assert!(
            m.contains("What next: the server is not accepting connections"),
            "{m}"
        );
        assert!(m.ends_with(&format!("Logs: {LOGS}")), "{m}");
        assert!(is_explained(&m));
        let m = then(&m, "Then order again");
        assert!(
            m.ends_with(&format!("Then order again. Logs: {LOGS}")),
            "{m}"
        );
    }

    #[test]
    fn a_missing_target_says_which_setting() {
        let r = remedy("no redis target configured for environment \"qa\"").unwrap();
        assert!(
            r.contains("drivers.redis.targets") && r.contains("environment qa"),
            "{r}"
        );
    }

    #[test]
    fn an_unknown_cause_gets_no_invented_remedy() {
        assert_eq!(remedy("something odd"), None);
    }
}
