# Production databases: enough backups (deny), a standby in another zone (warning).
package paved.database

import rego.v1

postgres_parts contains part if {
	some part in input.parts
	part.driver == "postgres"
}

deny contains {"rule": "prod_backup_retention", "message": msg} if {
	input.resource.environment == "prod"
	some part in postgres_parts
	part.spec.backup_retention_days < data.guardrails.prod_min_backup_days
	msg := sprintf("production databases keep backups at least %v days (asked: %v)", [data.guardrails.prod_min_backup_days, part.spec.backup_retention_days])
}

warn contains {"rule": "prod_multi_az", "message": msg} if {
	input.resource.environment == "prod"
	some part in postgres_parts
	not part.spec.multi_az
	msg := sprintf("production database %v has no standby in another availability zone (multi-AZ)", [part.spec.database])
}
