package paved.ttl_test

import rego.v1

import data.paved.ttl

preview(hours) := {"offering": {"ttl": {"default_hours": 24, "max_hours": 72}}, "resource": {"environment": "preview", "ttl_hours": hours}}

test_ttl_within_offering_maximum_is_allowed if {
	count(ttl.deny) == 0 with input as preview(72)
}

test_ttl_required_for_ephemeral if {
	some v in ttl.deny with input as {"offering": {"ttl": null}, "resource": {"environment": "preview"}}
	v.rule == "ttl_required"
}

test_ttl_capped_by_offering_maximum if {
	some v in ttl.deny with input as preview(73)
	v.rule == "ttl_cap"
}

test_ttl_capped_by_global_maximum if {
	some v in ttl.deny with input as {"offering": {"ttl": null}, "resource": {"environment": "preview", "ttl_hours": 169}}
	v.rule == "ttl_cap"
}

test_permanent_environments_need_no_ttl if {
	count(ttl.deny) == 0 with input as {"offering": {"ttl": null}, "resource": {"environment": "prod"}}
}
