# Ephemeral environments must expire, and not too late.
package paved.ttl

import rego.v1

ephemeral if input.resource.environment in data.guardrails.ttl.ephemeral_environments

ephemeral if is_object(input.offering.ttl)

max_hours := min([data.guardrails.ttl.max_hours, input.offering.ttl.max_hours]) if is_object(input.offering.ttl)

max_hours := data.guardrails.ttl.max_hours if not is_object(input.offering.ttl)

deny contains {"rule": "ttl_required", "message": "ephemeral environments need a time to live (ttl_hours)"} if {
	ephemeral
	not input.resource.ttl_hours
}

deny contains {"rule": "ttl_cap", "message": msg} if {
	ephemeral
	input.resource.ttl_hours > max_hours
	msg := sprintf("a time to live of %v hours exceeds the maximum of %v hours", [input.resource.ttl_hours, max_hours])
}
