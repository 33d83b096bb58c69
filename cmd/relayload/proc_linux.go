//go:build linux

package main

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes the kernel kill cmd when relayload dies, so a crash
// leaves no broker or bridge behind, and puts it in its own process group,
// so that a Ctrl-C at the terminal reaches relayload only: it stops posting
// and still drains what the broker and the bridges hold.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
}
