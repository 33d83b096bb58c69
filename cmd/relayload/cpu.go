package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTick is the unit of utime and stime in /proc/<pid>/stat (USER_HZ,
// 100 on every Linux architecture Go supports).
const clockTick = 10 * time.Millisecond

// watchedProc is a process whose CPU time the report shows.
type watchedProc struct {
	Name string
	PID  int
}

// procCPU reads the user+system CPU time of pid from /proc/<pid>/stat.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read CPU time of pid %d: %w", pid, err)
	}
	return parseStat(b)
}

// parseStat returns utime+stime of a /proc/<pid>/stat line. The command
// name (field 2) is in parentheses and may hold spaces or parentheses, so
// the fields are counted from the last ')'.
func parseStat(b []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("/proc stat: no command name")
	}
	fields := strings.Fields(string(b[i+1:]))
	// fields[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(fields) < 13 {
		return 0, fmt.Errorf("/proc stat: %d fields after the command name, want ≥ 13", len(fields))
	}
	var total uint64
	for _, s := range fields[11:13] {
		n, err := strconv.ParseUint(s, 10, 63)
		if err != nil {
			return 0, fmt.Errorf("/proc stat: CPU time %q: %w", s, err)
		}
		total += n
	}
	if total > uint64(1<<62)/uint64(clockTick) {
		return 0, errors.New("/proc stat: CPU time out of range")
	}
	return time.Duration(total) * clockTick, nil
}

// cpuSnapshot reads every watched process; a process that cannot be read
// is left out (the report says so).
func cpuSnapshot(procs []watchedProc) map[int]time.Duration {
	m := make(map[int]time.Duration, len(procs))
	for _, p := range procs {
		if d, err := procCPU(p.PID); err == nil {
			m[p.PID] = d
		}
	}
	return m
}

// loadAverage returns the first three fields of /proc/loadavg, or "".
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}
