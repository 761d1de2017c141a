package paved.cost_test

import rego.v1

import data.paved.cost

req(env, monthly) := {"resource": {"environment": env}, "estimate": {"monthly": monthly}}

test_cost_limit_denies_above_the_environment_limit if {
	some v in cost.deny with input as req("dev", 100.01)
	v.rule == "cost_limit"
}

test_cost_limit_allows_at_the_limit if {
	count(cost.deny) == 0 with input as req("dev", 100)
	count(cost.deny) == 0 with input as req("staging", 500)
	count(cost.deny) == 0 with input as req("prod", 10000)
}

test_cost_limit_per_environment if {
	count(cost.deny) == 1 with input as req("staging", 501)
	count(cost.deny) == 1 with input as req("prod", 10001)
}

test_nonprod_cost_warns_above_200 if {
	some v in cost.warn with input as req("staging", 250)
	v.rule == "nonprod_cost"
}

test_nonprod_cost_quiet_below_200_and_in_prod if {
	count(cost.warn) == 0 with input as req("staging", 200)
	count(cost.warn) == 0 with input as req("prod", 5000)
}

test_cost_approval_above_threshold if {
	some a in cost.require_approval with input as req("prod", 1500)
	a.rule == "cost_approval"
	a.role == "lead"
}

test_cost_approval_not_needed_below_threshold if {
	count(cost.require_approval) == 0 with input as req("prod", 1000)
}
