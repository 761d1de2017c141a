# Cost guardrails: a ceiling per environment, a warning for pricey non-production resources,
# and approval above a monthly cost.
package paved.cost

import rego.v1

monthly := input.estimate.monthly

deny contains {"rule": "cost_limit", "message": msg} if {
	limit := data.guardrails.cost_limit_monthly[input.resource.environment]
	monthly > limit
	msg := sprintf("estimated %v USD/month exceeds the %v limit of %v USD/month", [monthly, input.resource.environment, limit])
}

warn contains {"rule": "nonprod_cost", "message": msg} if {
	input.resource.environment != "prod"
	monthly > data.guardrails.nonprod_warn_monthly
	msg := sprintf("%v USD/month is a lot outside production (warning above %v); see the recommendations", [monthly, data.guardrails.nonprod_warn_monthly])
}

require_approval contains {"rule": "cost_approval", "message": msg, "role": data.guardrails.approval.role} if {
	monthly > data.guardrails.approval.above_monthly
	msg := sprintf("estimated %v USD/month is above %v USD/month and needs a %v's approval", [monthly, data.guardrails.approval.above_monthly, data.guardrails.approval.role])
}
