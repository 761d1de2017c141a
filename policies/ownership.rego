# Every resource has an owner team and a cost center, and a name that does not repeat its
# environment (the environment is appended already).
package paved.ownership

import rego.v1

deny contains {"rule": "owner_required", "message": "an owner team is required"} if {
	not input.resource.owner
}

deny contains {"rule": "owner_required", "message": "an owner team is required"} if {
	input.resource.owner == ""
}

deny contains {"rule": "cost_center_required", "message": "a cost center is required (label cost-center)"} if {
	not input.resource.labels["cost-center"]
}

warn contains {"rule": "name_repeats_environment", "message": msg} if {
	env := input.resource.environment
	contains(lower(input.parameters.name), env)
	msg := sprintf("the name %v repeats the environment %v, which paved appends anyway", [input.parameters.name, env])
}
