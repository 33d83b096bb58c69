package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealrelay/sealrelay/internal/testredis"
)

func TestMain(m *testing.M) { testredis.Main(m) }

// TestParseRedisCPU adds used_cpu_user and used_cpu_sys and refuses an
// answer without them.
func TestParseRedisCPU(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, info string
		want       time.Duration
		wantErr    bool
	}{
		{name: "redis 7", info: "# CPU\r\nused_cpu_sys:9.785740\r\nused_cpu_user:10.017546\r\nused_cpu_sys_children:0.000000\r\nused_cpu_user_main_thread:10.019375\r\n",
			want: 19803286 * time.Microsecond},
		{name: "no sys", info: "# CPU\r\nused_cpu_user:1.5\r\n", wantErr: true},
		{name: "negative", info: "used_cpu_sys:-1\r\nused_cpu_user:1\r\n", wantErr: true},
		{name: "empty", info: "", wantErr: true},
	}
	for _, tc := range tests {
		got, err := parseRedisCPU(tc.info)
		if (err != nil) != tc.wantErr || (err == nil && (got-tc.want).Abs() > time.Microsecond) {
			t.Errorf("%s: parseRedisCPU = %v, %v; want %v (error %v)", tc.name, got, err, tc.want, tc.wantErr)
		}
	}
}

// TestRedisWatch reads a real Redis's CPU time and process id; the time
// grows with the commands the server runs.
func TestRedisWatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	w, err := newRedisWatch(ctx, testredis.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer w.close()
	before, err := w.cpu(ctx)
	if err != nil || w.pid <= 0 {
		t.Fatalf("cpu = %v, %v; pid %d", before, err, w.pid)
	}
	c, prefix := testredis.New(t, "relayload")
	for i := range 500 {
		if err := c.Set(ctx, fmt.Sprintf("%sk%d", prefix, i), strings.Repeat("x", 2048), 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	after, err := w.cpu(ctx)
	if err != nil || after <= before {
		t.Fatalf("CPU %v then %v (%v): want it to grow", before, after, err)
	}
}

// TestSystemUnderTest totals every line but the harness's, and is unknown
// when a part is unreadable.
func TestSystemUnderTest(t *testing.T) {
	t.Parallel()
	const self = 100
	tests := []struct {
		name  string
		lines []cpuLine
		want  *sutLine
	}{
		{name: "spawn", lines: []cpuLine{{Name: "relayload", PID: self, CPUms: 900}, {Name: "broker", PID: 1, CPUms: 400},
			{Name: "bridge-0", PID: 2, CPUms: 300}, {Name: "redis", PID: 3, CPUms: 100.5}},
			want: &sutLine{Parts: []string{"broker", "bridge-0", "redis"}, CPUms: 800.5, USPerEvent: 400.3, USPerDelivered: 200.1}},
		{name: "unreadable part", lines: []cpuLine{{Name: "relayload", PID: self, CPUms: 900}, {Name: "pid 7", PID: 7, CPUms: -1}, {Name: "redis", CPUms: 5}},
			want: &sutLine{Parts: []string{"pid 7", "redis"}, CPUms: -1}},
		{name: "only the harness", lines: []cpuLine{{Name: "relayload", PID: self, CPUms: 900}}},
	}
	for _, tc := range tests {
		got := systemUnderTest(tc.lines, self, 2000, 4000)
		if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", tc.want) {
			t.Errorf("%s: systemUnderTest = %+v, want %+v", tc.name, got, tc.want)
		}
	}
	if r := floorRatio(800, &cryptoFloor{TotalUS: 320}); r != 2.5 {
		t.Errorf("floorRatio = %v, want 2.5", r)
	}
	if r := floorRatio(800, nil); r != 0 {
		t.Errorf("floorRatio without a floor = %v, want 0", r)
	}
}

// TestMeasureCryptoFloor seals and opens real envelopes and reports a
// positive cost for each side on the body's size.
func TestMeasureCryptoFloor(t *testing.T) {
	t.Parallel()
	body := eventBody("T1", "RUN", 1, 0, 1, time.Now())
	f, err := measureCryptoFloor(body, 20)
	if err != nil {
		t.Fatal(err)
	}
	if f.Iterations != 20 || f.BodyBytes != len(body) || f.BrokerUS <= 0 || f.BridgeUS <= 0 ||
		math.Abs(f.TotalUS-(f.BrokerUS+f.BridgeUS)) > 0.11 || f.Clock == "" {
		t.Fatalf("floor %+v", f)
	}
}

// TestRunReportsRedisAndFloor runs the harness against the fake deployment
// with --redis-url and a --pid: the report has a redis line, a system
// under test totalling the --pid and Redis (not the harness), the crypto
// floor and their ratio, in JSON and in the human summary.
func TestRunReportsRedisAndFloor(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	if err := os.WriteFile(secretFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fd := newFakeDeployment(t, "s3cret", "")
	args := []string{"--broker-url", fd.broker.URL, "--signing-secret-file", secretFile, "--team-id", "T0FAKE",
		"--sse-url", fd.bridge.URL + "/events", "--events", "20", "--rate", "200", "--concurrency", "2",
		"--redis-url", testredis.URL(t), "--pid", fmt.Sprint(os.Getpid())}
	// The --pid is this process. Its CPU is read in 10 ms ticks, and a
	// short run on a quiet machine can take none: keep a core busy while
	// the harness runs (at --rate 200, about 100 ms) so that the system
	// under test has a CPU time and therefore a floor ratio.
	busy := func() (stop func()) {
		done := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				if n%1024 == 0 && isDone(done) {
					return
				}
			}
		}()
		return func() { close(done); wg.Wait() }
	}
	var stdout, stderr bytes.Buffer
	stop := busy()
	code := realMain(context.Background(), context.Background(), append(args, "--json"), &stdout, &stderr)
	stop()
	if code != 0 {
		t.Fatalf("exit %d:\n%s\n%s", code, stdout.String(), stderr.String())
	}
	var rep report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	var redisMS, pidMS float64 = -1, -1
	for _, l := range rep.CPU {
		switch l.Name {
		case "redis":
			redisMS = l.CPUms
		case fmt.Sprintf("pid %d", os.Getpid()):
			pidMS = l.CPUms
		}
	}
	s, f := rep.SystemUnderTest, rep.CryptoFloor
	// Redis may well use less than a tick of CPU for 20 events: its row
	// must be there (>= 0), not positive.
	if redisMS < 0 || pidMS <= 0 || !rep.RedisShared || s == nil || f == nil {
		t.Fatalf("report %s", stdout.String())
	}
	if strings.Join(s.Parts, ",") != fmt.Sprintf("pid %d,redis", os.Getpid()) || math.Abs(s.CPUms-(redisMS+pidMS)) > 0.11 {
		t.Fatalf("system under test %+v, want pid + redis = %.1f ms", s, redisMS+pidMS)
	}
	if f.TotalUS <= 0 || f.Iterations != floorIterations || s.FloorRatio != floorRatio(s.USPerDelivered, f) {
		t.Fatalf("floor %+v, ratio %v", f, s.FloorRatio)
	}
	stdout.Reset()
	stop = busy()
	code = realMain(context.Background(), context.Background(), args, &stdout, &stderr)
	stop()
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, stderr.String())
	}
	for _, want := range []string{"    redis [", "    system under test ", "every client of that Redis", "crypto floor: ", "µs/event (broker ", "system under test = "} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, stdout.String())
		}
	}
}
