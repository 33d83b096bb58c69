// Package e2e is sealrelay's multi-process end-to-end suite. It builds the
// real broker and bridge binaries, starts a private redis-server (or uses
// $REDIS_URL under a unique key prefix when it is set or redis-server is
// not installed), two broker replicas sharing it, the fake Slack Web API and
// OAuth consent in process, and a bridge that forwards to an in-test
// receiver verifying Slack signatures with slack-go. It runs as ordinary Go
// tests under `go test ./...`.
package e2e

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sealrelay/sealrelay/internal/testredis"
)

// Paths of the binaries built by TestMain.
var brokerBin, bridgeBin, sandboxBin string

// relayloadBin is the load harness, built by TestMain too.
var relayloadBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sealrelay-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		brokerBin = filepath.Join(dir, "broker")
		bridgeBin = filepath.Join(dir, "bridge")
		sandboxBin = filepath.Join(dir, "sandbox")
		relayloadBin = filepath.Join(dir, "relayload")
		flag.Parse()
		start := time.Now()
		// Build both at once; the go command shares its build cache.
		var wg sync.WaitGroup
		var failed atomic.Bool
		for bin, pkg := range map[string]string{
			brokerBin:  "github.com/sealrelay/sealrelay/cmd/broker",
			bridgeBin:  "github.com/sealrelay/sealrelay/cmd/bridge",
			sandboxBin: "github.com/sealrelay/sealrelay/cmd/sandbox",

			relayloadBin: "github.com/sealrelay/sealrelay/cmd/relayload",
		} {
			wg.Go(func() {
				// No DWARF (-w): a faster link; stack traces still work.
				args := []string{"build", "-ldflags=-w", "-o", bin}
				if raceEnabled {
					args = append(args, "-race")
				}
				cmd := exec.Command(goTool(), append(args, pkg)...)
				if out, err := cmd.CombinedOutput(); err != nil {
					fmt.Fprintf(os.Stderr, "e2e: go build %s: %v\n%s", pkg, err, out)
					failed.Store(true)
				}
			})
		}
		wg.Wait()
		if failed.Load() {
			return 1
		}
		if testing.Verbose() {
			fmt.Fprintf(os.Stderr, "e2e: built broker, bridge and sandbox (race=%v) in %s\n", raceEnabled, time.Since(start).Round(time.Millisecond))
		}
		return testredis.Run(m) // fails when a test left keys in $REDIS_URL
	}()
	os.Exit(code)
}

// goTool finds the go command: $GOROOT/bin/go when set, else go on $PATH.
func goTool() string {
	if root := os.Getenv("GOROOT"); root != "" {
		if p := filepath.Join(root, "bin", "go"); fileExists(p) {
			return p
		}
	}
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "/usr/local/go/bin/go"
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
