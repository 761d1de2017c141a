package paved.database_test

import rego.v1

import data.paved.database

req(env, days, multi_az) := {
	"resource": {"environment": env},
	"parts": [{"id": "database", "driver": "postgres", "spec": {"database": "orders_prod", "backup_retention_days": days, "multi_az": multi_az}}],
}

test_prod_backup_retention_denies_below_7_days if {
	some v in database.deny with input as req("prod", 6, true)
	v.rule == "prod_backup_retention"
}

test_prod_backup_retention_allows_7_days if {
	count(database.deny) == 0 with input as req("prod", 7, true)
}

test_prod_backup_retention_ignores_dev if {
	count(database.deny) == 0 with input as req("dev", 1, false)
}

test_prod_multi_az_warns_without_standby if {
	some v in database.warn with input as req("prod", 7, false)
	v.rule == "prod_multi_az"
}

test_prod_multi_az_quiet_with_standby_or_outside_prod if {
	count(database.warn) == 0 with input as req("prod", 7, true)
	count(database.warn) == 0 with input as req("staging", 7, false)
}

test_only_postgres_parts_count if {
	count(database.deny) == 0 with input as {"resource": {"environment": "prod"}, "parts": [{"id": "cache", "driver": "redis", "spec": {}}]}
}
