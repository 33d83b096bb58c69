package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sealrelay/sealrelay/internal/slackfake"
)

// Broker fault scenarios of issue 14 (broker and queue half), against the
// real binaries.

// startBrokerOn starts broker replica name on the given port (0: a free
// one) with the store flags given (--redis-url … or --data-dir …). A
// restarted replica keeps its port, so the bridge's broker URL stays valid.
func (e *env) startBrokerOn(name string, port int, store ...string) *replica {
	t := e.t
	t.Helper()
	for attempt := 0; attempt < 3; attempt++ {
		p0 := port
		if p0 == 0 {
			p0 = freePort(t)
		}
		url := fmt.Sprintf("http://127.0.0.1:%d", p0)
		public := e.publicURL
		if public == "" {
			public = url
		}
		args := append([]string{"serve",
			"--listen", fmt.Sprintf("127.0.0.1:%d", p0),
			"--public-url", public,
			"--slack-client-id", clientID,
			"--slack-client-secret", clientSecret,
			"--slack-signing-secret", signingSecret,
			"--slack-api-url", slackfake.APIURL(e.slack.URL),
			"--slack-authorize-url", slackfake.AuthorizeURL(e.slack.URL),
			"--keys-dir", e.keysDir,
			"--send-rate", "0",
			"--log-format", "json",
			"--shutdown-timeout", "5s",
		}, store...)
		p := startProc(t, "broker "+name, filepath.Join(e.dir, "broker-"+name+".log"), minimalEnv(e.dir), brokerBin, args...)
		if waitHTTP(url+"/readyz", p, 15*time.Second) {
			r := &replica{name: name, url: url, proc: p}
			e.replicas[name] = r
			if e.publicURL == "" {
				e.publicURL = url
			}
			return r
		}
		p.stop(t)
		if port != 0 || !strings.Contains(p.log(), "address already in use") {
			t.Fatalf("broker %s did not become ready:\n%s", name, p.tail(40))
		}
	}
	t.Fatalf("broker %s: no free port after 3 attempts", name)
	return nil
}

// copyDir copies the regular files of src into dst (created).
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o700); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, en := range entries {
		if !en.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, en.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, en.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// postBatch posts n fresh events named prefix-0 … and returns their ids.
func (e *env) postBatch(t *testing.T, r *replica, prefix string, n int) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("Ev%s%04d", prefix, i)
		if err := e.postEvent(r, ids[i], i); err != nil {
			t.Fatal(err)
		}
	}
	return ids
}

// TestEmbeddedRestoreDeliversNewEvents: the documented backup procedure
// (stop, copy the data directory, start) followed by a restore of that older
// copy must not make new events reuse message ids the bridge has already
// delivered (and would drop as duplicates). Embedded broker + bridge.
func TestEmbeddedRestoreDeliversNewEvents(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	data := filepath.Join(e.dir, "data")
	backup := filepath.Join(e.dir, "data-backup")
	port := freePort(t)
	r := e.startBrokerOn("embedded", port, "--data-dir", data)
	org, tok := e.install(r)
	e.register(r.url, org, tok)
	e.startBridge()

	r.proc.stop(t)
	copyDir(t, data, backup) // the backup: installation and agent, no events yet
	r = e.startBrokerOn("embedded", port, "--data-dir", data)
	const n = 30
	before := e.postBatch(t, r, "before", n)
	waitFor(t, "the events before the restore to be delivered", time.Minute, func() bool { return e.recv.received(before) == n })

	r.proc.stop(t)
	if err := os.RemoveAll(data); err != nil {
		t.Fatal(err)
	}
	copyDir(t, backup, data) // restore the older copy
	r = e.startBrokerOn("embedded", port, "--data-dir", data)
	after := e.postBatch(t, r, "after", n)
	waitFor(t, "every event after the restore to be delivered", time.Minute, func() bool { return e.recv.received(after) == n })
	_, count, _, _ := e.recv.snapshot()
	for _, id := range append(before, after...) {
		if count[id] != 1 {
			t.Errorf("event %s delivered %d times, want once", id, count[id])
		}
	}
}

// privateRedis is a redis-server of one test, on a free port.
type privateRedis struct {
	url string
	p   *proc
}

