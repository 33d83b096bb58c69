package main

import "strings"

// onOff parses an on|off setting (also true/false, yes/no, 1/0).
func (r *resolver) onOff(name string) bool {
	s := settingByName(name)
	v := r.get(s)
	switch strings.ToLower(v.text) {
	case "on", "true", "yes", "1":
		return true
	case "off", "false", "no", "0":
		return false
	}
	r.problem("%s is not on or off", s.describe(v))
	return false
}

// audit resolves --audit and --audit-required.
func (r *resolver) audit(c *config) {
	c.Audit, c.AuditRequired = r.onOff("audit"), r.onOff("audit-required")
	if c.AuditRequired && !c.Audit {
		r.problem("%s is on but %s is off: a required audit log must be on", settingByName("audit-required").names(), settingByName("audit").names())
	}
}
