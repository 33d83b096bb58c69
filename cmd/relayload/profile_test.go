package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealrelay/sealrelay/internal/pprofserve"
)

// TestProfileWindow: the posting time is --duration or --events at
// --rate (unknown flat out); the profile leaves a tenth of it, at most
// 2 s, as warm-up and lasts the rest in whole seconds, at least 1.
func TestProfileWindow(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		o           options
		known       bool
		warmup      time.Duration
		seconds     int
		wantPosting time.Duration
	}{
		{name: "duration", o: options{Duration: 10 * time.Second}, known: true, wantPosting: 10 * time.Second, warmup: time.Second, seconds: 9},
		{name: "short", o: options{Duration: 2 * time.Second}, known: true, wantPosting: 2 * time.Second, warmup: 200 * time.Millisecond, seconds: 1},
		{name: "shorter than a second", o: options{Duration: 300 * time.Millisecond}, known: true, wantPosting: 300 * time.Millisecond, warmup: 30 * time.Millisecond, seconds: 1},
		{name: "an hour", o: options{Duration: time.Hour}, known: true, wantPosting: time.Hour, warmup: 2 * time.Second, seconds: 3598},
		{name: "count at a rate", o: options{Events: 500, Rate: 100, Duration: time.Hour}, known: true, wantPosting: 5 * time.Second, warmup: 500 * time.Millisecond, seconds: 4},
		{name: "count flat out", o: options{Events: 500, Duration: time.Hour}, known: false},
	}
	for _, tc := range tests {
		posting, known := plannedPosting(&tc.o)
		if known != tc.known || (known && posting != tc.wantPosting) {
			t.Errorf("%s: plannedPosting = %v, %v; want %v, %v", tc.name, posting, known, tc.wantPosting, tc.known)
			continue
		}
		if !known {
			continue
		}
		warmup, seconds := profileWindow(posting)
		if warmup != tc.warmup || seconds != tc.seconds {
			t.Errorf("%s: profileWindow(%v) = %v, %d s; want %v, %d s", tc.name, posting, warmup, seconds, tc.warmup, tc.seconds)
		}
	}
}

// TestStartProfiles takes a real CPU profile (of the test process, through
// the handler the broker and the bridge serve) and refuses an error
// answer, an answer that is not a profile and an unreachable listener,
// each named in its file's error.
func TestStartProfiles(t *testing.T) {
	t.Parallel()
	live := httptest.NewServer(pprofserve.Handler())
	t.Cleanup(live.Close)
	busy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "Could not enable CPU profiling: cpu profiling already in use", http.StatusInternalServerError)
	}))
	t.Cleanup(busy.Close)
	notProfile := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("<html>hello</html>"))
	}))
	t.Cleanup(notProfile.Close)
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close()

	dir := t.TempDir()
	targets := []profileTarget{
		{name: "broker", url: live.URL, binary: "/opt/sealrelay/broker"},
		{name: "bridge-0", url: busy.URL, binary: "/opt/sealrelay/bridge"},
		{name: "bridge-1", url: notProfile.URL, binary: "/opt/sealrelay/bridge"},
		{name: "bridge-2", url: gone.URL, binary: "/opt/sealrelay/bridge"},
	}
	rep := startProfiles(context.Background(), &http.Client{}, dir, targets, 0, 1).wait()
	if rep.Dir != dir || rep.Seconds != 1 || len(rep.Files) != len(targets) {
		t.Fatalf("report %+v", rep)
	}
	wantErr := map[string]string{"broker": "", "bridge-0": "500 Internal Server Error", "bridge-1": "not a gzip-compressed pprof profile", "bridge-2": "GET http://"}
	for i, f := range rep.Files {
		if f.Name != targets[i].name || f.Path != filepath.Join(dir, f.Name+".pprof") || f.Binary != targets[i].binary {
			t.Errorf("file %d = %+v", i, f)
		}
		if want := "go tool pprof -top -cum " + f.Binary + " " + f.Path; f.Command != want {
			t.Errorf("%s: command %q, want %q", f.Name, f.Command, want)
		}
		if we := wantErr[f.Name]; we == "" {
			if f.Error != "" {
				t.Errorf("%s: %s", f.Name, f.Error)
			}
		} else if !strings.Contains(f.Error, we) || !strings.Contains(f.Error, f.Name) {
			t.Errorf("%s: error %q, want it to name %s and say %q", f.Name, f.Error, f.Name, we)
		}
		b, err := os.ReadFile(f.Path)
		switch {
		case f.Error != "" && err == nil:
			t.Errorf("%s: a file was written despite %s", f.Name, f.Error)
		case f.Error == "" && (err != nil || len(b) != f.Bytes || !bytes.HasPrefix(b, []byte{0x1f, 0x8b})):
			t.Errorf("%s: %d bytes (report %d), %v: want a gzip-compressed profile", f.Name, len(b), f.Bytes, err)
		}
	}
	if !rep.failed() {
		t.Error("failed() = false with three profiles missing")
	}
}

