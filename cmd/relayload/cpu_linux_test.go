//go:build linux

package main

import (
	"os"
	"testing"
	"time"
)

// TestProcCPU reads this process's own /proc entry, and reports a process
// that does not exist as unreadable.
func TestProcCPU(t *testing.T) {
	t.Parallel()
	if _, err := procCPU(os.Getpid()); err != nil {
		t.Fatal(err)
	}
	snap := cpuSnapshot([]watchedProc{{Name: "self", PID: os.Getpid()}, {Name: "gone", PID: 1 << 30}})
	if _, ok := snap[os.Getpid()]; !ok || len(snap) != 1 {
		t.Fatalf("snapshot %v, want only this process", snap)
	}
	lines := cpuReport([]watchedProc{{Name: "self", PID: 1}, {Name: "gone", PID: 2}},
		map[int]time.Duration{1: time.Second}, map[int]time.Duration{1: 3 * time.Second}, 1000, 2000)
	if lines[0].CPUms != 2000 || lines[0].USPerEvent != 2000 || lines[0].USPerDelivered != 1000 || lines[1].CPUms != -1 {
		t.Fatalf("cpuReport = %+v", lines)
	}
}
