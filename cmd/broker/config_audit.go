package main

import (
	"errors"
	"strings"
)

// onOff parses an on|off setting (also true/false, yes/no, 1/0); ok is
// false for anything else.
func onOff(text string) (on, ok bool) {
	switch strings.ToLower(text) {
	case "on", "true", "yes", "1":
		return true, true
	case "off", "false", "no", "0":
		return false, true
	}
	return false, false
}

// checkOnOff accepts an on|off setting.
func checkOnOff(text string) error {
	if _, ok := onOff(text); !ok {
		return errors.New("is not on or off")
	}
	return nil
}

// audit resolves --audit and --audit-required.
func (r *resolver) audit(c *config) {
	c.Audit, _ = onOff(r.Text("audit"))
	c.AuditRequired, _ = onOff(r.Text("audit-required"))
	if c.AuditRequired && !c.Audit {
		r.Problem("%s is on but %s is off: a required audit log must be on", r.Setting("audit-required").Names(), r.Setting("audit").Names())
	}
}
