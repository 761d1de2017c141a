package paved.ownership_test

import rego.v1

import data.paved.ownership

good := {"parameters": {"name": "orders"}, "resource": {"owner": "group:default/team-a", "environment": "prod", "labels": {"cost-center": "ENG-1234"}}}

test_owner_and_cost_center_present_is_allowed if {
	count(ownership.deny) == 0 with input as good
	count(ownership.warn) == 0 with input as good
}

test_owner_required if {
	some v in ownership.deny with input as {"parameters": {"name": "orders"}, "resource": {"environment": "prod", "labels": {"cost-center": "X"}}}
	v.rule == "owner_required"
}

test_owner_required_rejects_empty if {
	some v in ownership.deny with input as {"resource": {"owner": "", "environment": "dev", "labels": {"cost-center": "X"}}}
	v.rule == "owner_required"
}

test_cost_center_required if {
	some v in ownership.deny with input as {"resource": {"owner": "group:default/a", "environment": "dev", "labels": {}}}
	v.rule == "cost_center_required"
}

test_name_repeating_environment_warns if {
	some v in ownership.warn with input as object.union(good, {"parameters": {"name": "orders-prod"}})
	v.rule == "name_repeats_environment"
}
