package paved.budget_test

import rego.v1

import data.paved.budget

req(limit, after) := {"budget": {"team": "group:default/team-a", "monthly_limit": limit, "current_monthly": 0, "after": after}}

test_within_budget_is_allowed if {
	count(budget.require_approval) == 0 with input as req(1000, 1000)
	count(budget.deny) == 0 with input as req(1000, 1000)
}

test_over_budget_needs_approval_by_default if {
	some a in budget.require_approval with input as req(1000, 1000.01)
	a.rule == "team_budget"
	a.role == "platform-admin"
	contains(a.message, "only a platform-admin may approve it")
}

test_a_lead_approval_says_a_lead_gives_it if {
	some a in budget.require_approval with input as req(1000, 1200)
		with data.guardrails.budget.approver_role as "lead"
	a.role == "lead"
	contains(a.message, "needs a lead's approval")
}

test_over_budget_denies_when_configured if {
	some v in budget.deny with input as req(1000, 1200)
		with data.guardrails.budget.on_exceed as "deny"
	v.rule == "team_budget"
}

test_no_budget_means_no_limit if {
	count(budget.require_approval) == 0 with input as req(null, 99999)
}
