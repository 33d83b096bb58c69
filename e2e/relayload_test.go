package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sealrelay/sealrelay/internal/testredis"
)

// relayloadReport is the part of `relayload --json` the smoke checks.
type relayloadReport struct {
	OK          bool   `json:"ok"`
	Store       string `json:"store"`
	Consume     string `json:"consume"`
	Consumers   int    `json:"consumers"`
	Drained     bool   `json:"drained"`
	Posted      int    `json:"posted"`
	Accepted    int    `json:"accepted"`
	Rejected    int    `json:"rejected"`
	Delivered   int    `json:"delivered"`
	Lost        int    `json:"lost"`
	Duplicated  int    `json:"duplicated"`
	OutOfOrder  int    `json:"out_of_order"`
	PerConsumer []struct {
		Delivered int `json:"delivered"`
	} `json:"per_consumer"`
	CPU []struct {
		Name  string  `json:"name"`
		PID   int     `json:"pid"`
		CPUms float64 `json:"cpu_ms"`
	} `json:"cpu"`
	Profile *struct {
		Files []struct {
			Name  string `json:"name"`
			Path  string `json:"path"`
			Error string `json:"error"`
		} `json:"files"`
	} `json:"profile"`
}

// runRelayload runs the harness binary with args and --json and returns its
// report and exit code.
func runRelayload(t *testing.T, dir string, args ...string) (relayloadReport, int) {
	t.Helper()
	cmd := exec.Command(relayloadBin, append(args, "--json")...)
	cmd.Env = append(minimalEnv(dir), "TMPDIR="+dir) // its work directory goes under dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	dieWithParent(cmd)
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("relayload: %v", err)
	}
	var rep relayloadReport
	if jerr := json.Unmarshal(stdout.Bytes(), &rep); jerr != nil {
		t.Fatalf("relayload exited %d without a JSON report (%v):\nstdout:\n%s\nstderr:\n%s", code, jerr, stdout.String(), stderr.String())
	}
	if code != 0 {
		t.Logf("relayload stderr:\n%s\nreport:\n%s", stderr.String(), stdout.String())
	}
	return rep, code
}

// checkClean asserts a run that lost, duplicated and reordered nothing and
// delivered every accepted event to each of consumers.
func checkClean(t *testing.T, rep relayloadReport, code, consumers int) {
	t.Helper()
	if code != 0 || !rep.OK {
		t.Fatalf("relayload exit %d, ok=%v", code, rep.OK)
	}
	if rep.Accepted == 0 || rep.Accepted != rep.Posted || rep.Rejected != 0 {
		t.Fatalf("posted %d, accepted %d, refused %d: want every post accepted", rep.Posted, rep.Accepted, rep.Rejected)
	}
	if rep.Consumers != consumers || rep.Delivered != rep.Accepted*consumers || !rep.Drained {
		t.Fatalf("%d consumers got %d deliveries of %d events (drained %v), want each event at each of %d",
			rep.Consumers, rep.Delivered, rep.Accepted, rep.Drained, consumers)
	}
	if rep.Lost != 0 || rep.Duplicated != 0 || rep.OutOfOrder != 0 {
		t.Fatalf("lost %d, duplicated %d, out of order %d", rep.Lost, rep.Duplicated, rep.OutOfOrder)
	}
}

// TestRelayloadSpawnSmoke is CI's smoke of the load harness: a couple of
// seconds at a modest rate in spawn mode against the real broker and
// bridge binaries, once consuming SSE on the embedded store and once
// consuming forwarded webhooks on Redis, two agents each; the first also
// takes CPU profiles (--profile) of the broker and the bridges. It checks
// correctness only (no loss, no duplicate, in order; exit code 0; profiles
// written), never timing.
func TestRelayloadSpawnSmoke(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, consume  string
		redis, profile bool
	}{
		{name: "sse embedded", consume: "sse", profile: true},
		{name: "forward redis", consume: "forward", redis: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			args := []string{"--spawn", "--broker-bin", brokerBin, "--bridge-bin", bridgeBin,
				"--agents", "2", "--consume", tc.consume, "--duration", "2s", "--rate", "40/s", "--concurrency", "2", "--channels", "3"}
			store := "embedded"
			if tc.redis {
				args = append(args, "--redis-url", testredis.URL(t))
				store = "redis"
			}
			profDir := filepath.Join(dir, "profiles")
			if tc.profile {
				args = append(args, "--profile", profDir)
			}
			rep, code := runRelayload(t, dir, args...)
			checkClean(t, rep, code, 2)
			if tc.profile {
				checkProfiles(t, rep, profDir, "broker", "bridge-0", "bridge-1")
			}
			if rep.Store != store || rep.Consume != tc.consume {
				t.Fatalf("report says store %q consume %q, want %q %q", rep.Store, rep.Consume, store, tc.consume)
			}
			names := map[string]bool{}
			for _, c := range rep.CPU {
				names[c.Name] = c.CPUms >= 0
			}
			for _, n := range []string{"relayload", "broker", "bridge-0", "bridge-1"} {
				if !names[n] {
					t.Errorf("no readable CPU line for %s in %+v", n, rep.CPU)
				}
			}
			if left, _ := filepath.Glob(filepath.Join(dir, "relayload-*")); len(left) > 0 {
				t.Errorf("relayload left %v behind", left)
			}
		})
	}
}

