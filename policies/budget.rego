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

approver := data.guardrails.budget.approver_role

# Who may approve is part of what the requester and the approvers read.
approval_message := sprintf("%v; only a platform-admin may approve it (a team lead cannot)", [message]) if {
	approver == "platform-admin"
}

approval_message := sprintf("%v; it needs a %v's approval", [message, approver]) if {
	approver != "platform-admin"
}

require_approval contains {"rule": "team_budget", "message": approval_message, "role": approver} if {
	over_budget
	data.guardrails.budget.on_exceed != "deny"
}
