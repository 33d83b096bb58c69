//go:build linux

package main

import (
	"os/exec"
	"syscall"
	"time"
)

// dieWithParent makes the kernel kill cmd when relayload dies, so a crash
// leaves no broker or bridge behind, and puts it in its own process group,
// so that a Ctrl-C at the terminal reaches relayload only: it stops posting
// and still drains what the broker and the bridges hold.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
}

// floorClock returns a clock of the calling OS thread's CPU time (user +
// system, getrusage RUSAGE_THREAD); the caller locks its goroutine to the
// thread. It falls back to the wall clock when the thread's time cannot be
// read.
func floorClock() (string, func() time.Duration) {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_THREAD, &ru) != nil {
		return wallClock()
	}
	return "thread CPU", func() time.Duration {
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_THREAD, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
}