func startPrivateRedis(t *testing.T, dir string) *privateRedis {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatal("redis-server is required (apt-get install redis-server)")
	}
	for attempt := 0; attempt < 3; attempt++ {
		port := freePort(t)
		p := startProc(t, "private redis-server", filepath.Join(dir, "redis-private.log"), minimalEnv(dir), bin,
			"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
			"--save", "", "--appendonly", "no", "--daemonize", "no")
		url := fmt.Sprintf("redis://127.0.0.1:%d/0", port)
		if rdb := pingRedis(url, p, 10*time.Second); rdb != nil {
			_ = rdb.Close()
			return &privateRedis{url: url, p: p}
		}
		p.stop(t)
	}
	t.Fatal("could not start a private redis-server")
	return nil
}

// freeze stops the server with SIGSTOP; cleanup continues it first so that
// it can be stopped.
func (r *privateRedis) freeze(t *testing.T) {
	t.Helper()
	if err := r.p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.p.cmd.Process.Signal(syscall.SIGCONT) })
}

func (r *privateRedis) thaw(t *testing.T) {
	t.Helper()
	if err := r.p.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
}

// TestFrozenRedisAnswers503: with Redis frozen (SIGSTOP), every Slack
// webhook still gets its answer, a 503 so that Slack retries, inside the
// 2.5 s the broker promises (Slack gives up at 3 s), /readyz answers 503
// within a second, and the broker logs and counts the timeouts. After
// SIGCONT the retried events are delivered.
func TestFrozenRedisAnswers503(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rs := startPrivateRedis(t, e.dir)
	r := e.startBrokerOn("frozen", 0, "--redis-url", rs.url, "--redis-prefix", e.redis.prefix)
	org, tok := e.install(r)
	e.register(r.url, org, tok)
	e.startBridge()
	warm := e.postBatch(t, r, "warm", 3)
	waitFor(t, "warm-up events", time.Minute, func() bool { return e.recv.received(warm) == 3 })

	rs.freeze(t)
	webhook := &http.Client{Timeout: 2500 * time.Millisecond}
	probe := &http.Client{Timeout: time.Second}
	var frozen []string
	for i := range 5 {
		id := fmt.Sprintf("EvFrozen%04d", i)
		frozen = append(frozen, id)
		body := e.eventBody(id, "C0E2E", fmt.Sprintf("1700000001.%06d", i), "frozen "+id)
		e.evMu.Lock()
		e.events[id] = body
		e.evMu.Unlock()
		req, err := http.NewRequest(http.MethodPost, r.url+"/slack/events", strings.NewReader(string(body)))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		slackfake.SignRequest(req, signingSecret, time.Now(), body)
		resp, err := webhook.Do(req)
		if err != nil {
			t.Fatalf("webhook %d with Redis frozen: no answer within 2.5 s: %v", i, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("webhook %d with Redis frozen: %s, want 503", i, resp.Status)
		}
		resp, err = probe.Get(r.url + "/readyz")
		if err != nil {
			t.Fatalf("/readyz with Redis frozen: no answer within 1 s: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("/readyz with Redis frozen: %s, want 503", resp.Status)
		}
	}
	if n := countLines(r.proc, "store did not answer in time"); n == 0 {
		t.Errorf("no timeout log line:\n%s", r.proc.tail(20))
	}
	rs.thaw(t)
	// Slack retries (here every half second); a claim the frozen store
	// could not release lapses after 30 s.
	pending := append([]string(nil), frozen...)
	for deadline := time.Now().Add(time.Minute); len(pending) > 0; {
		if time.Now().After(deadline) {
			t.Fatalf("retries of %v still refused a minute after SIGCONT", pending)
		}
		left := pending[:0]
		for _, id := range pending {
			if err := e.repostEvent(r, id, 1); err != nil {
				left = append(left, id)
			}
		}
		pending = left
		if len(pending) > 0 {
			time.Sleep(500 * time.Millisecond) // Slack's retry interval, shortened
		}
	}
	waitFor(t, "the retried events to be delivered", time.Minute, func() bool { return e.recv.received(frozen) == len(frozen) })
	_, count, _, _ := e.recv.snapshot()
	for _, id := range frozen {
		if count[id] != 1 {
			t.Errorf("event %s delivered %d times, want once", id, count[id])
		}
	}
}
