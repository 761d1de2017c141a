//! Who may do what: every role against every kind of endpoint, on a request and a resource
//! that really exist (a Redis user on this machine's Redis). Roles come from static tokens,
//! which produce the same principal a Backstage token does.

use crate::common;

use common::kit::unique_with as unique;
use common::{Engine as DbEngine, Teardown, TestApp, TestDb, settings, static_token};
use serde_json::{Value, json};

/// Callers, in the order of each expectation row.
const CALLERS: [(&str, Option<&str>); 6] = [
    ("nobody", None),
    ("developer of team-a", Some("dev-a")),
    ("developer of team-b", Some("dev-b")),
    ("lead of team-a", Some("lead-a")),
    ("lead of team-b", Some("lead-b")),
    ("platform-admin", Some("admin")),
];

struct Api<'a>(&'a TestApp);

impl Api<'_> {
    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        common::kit::call(self.0, method, path, token, body).await
    }

    /// Calls `path` as every caller and compares the statuses with `expected` (read-only
    /// endpoints: the calls change nothing).
    async fn row(&self, method: &str, path: &str, body: Option<Value>, expected: [u16; 6]) {
        let mut got = [0u16; 6];
        for (i, (_, token)) in CALLERS.iter().enumerate() {
            got[i] = self.call(method, path, *token, body.clone()).await.0;
        }
        let table: Vec<String> = CALLERS
            .iter()
            .zip(got.iter().zip(expected))
            .filter(|(_, (g, e))| **g != *e)
            .map(|((who, _), (g, e))| format!("{who}: got {g}, expected {e}"))
            .collect();
        assert!(table.is_empty(), "{method} {path}:\n{}", table.join("\n"));
    }

    async fn order(&self, token: &str, name: &str) -> (u16, Value) {
        self.call(
            "POST",
            "/requests",
            Some(token),
            Some(json!({"offering": "redis-cache", "values": {"name": name, "environment": "dev", "owner": "team-a", "cost_center": "ENG-1234"}})),
        )
        .await
    }

    async fn wait_final(&self, id: &str) -> Value {
        common::kit::wait_final(self.0, id).await
    }
}

