# A team's monthly budget: current spend plus this request may not exceed it without a
# decision (approval or deny, as data.guardrails.budget.on_exceed says).
package paved.budget

import rego.v1

over_budget if {
	is_number(input.budget.monthly_limit)
	input.budget.after > input.budget.monthly_limit
}

message := sprintf("team %v would spend %v USD/month, over its budget of %v USD/month", [input.budget.team, input.budget.after, input.budget.monthly_limit])

deny contains {"rule": "team_budget", "message": message} if {
	over_budget
	data.guardrails.budget.on_exceed == "deny"
}

require_approval contains {"rule": "team_budget", "message": message, "role": data.guardrails.budget.approver_role} if {
	over_budget
	data.guardrails.budget.on_exceed != "deny"
}
