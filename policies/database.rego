# Production databases with backups and standbys of their own (offerings whose parts declare
# `backup_retention_days` or `multi_az`, such as Terraform-backed ones): enough backups (deny),
# a standby in another zone (warning). A part without those attributes (the bundled
# postgres-database, a database on a shared cluster) has nothing here to police.
package paved.database

import rego.v1

deny contains {"rule": "prod_backup_retention", "message": msg} if {
	input.resource.environment == "prod"
	some part in input.parts
	is_number(part.spec.backup_retention_days)
	part.spec.backup_retention_days < data.guardrails.prod_min_backup_days
	msg := sprintf("production databases keep backups at least %v days (asked: %v)", [data.guardrails.prod_min_backup_days, part.spec.backup_retention_days])
}

warn contains {"rule": "prod_multi_az", "message": msg} if {
	input.resource.environment == "prod"
	some part in input.parts
	part.spec.multi_az == false
	msg := sprintf("production database %v has no standby in another availability zone (multi-AZ)", [part.id])
}