#[tokio::test]
async fn roles_by_endpoint() {
    let db = TestDb::new(DbEngine::Sqlite).await;
    let mut s = settings(&db.url);
    s.auth.allow_anonymous = Some(false);
    s.engine.workers = 1;
    s.engine.poll_seconds = 1;
    s.auth.static_tokens = vec![
        static_token("dev-a", "dev-a", &["developer"], &["team-a"]),
        static_token("dev-b", "dev-b", &["developer"], &["team-b"]),
        static_token("lead-a", "lead-a", &["developer", "lead"], &["team-a"]),
        static_token("lead-b", "lead-b", &["developer", "lead"], &["team-b"]),
        static_token("admin", "admin", &["platform-admin"], &[]),
    ];
    // Every order waits for a lead's approval, so deciding can be tried by everyone.
    s.policies.data = json!({"guardrails": {"approval": {"above_monthly": 0}}});
    let app = TestApp::spawn(s).await;
    let api = Api(&app);
    let mut teardown = Teardown {
        db_url: db.url.clone(),
        requests: vec![],
    };

    // Reading the catalog of offerings: any authenticated caller.
    api.row("GET", "/offerings", None, [401, 200, 200, 200, 200, 200])
        .await;

    // Ordering for team-a: its members and platform-admins.
    let mut created = vec![];
    for (who, token) in CALLERS {
        let Some(token) = token else {
            let (status, _) = api.call("POST", "/requests", None, Some(json!({}))).await;
            assert_eq!(status, 401, "{who}");
            continue;
        };
        let (status, r) = api.order(token, &unique("rbac")).await;
        let expected = if ["dev-a", "lead-a", "admin"].contains(&token) {
            201
        } else {
            403
        };
        assert_eq!(status, expected, "{who} orders for team-a: {r}");
        if status == 201 {
            assert_eq!(r["status"], "awaiting_approval", "{r}");
            created.push((token, r["id"].as_str().unwrap().to_owned()));
            teardown.requests.push(r["id"].as_str().unwrap().to_owned());
        }
    }
    let [(_, by_dev), (_, by_lead), (_, by_admin)] = <[_; 3]>::try_from(created).unwrap();

    // Deciding the developer's request: a lead of the team or an admin, never the requester,
    // a developer, or a lead of another team.
    let approve = |id: &str| format!("/requests/{id}/approve");
    for token in [None, Some("dev-a"), Some("dev-b"), Some("lead-b")] {
        let (status, r) = api
            .call("POST", &approve(&by_dev), token, Some(json!({})))
            .await;
        // No token: 401. The requester sees it and is refused; for the others it is not there.
        let expected = match token {
            None => 401,
            Some("dev-a") => 403,
            _ => 404,
        };
        assert_eq!(status, expected, "{token:?}: {r}");
    }
    // Nobody approves their own request, whatever the role.
    for (token, id) in [("lead-a", &by_lead), ("admin", &by_admin)] {
        let (status, r) = api
            .call("POST", &approve(id), Some(token), Some(json!({})))
            .await;
        assert_eq!(status, 403, "{token} approving own request: {r}");
        assert!(
            r["error"]["message"]
                .as_str()
                .unwrap()
                .contains("own request"),
            "{r}"
        );
    }
    let (status, r) = api
        .call("POST", &approve(&by_dev), Some("lead-a"), Some(json!({})))
        .await;
    assert_eq!(status, 200, "{r}");
    let (status, r) = api
        .call("POST", &approve(&by_lead), Some("admin"), Some(json!({})))
        .await;
    assert_eq!(status, 200, "an admin decides any request: {r}");
    let (status, r) = api
        .call(
            "POST",
            &format!("/requests/{by_admin}/reject"),
            Some("lead-a"),
            Some(json!({"reason": "not needed"})),
        )
        .await;
    assert_eq!(status, 200, "{r}");

    let done = api.wait_final(&by_dev).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(api.wait_final(&by_lead).await["status"], "succeeded");
    let resource = done["resourceId"].as_str().unwrap().to_owned();

    // Team-a's things: visible to its members and admins; to everyone else they do not exist.
    let team_a_only = [401, 200, 404, 200, 404, 200];
    for path in [
        format!("/requests/{by_dev}"),
        format!("/requests/{by_dev}/logs"),
        format!("/requests/{by_dev}/approvals"),
        format!("/resources/{resource}"),
        format!("/resources/{resource}/credentials"),
    ] {
        api.row("GET", &path, None, team_a_only).await;
    }
    // Lists are filtered, not refused.
    for (token, sees) in [
        ("dev-a", true),
        ("dev-b", false),
        ("lead-b", false),
        ("admin", true),
    ] {
        let (_, list) = api.call("GET", "/resources", Some(token), None).await;
        let found = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == resource.as_str());
        assert_eq!(found, sees, "{token} listing resources");
    }

    // Budgets are set by platform-admins only; another team's budget is not there.
    api.row(
        "PUT",
        "/teams/team-a/budget",
        Some(json!({"monthlyLimit": 5000})),
        [401, 403, 404, 403, 404, 200],
    )
    .await;

    // Changing and deleting: team members and admins; others get 404 as above.
    for (token, expected) in [(None, 401), (Some("dev-b"), 404), (Some("lead-b"), 404)] {
        let (status, r) = api
            .call("DELETE", &format!("/resources/{resource}"), token, None)
            .await;
        assert_eq!(status, expected, "{token:?}: {r}");
        let (status, r) = api
            .call(
                "PATCH",
                &format!("/resources/{resource}"),
                token,
                Some(json!({"values": {"size": "medium"}})),
            )
            .await;
        assert_eq!(status, expected, "{token:?}: {r}");
    }

    // The audit trail: developers see their teams' events and their own, admins everything.
    let trail = |token: &'static str| {
        let api = &api;
        let target = format!("resource:{resource}");
        async move {
            let (status, events) = api
                .call("GET", &format!("/audit?target={target}"), Some(token), None)
                .await;
            assert_eq!(status, 200);
            events["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    format!(
                        "{} {} {}",
                        e["type"].as_str().unwrap(),
                        e["actor"].as_str().unwrap(),
                        e["outcome"].as_str().unwrap()
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    let admin_view = trail("admin").await;
    assert!(
        admin_view.contains(&"credentials.read user:default/dev-b denied".to_owned()),
        "refused reads are recorded: {admin_view:?}"
    );
    assert!(admin_view.contains(&"credentials.read user:default/dev-a read".to_owned()));
    assert_eq!(
        trail("dev-a").await,
        admin_view,
        "team-a's member sees its trail"
    );
    let outsider = trail("lead-b").await;
    assert!(
        outsider.iter().all(|e| e.contains("user:default/lead-b")),
        "another team's lead sees only their own attempts: {outsider:?}"
    );
    assert!(!outsider.is_empty());
    // No route changes or deletes audit events.
    for method in ["DELETE", "PUT", "PATCH", "POST"] {
        let (status, _) = api
            .call(method, "/audit", Some("admin"), Some(json!({})))
            .await;
        assert_eq!(status, 405, "{method} /audit");
    }

    // Clean up through the API, as a member would.
    let (status, del) = api
        .call(
            "DELETE",
            &format!("/resources/{resource}"),
            Some("dev-a"),
            None,
        )
        .await;
    assert_eq!(status, 202, "{del}");
    assert_eq!(
        api.wait_final(del["id"].as_str().unwrap()).await["status"],
        "succeeded"
    );
    let other = api.wait_final(&by_lead).await["resourceId"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, del) = api
        .call(
            "DELETE",
            &format!("/resources/{other}"),
            Some("admin"),
            None,
        )
        .await;
    assert_eq!(status, 202, "{del}");
    assert_eq!(
        api.wait_final(del["id"].as_str().unwrap()).await["status"],
        "succeeded"
    );
    app.stop().await;
    drop(teardown);
}

#[tokio::test]
async fn the_database_refuses_to_change_or_delete_audit_events() {
    use sea_orm::ConnectionTrait;
    for engine in [DbEngine::Sqlite, DbEngine::Postgres] {
        let (_db, conn) = common::migrated(engine).await;
        paved::audit::record(
            &conn,
            "user:default/x",
            "budget.set",
            "team:group:default/team-a",
            "set",
            None,
        )
        .await;
        for sql in [
            "UPDATE audit_events SET outcome = 'forged'",
            "DELETE FROM audit_events",
        ] {
            let err = conn.execute_unprepared(sql).await.expect_err(sql);
            assert!(err.to_string().contains("append-only"), "{engine:?}: {err}");
        }
        let events = paved::audit::list(
            &conn,
            &paved::audit::AuditFilter {
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].outcome, "set");
        assert_eq!(events[0].team.as_deref(), Some("group:default/team-a"));
        conn.close().await.ok();
    }
}
