# Terraform plans: what will really change, decided before it is applied. `input.plan` is set
# only while paved plans a terraform part (see README: "Planned changes"); rules named plan_*
# decide it, and only their denials count then.
package paved.terraform

import rego.v1

# A create or update in production that would destroy a resource the platform team protects
# (its data would go with it) is refused before anything is applied; a delete request is how
# such a resource goes.
deny contains {"rule": "plan_prod_protected_destroy", "message": msg} if {
	input.resource.environment == "prod"
	input.operation != "delete"
	some change in input.plan.resource_changes
	"delete" in change.actions
	change.address in data.guardrails.terraform.protected_addresses
	msg := sprintf(
		"this %v would destroy %v in production (planned: %v); order a new resource instead",
		[input.operation, change.address, concat(" then ", change.actions)],
	)
}
