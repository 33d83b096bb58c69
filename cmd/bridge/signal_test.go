package main

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sealrelay/sealrelay/bridge/bridgetest"
)

// TestMain lets the test binary act as the bridge command when re-executed
// with BRIDGE_TEST_MAIN=1, so that signal handling is tested on a real
// process without building a second binary.
func TestMain(m *testing.M) {
	if os.Getenv("BRIDGE_TEST_MAIN") == "1" {
		os.Exit(realMain(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

func TestSIGTERMShutsDownGracefully(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			fb := bridgetest.New(t, org)
			cfgPath := filepath.Join(t.TempDir(), "bridge.env")
			if code, _, errs := register(t, fb, cfgPath); code != 0 {
				t.Fatal(errs)
			}
			cmd := exec.Command(os.Args[0], "run", "--config", cfgPath, "--state-dir", t.TempDir(), "--listen", "127.0.0.1:0", "--wait-seconds", "20")
			cmd.Env = append(os.Environ(), "BRIDGE_TEST_MAIN=1")
			stderr, err := cmd.StderrPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			sc := bufio.NewScanner(stderr)
			var logs strings.Builder
			started := false
			for sc.Scan() {
				logs.WriteString(sc.Text() + "\n")
				if strings.Contains(sc.Text(), "bridge polling") {
					started = true
					break
				}
			}
			if !started {
				_ = cmd.Process.Kill()
				t.Fatalf("bridge did not start:\n%s", logs.String())
			}
			// The bridge is now in (or entering) a 20 s long poll.
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() {
				for sc.Scan() {
					logs.WriteString(sc.Text() + "\n")
				}
				done <- cmd.Wait()
			}()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("exit: %v\n%s", err, logs.String())
				}
			case <-time.After(15 * time.Second):
				_ = cmd.Process.Kill()
				t.Fatalf("bridge did not stop on %v:\n%s", sig, logs.String())
			}
			if !strings.Contains(logs.String(), "bridge stopped") {
				t.Fatalf("no clean stop logged:\n%s", logs.String())
			}
		})
	}
}