// checkProfiles asserts a --profile report naming a non-empty
// gzip-compressed (pprof) file DIR/<name>.pprof for each of names.
func checkProfiles(t *testing.T, rep relayloadReport, dir string, names ...string) {
	t.Helper()
	if rep.Profile == nil || len(rep.Profile.Files) != len(names) {
		t.Fatalf("profile report %+v, want files for %v", rep.Profile, names)
	}
	for i, f := range rep.Profile.Files {
		want := filepath.Join(dir, names[i]+".pprof")
		if f.Name != names[i] || f.Path != want || f.Error != "" {
			t.Errorf("profile file %+v, want %s at %s", f, names[i], want)
			continue
		}
		b, err := os.ReadFile(want)
		if err != nil || len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b {
			t.Errorf("%s: %d bytes (%v), want a gzip-compressed pprof profile", want, len(b), err)
		}
	}
}

// TestRelayloadExistingDeployment loads a deployment the harness did not
// start (a broker replica on Redis and bridges registered by this test):
// first through the bridge's SSE stream, then through a second bridge that
// forwards to the harness's --forward-listen, whose signatures it checks.
// The processes named by --pid are reported.
func TestRelayloadExistingDeployment(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.startReplica("a")
	org, token := e.install(a)
	e.register(a.url, org, token)
	e.startBridge()
	secretFile := filepath.Join(e.dir, "slack-signing-secret")
	if err := os.WriteFile(secretFile, []byte(signingSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"--broker-url", a.url, "--signing-secret-file", secretFile, "--team-id", org,
		"--events", "150", "--rate", "0", "--concurrency", "3",
		"--pid", strconv.Itoa(a.proc.cmd.Process.Pid), "--pid", strconv.Itoa(e.bridge.cmd.Process.Pid)}

	rep, code := runRelayload(t, e.dir, append(base, "--sse-url", e.bridgeAPI+"/events")...)
	checkClean(t, rep, code, 1)
	if len(rep.CPU) != 3 {
		t.Fatalf("CPU lines %+v, want relayload and the two --pid processes", rep.CPU)
	}
	for _, c := range rep.CPU {
		if c.CPUms < 0 {
			t.Errorf("CPU of %s (pid %d) unreadable", c.Name, c.PID)
		}
	}

	// A second bridge forwards to the harness.
	org2, token2 := e.install(a)
	two := e.newAgent("two")
	two.register(a.url, org2, token2)
	fwdPort := freePort(t)
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	p := startProc(t, "bridge two", filepath.Join(e.dir, "bridge-two.log"), minimalEnv(e.dir), bridgeBin, "run",
		"--config", two.bridgeCfg, "--state-dir", filepath.Join(two.bridgeDir, "state"), "--listen", listen,
		"--stream=false", "--forward-url", fmt.Sprintf("http://127.0.0.1:%d/slack/events", fwdPort),
		"--forward-signing-secret-file", filepath.Join(e.dir, "forward-secret"), "--log-format", "json")
	if !waitHTTP("http://"+listen+"/health", p, 15*time.Second) {
		t.Fatalf("second bridge did not become ready:\n%s", p.tail(40))
	}
	rep, code = runRelayload(t, e.dir, append(base, "--forward-listen", fmt.Sprintf("127.0.0.1:%d", fwdPort),
		"--forward-signing-secret-file", filepath.Join(e.dir, "forward-secret"))...)
	checkClean(t, rep, code, 1)
	if rep.Consume != "forward" {
		t.Fatalf("consume %q, want forward", rep.Consume)
	}
	if strings.Contains(p.log(), forwardSecret) {
		t.Fatal("the bridge logged the forward secret")
	}
}

// lockedBuffer is a bytes.Buffer safe for a process writing while the test
// reads.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestRelayloadInterrupt: Ctrl-C during a long run — SIGINT to the whole
// foreground process group, as a terminal sends it — stops the posting; the
// spawned broker and bridge, in process groups of their own, keep running
// until everything posted is drained, and the report says so with exit
// code 0.
func TestRelayloadInterrupt(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cmd := exec.Command(relayloadBin, "--spawn", "--broker-bin", brokerBin, "--bridge-bin", bridgeBin,
		"--duration", "30m", "--rate", "20/s", "--concurrency", "1", "--json")
	cmd.Env = append(minimalEnv(dir), "TMPDIR="+dir) // its work directory goes under dir
	var stdout bytes.Buffer
	stderr := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = &stdout, stderr
	dieWithParent(cmd)
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true // the "terminal's" process group, not the test's
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	waitFor(t, "relayload to start posting", 60*time.Second, func() bool {
		return strings.Contains(stderr.String(), "relayload: posting")
	})
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("relayload exited with %v after SIGINT:\n%s\n%s", err, stderr.String(), stdout.String())
		}
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("relayload still running 60 s after SIGINT:\n%s", stderr.String())
	}
	var rep relayloadReport
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("no JSON report after SIGINT (%v):\n%s", err, stdout.String())
	}
	checkClean(t, rep, 0, 1)
}
