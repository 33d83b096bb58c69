package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// --profile: every spawned process runs with --pprof-listen on a free
// loopback port, and the harness takes one CPU profile of each
// (GET /debug/pprof/profile?seconds=N) over the planned posting time, less
// a short warm-up. The posting time must be known in advance (--duration,
// or --events with --rate): net/http/pprof answers only when its seconds
// are up, and a profile request cut short returns nothing.
const (
	// maxProfileBytes caps one downloaded profile (a CPU profile of an
	// hour of this relay is a few MB).
	maxProfileBytes = 64 << 20
	// maxProfileWarmup caps the warm-up left out of the profiles.
	maxProfileWarmup = 2 * time.Second
	// profileGrace is how long past its seconds a profile may take to
	// arrive.
	profileGrace = 30 * time.Second
)

// gzipMagic starts every pprof file (gzip-compressed protobuf).
var gzipMagic = []byte{0x1f, 0x8b}

// profileTarget is a spawned process --profile takes a CPU profile of.
type profileTarget struct {
	name   string // "broker", "bridge-0", …: the file is DIR/name.pprof
	url    string // base URL of its --pprof-listen, e.g. http://127.0.0.1:41234
	binary string // its executable, for go tool pprof
}

// profileReport says where --profile put the CPU profiles; --json prints
// it as "profile".
type profileReport struct {
	Dir           string        `json:"dir"`
	WarmupSeconds float64       `json:"warmup_seconds"` // after the first post
	Seconds       int           `json:"seconds"`        // length of each profile
	Files         []profileFile `json:"files"`
}

// profileFile is one process's CPU profile, or why it is missing.
type profileFile struct {
	Name   string `json:"name"`
	Path   string `json:"path"`
	Binary string `json:"binary"`
	Bytes  int    `json:"bytes"`
	// Command prints the functions by cumulative CPU.
	Command string `json:"command"`
	Error   string `json:"error,omitempty"`
}

// failed reports whether a profile is missing.
func (p *profileReport) failed() bool {
	if p == nil {
		return false
	}
	for _, f := range p.Files {
		if f.Error != "" {
			return true
		}
	}
	return false
}

// plannedPosting is how long the run is meant to post: --duration, or
// --events at --rate. ok is false when it is unknown (--events flat out).
func plannedPosting(o *options) (d time.Duration, ok bool) {
	if o.Events == 0 {
		return o.Duration, true
	}
	if o.Rate <= 0 {
		return 0, false
	}
	return time.Duration(float64(o.Events) / o.Rate * float64(time.Second)), true
}

// profileWindow leaves a tenth of the posting time, at most
// maxProfileWarmup, out as warm-up and profiles the rest in whole seconds,
// at least 1 (so a profile of a very short run outlasts its posting).
func profileWindow(posting time.Duration) (warmup time.Duration, seconds int) {
	warmup = min(max(posting, 0)/10, maxProfileWarmup)
	return warmup, max(1, int((posting-warmup)/time.Second))
}

// profileRun is the profiles being taken.
type profileRun struct {
	rep    profileReport
	due    time.Time // when the last profile should be done
	done   chan struct{}
	cancel context.CancelFunc
}

// startProfiles takes one CPU profile of each target, seconds long,
// starting warmup from now, and writes it to dir/<name>.pprof. Ending ctx
// abandons the profiles not yet written.
func startProfiles(ctx context.Context, client *http.Client, dir string, targets []profileTarget, warmup time.Duration, seconds int) *profileRun {
	ctx, cancel := context.WithCancel(ctx)
	r := &profileRun{
		rep:    profileReport{Dir: dir, WarmupSeconds: round3(warmup.Seconds()), Seconds: seconds, Files: make([]profileFile, len(targets))},
		due:    time.Now().Add(warmup + time.Duration(seconds)*time.Second),
		done:   make(chan struct{}),
		cancel: cancel,
	}
	var wg sync.WaitGroup
	for i, t := range targets {
		path := filepath.Join(dir, t.name+".pprof")
		r.rep.Files[i] = profileFile{Name: t.name, Path: path, Binary: t.binary,
			Command: "go tool pprof -top -cum " + shellQuote(t.binary) + " " + shellQuote(path)}
		wg.Go(func() {
			f := &r.rep.Files[i]
			n, err := takeProfile(ctx, client, t.url, path, warmup, seconds)
			f.Bytes = n
			if err != nil {
				f.Error = fmt.Sprintf("CPU profile of %s: %v", t.name, err)
			}
		})
	}
	go func() { wg.Wait(); close(r.done) }()
	return r
}

// finished reports whether every profile is written or has failed.
func (r *profileRun) finished() bool { return isDone(r.done) }

// wait waits for every profile and returns the report.
func (r *profileRun) wait() *profileReport {
	<-r.done
	r.cancel()
	return &r.rep
}

// takeProfile waits warmup, downloads a CPU profile of seconds from base
// and writes it to path; it returns the profile's size.
func takeProfile(ctx context.Context, client *http.Client, base, path string, warmup time.Duration, seconds int) (int, error) {
	t := time.NewTimer(warmup)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return 0, fmt.Errorf("abandoned before it started: %w", context.Cause(ctx))
	case <-t.C:
	}
	b, err := fetchProfile(ctx, client, base, seconds)
	if err != nil {
		return 0, err
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return 0, fmt.Errorf("write the profile: %w", err)
	}
	return len(b), nil
}

// fetchProfile downloads GET base/debug/pprof/profile?seconds=N, refusing
// anything but a 200 answer holding a gzip-compressed profile of at most
// maxProfileBytes.
func fetchProfile(ctx context.Context, client *http.Client, base string, seconds int) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(seconds)*time.Second+profileGrace)
	defer cancel()
	u := base + "/debug/pprof/profile?seconds=" + strconv.Itoa(seconds)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("profile request: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
		return nil, fmt.Errorf("GET %s: %s: %q", u, resp.Status, strings.TrimSpace(string(msg)))
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxProfileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: read the profile: %w", u, err)
	}
	switch {
	case len(b) > maxProfileBytes:
		return nil, fmt.Errorf("GET %s: profile larger than %d bytes", u, maxProfileBytes)
	case len(b) < len(gzipMagic) || string(b[:len(gzipMagic)]) != string(gzipMagic):
		return nil, fmt.Errorf("GET %s: the answer (%d bytes) is not a gzip-compressed pprof profile", u, len(b))
	}
	return b, nil
}

// prepareProfileDir makes o.Profile absolute and creates it.
func prepareProfileDir(o *options) error {
	abs, err := filepath.Abs(o.Profile)
	if err != nil {
		return fmt.Errorf("--profile %q: %w", o.Profile, err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return fmt.Errorf("--profile: %w", err)
	}
	o.Profile = abs
	return nil
}

// executablePath is bin as go tool pprof should be given it: absolute, or
// looked up in $PATH as exec.Command does for a bare name.
func executablePath(bin string) string {
	if !strings.ContainsRune(bin, filepath.Separator) {
		if p, err := exec.LookPath(bin); err == nil {
			bin = p
		}
	}
	if abs, err := filepath.Abs(bin); err == nil {
		return abs
	}
	return bin
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-+:,=@%", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
