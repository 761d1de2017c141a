package paved.database_test

import rego.v1

import data.paved.database

# A part with backups and a standby of its own (a Terraform-backed database).
req(env, days, multi_az) := {
	"resource": {"environment": env},
	"parts": [{"id": "database", "driver": "terraform", "spec": {"backup_retention_days": days, "multi_az": multi_az}}],
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

# The bundled postgres part has no backups or standby of its own: nothing to deny or warn.
test_a_shared_cluster_database_is_not_policed_for_what_it_does_not_have if {
	shared := {"resource": {"environment": "prod"}, "parts": [{"id": "database", "driver": "postgres", "spec": {"database": "orders_prod", "connection_limit": 20}}]}
	count(database.deny) == 0 with input as shared
	count(database.warn) == 0 with input as shared
}

test_only_parts_with_backups_count if {
	count(database.deny) == 0 with input as {"resource": {"environment": "prod"}, "parts": [{"id": "cache", "driver": "redis", "spec": {}}]}
}
