//go:build !linux

package e2e

import "os/exec"

// dieWithParent is a no-op where the kernel has no parent-death signal; the
// tests' cleanup stops every child they start.
func dieWithParent(*exec.Cmd) {}
