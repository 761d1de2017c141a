//! The production set-up of a PostgreSQL target: paved's admin role is no superuser, only
//! `LOGIN CREATEDB CREATEROLE`. Tests that provision through one prove that this is enough.

use sea_orm::sqlx::{self, Connection, postgres::PgConnection};

/// A `LOGIN CREATEDB CREATEROLE` role of one test on the shared PostgreSQL. Dropped with
/// whatever it provisioned (roles it is a member of and their databases) when the test ends,
/// also when it fails.
pub struct LimitedAdmin {
    pub role: String,
    pub url: String,
}

impl LimitedAdmin {
    pub async fn create() -> Self {
        let role = format!(
            "paved_admin_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let mut su = PgConnection::connect(&super::postgres_admin_url())
            .await
            .expect("the tests' PostgreSQL");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "CREATE ROLE \"{role}\" LOGIN CREATEDB CREATEROLE NOSUPERUSER"
        )))
        .execute(&mut su)
        .await
        .unwrap();
        su.close().await.ok();
        Self {
            url: url_as(&role, None, "postgres"),
            role,
        }
    }

    /// The admin's URL for every environment paved knows.
    pub fn targets(&self) -> std::collections::BTreeMap<String, String> {
        ["dev", "staging", "prod"]
            .iter()
            .map(|e| (e.to_string(), self.url.clone()))
            .collect()
    }

    /// `settings` provisioning PostgreSQL through this admin.
    pub fn apply_to(&self, s: &mut paved::config::Settings) {
        s.drivers.postgres.targets = self.targets();
    }
}

/// A URL of the tests' PostgreSQL as `user` (with `password`) on `database`.
pub fn url_as(user: &str, password: Option<&str>, database: &str) -> String {
    let base = super::postgres_admin_url();
    let (scheme, rest) = base.split_once("://").unwrap();
    let hostpart = rest.split_once('@').map_or(rest, |(_, h)| h);
    let hostpart = hostpart.split_once('/').map_or(hostpart, |(h, _)| h);
    match password {
        Some(pw) => format!("{scheme}://{user}:{pw}@{hostpart}/{database}"),
        None => format!("{scheme}://{user}@{hostpart}/{database}"),
    }
}

impl Drop for LimitedAdmin {
    fn drop(&mut self) {
        let role = self.role.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let Ok(mut su) = PgConnection::connect(&super::postgres_admin_url()).await else {
                    return;
                };
                // Paved-tagged roles this admin was made a member of: what it provisioned.
                let left: Vec<(String, Option<String>)> = sqlx::query_as(
                    "SELECT r.rolname::text, d.datname::text FROM pg_auth_members m \
                     JOIN pg_roles r ON r.oid = m.roleid JOIN pg_roles a ON a.oid = m.member \
                     LEFT JOIN pg_database d ON d.datdba = r.oid \
                     WHERE a.rolname = $1 AND shobj_description(r.oid, 'pg_authid') LIKE 'paved:%'",
                )
                .bind(&role)
                .fetch_all(&mut su)
                .await
                .unwrap_or_default();
                for (r, d) in &left {
                    if let Some(d) = d {
                        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS \"{d}\" WITH (FORCE)"
                        )))
                        .execute(&mut su)
                        .await;
                    }
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                        "DROP OWNED BY \"{r}\"; DROP ROLE IF EXISTS \"{r}\""
                    )))
                    .execute(&mut su)
                    .await;
                }
                let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DROP OWNED BY \"{role}\"; DROP ROLE IF EXISTS \"{role}\""
                )))
                .execute(&mut su)
                .await;
                su.close().await.ok();
            });
        })
        .join();
    }
}
