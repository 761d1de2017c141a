package paved.terraform_test

import rego.v1

import data.paved.terraform

planned(env, operation, address, actions) := {
	"operation": operation,
	"resource": {"environment": env},
	"plan": {"part": "database", "resource_changes": [{
		"address": address, "type": "terraform_data", "name": "x",
		"actions": actions, "attributes": ["triggers_replace"],
	}]},
}

test_a_prod_update_replacing_a_protected_resource_is_denied if {
	some v in terraform.deny with input as planned("prod", "update", "terraform_data.database", ["delete", "create"])
	v.rule == "plan_prod_protected_destroy"
}

test_a_prod_delete_request_may_destroy_it if {
	count(terraform.deny) == 0 with input as planned("prod", "delete", "terraform_data.database", ["delete"])
}

test_an_unprotected_resource_may_be_replaced_in_prod if {
	count(terraform.deny) == 0 with input as planned("prod", "update", "terraform_data.limits", ["delete", "create"])
}

test_outside_prod_a_replace_is_allowed if {
	count(terraform.deny) == 0 with input as planned("dev", "update", "terraform_data.database", ["delete", "create"])
}

test_an_order_without_a_plan_is_not_decided_here if {
	count(terraform.deny) == 0 with input as {"operation": "create", "resource": {"environment": "prod"}}
}
