//go:build !linux

package main

import (
	"os/exec"
	"time"
)

// dieWithParent is a no-op where the kernel has no parent-death signal.
func dieWithParent(*exec.Cmd) {}

// floorClock is the wall clock where a thread's CPU time is not read.
func floorClock() (string, func() time.Duration) { return wallClock() }