// TestProfilesAbandoned: ending the context before the warm-up is over
// writes no profile and says why.
func TestProfilesAbandoned(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("profile requested at %s despite the cancel", r.URL)
	}))
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithCancel(context.Background())
	dir := t.TempDir()
	run := startProfiles(ctx, &http.Client{}, dir, []profileTarget{{name: "broker", url: srv.URL, binary: "broker"}}, time.Hour, 1)
	cancel()
	rep := run.wait()
	if f := rep.Files[0]; !strings.Contains(f.Error, "abandoned") || f.Bytes != 0 {
		t.Fatalf("file %+v, want it abandoned", f)
	}
	if left, _ := os.ReadDir(dir); len(left) > 0 {
		t.Fatalf("%d files written", len(left))
	}
}

// TestProfileReport: the summary names every profile's command, or why it
// is missing, and a missing one turns the verdict; --json has them under
// "profile".
func TestProfileReport(t *testing.T) {
	t.Parallel()
	r := report{OK: true, Posted: 1, Profile: &profileReport{Dir: "/tmp/p", WarmupSeconds: 1, Seconds: 9, Files: []profileFile{
		{Name: "broker", Path: "/tmp/p/broker.pprof", Binary: "/b/broker", Bytes: 100, Command: "go tool pprof -top -cum /b/broker /tmp/p/broker.pprof"},
		{Name: "bridge-0", Path: "/tmp/p/bridge-0.pprof", Binary: "/b/bridge", Command: "go tool pprof -top -cum /b/bridge /tmp/p/bridge-0.pprof",
			Error: "CPU profile of bridge-0: connection refused"},
	}}}
	var out bytes.Buffer
	writeHuman(&out, &r)
	for _, want := range []string{
		"CPU profiles (9 s each, from 1.0 s into the posting) in /tmp/p",
		"    go tool pprof -top -cum /b/broker /tmp/p/broker.pprof\n",
		"bridge-0: NOT written (CPU profile of bridge-0: connection refused)",
		"FAIL: a CPU profile is missing",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if err := writeJSON(&out, &r); err != nil {
		t.Fatal(err)
	}
	var back struct {
		Profile profileReport `json:"profile"`
	}
	if err := json.Unmarshal(out.Bytes(), &back); err != nil || len(back.Profile.Files) != 2 || back.Profile.Files[0].Command != r.Profile.Files[0].Command {
		t.Fatalf("JSON profile %+v (%v):\n%s", back.Profile, err, out.String())
	}
	r.Profile = nil
	out.Reset()
	writeHuman(&out, &r)
	if strings.Contains(out.String(), "CPU profiles") || strings.Contains(out.String(), "FAIL") {
		t.Errorf("summary without --profile:\n%s", out.String())
	}
}

// TestShellQuote: paths a shell takes as they are stay bare; anything
// else is single-quoted.
func TestShellQuote(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"/tmp/relayload-1/broker", "/tmp/relayload-1/broker"},
		{"/home/me/my profiles/broker.pprof", "'/home/me/my profiles/broker.pprof'"},
		{"it's", `'it'\''s'`},
		{"$HOME", "'$HOME'"},
		{"", "''"},
	}
	for _, tc := range tests {
		if got := shellQuote(tc.in); got != tc.want {
			t.Errorf("shellQuote(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}
