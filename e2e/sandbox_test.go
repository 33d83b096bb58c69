package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSandboxBinary runs `sandbox` as a user would: it becomes ready, turns
// a typed line into an event delivered on /events, relays a /send to the
// simulated Slack, refuses a second instance on the same port with advice,
// and stops cleanly on Ctrl-C (SIGINT), removing its data directory.
func TestSandboxBinary(t *testing.T) {
	t.Parallel()
	sb := startSandboxBinary(t)
	listen, port, output := sb.listen, sb.port, sb.output
	cmd, stdin, done := sb.cmd, sb.stdin, sb.done
	if !strings.Contains(output(), "curl -N "+listen+"/events") {
		t.Fatalf("the sandbox does not print the /events curl line for %s", listen)
	}

	// A typed line becomes a DM event that reaches /events.
	if _, err := stdin.Write([]byte("typed into the sandbox\n")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the typed line delivered on /events", 30*time.Second, func() bool {
		return regexp.MustCompile(`message\.im in D\w+ from \w+: "typed into the sandbox"\n\s+received by broker \+[\d.]+ ms → sealed and queued \+[\d.]+ ms → pulled \+[\d.]+ ms → verified and opened \+[\d.]+ ms → delivered on /events \+[\d.]+ ms`).MatchString(output())
	})

	// The printed /send line works.
	resp, err := http.Post("http://"+listen+"/send", "application/json", strings.NewReader(`{"channel":"C123","text":"hi"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/send: %s", resp.Status)
	}
	waitFor(t, "the simulated Slack to show the chat.postMessage", 10*time.Second, func() bool {
		return strings.Contains(output(), `slack ◂ chat.postMessage channel="C123" text="hi" → ok`)
	})

	// A second sandbox on the same port says what to do.
	out, err := exec.Command(sandboxBin, "--listen", listen).CombinedOutput()
	want := fmt.Sprintf("%s is in use — pass --listen 127.0.0.1:%d", listen, port+1)
	if err == nil || !strings.Contains(string(out), want) {
		t.Fatalf("second sandbox on %s: err=%v output %q, want %q", listen, err, out, want)
	}

	// Ctrl-C stops everything cleanly.
	m := regexp.MustCompile(`data in (\S+)`).FindStringSubmatch(output())
	if m == nil {
		t.Fatal("the sandbox does not say where its data is")
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		sb.exited = true
		if err != nil {
			t.Fatalf("sandbox exited with %v after SIGINT", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("sandbox still running 20 s after SIGINT")
	}
	if !strings.Contains(output(), "stopped cleanly.") {
		t.Error("the sandbox did not report a clean stop")
	}
	if _, err := os.Stat(m[1]); !os.IsNotExist(err) {
		t.Errorf("data directory %s left behind (stat: %v)", m[1], err)
	}
	if _, err := http.Get("http://" + listen + "/health"); err == nil {
		t.Error("the local API still answers after the sandbox stopped")
	}
}

// sandboxProc is a running sandbox binary.
type sandboxProc struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	done   chan error
	exited bool
	listen string
	port   int
	output func() string
}

// startSandboxBinary starts the sandbox on a free port and waits until it is
// ready, retrying on another port when the chosen one was taken meanwhile.
func startSandboxBinary(t *testing.T) *sandboxProc {
	dir := t.TempDir()
	for attempt := 0; attempt < 3; attempt++ {
		sb := &sandboxProc{port: freePort(t), done: make(chan error, 1)}
		sb.listen = fmt.Sprintf("127.0.0.1:%d", sb.port)
		logPath := filepath.Join(dir, fmt.Sprintf("sandbox-%d.out", attempt))
		f, err := os.Create(logPath)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		sb.output = func() string { b, _ := os.ReadFile(logPath); return string(b) }
		sb.cmd = exec.Command(sandboxBin, "--listen", sb.listen, "--every", "200ms")
		sb.cmd.Env = append(minimalEnv(dir), "TMPDIR="+dir) // its data dir lands in the test's
		sb.cmd.Stdout, sb.cmd.Stderr = f, f
		dieWithParent(sb.cmd)
		if sb.stdin, err = sb.cmd.StdinPipe(); err != nil {
			t.Fatal(err)
		}
		if err := sb.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { sb.done <- sb.cmd.Wait() }()
		t.Cleanup(func() {
			if !sb.exited {
				_ = sb.cmd.Process.Signal(syscall.SIGKILL)
				<-sb.done
				sb.exited = true
			}
			if t.Failed() {
				t.Logf("sandbox output:\n%s", sb.output())
			}
		})
		deadline := time.Now().Add(30 * time.Second)
		for !strings.Contains(sb.output(), "Ready. Try these") {
			select {
			case err := <-sb.done:
				sb.exited = true
				if strings.Contains(sb.output(), "is in use") {
					break
				}
				t.Fatalf("sandbox exited before it was ready: %v", err)
			default:
			}
			if sb.exited {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the sandbox was not ready within 30 s")
			}
			time.Sleep(10 * time.Millisecond)
		}
		if !sb.exited {
			return sb
		}
	}
	t.Fatal("no free port for the sandbox after 3 attempts")
	return nil
}
