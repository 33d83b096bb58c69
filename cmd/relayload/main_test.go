package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/slack-go/slack"
)

// fakeDeployment is a broker that verifies Slack's signature and a bridge
// that streams what the broker accepted on SSE, with a fault injected.
type fakeDeployment struct {
	broker, bridge *httptest.Server
	mu             sync.Mutex
	queued         [][]byte
	posts          int
	held           []byte
	wake           chan struct{}
}

func newFakeDeployment(t *testing.T, secret, fault string) *fakeDeployment {
	fd := &fakeDeployment{wake: make(chan struct{}, 1)}
	fd.broker = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		sv, err := slack.NewSecretsVerifier(r.Header, secret)
		if err == nil {
			_, _ = sv.Write(body)
			err = sv.Ensure()
		}
		if err != nil || r.URL.Path != "/slack/events" {
			http.Error(w, `{"ok":false,"error":"invalid signature"}`, http.StatusUnauthorized)
			return
		}
		fd.mu.Lock()
		fd.posts++
		n := fd.posts
		switch {
		case fault == "refuse" && n == 3:
			fd.mu.Unlock()
			http.Error(w, `{"ok":false,"error":"store unavailable"}`, http.StatusServiceUnavailable)
			return
		case fault == "lose" && n == 4:
		case fault == "duplicate" && n == 2:
			fd.queued = append(fd.queued, body, body)
		case fault == "reorder" && n == 4:
			fd.held = body // queued after the next one
		case fault == "reorder" && n == 5:
			fd.queued = append(fd.queued, body, fd.held)
		default:
			fd.queued = append(fd.queued, body)
		}
		fd.mu.Unlock()
		select {
		case fd.wake <- struct{}{}:
		default:
		}
		w.WriteHeader(http.StatusOK)
	}))
	fd.bridge = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.(http.Flusher).Flush()
		sent := 0
		for {
			fd.mu.Lock()
			batch := fd.queued[sent:]
			sent = len(fd.queued)
			fd.mu.Unlock()
			for i, b := range batch {
				data, _ := json.Marshal(map[string]any{"message_id": fmt.Sprintf("m-%d", sent-len(batch)+i),
					"type": "event_callback", "payload": json.RawMessage(b)})
				fmt.Fprintf(w, "id: %d\ndata: %s\n\n", sent-len(batch)+i+1, data)
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-fd.wake:
			}
		}
	}))
	t.Cleanup(fd.bridge.Close)
	t.Cleanup(fd.broker.Close)
	return fd
}

// TestRunAgainstAnExistingDeployment runs the whole harness against a fake
// broker and bridge: a clean relay exits 0 with every event counted once;
// a lost, duplicated, reordered or refused event makes it exit 1 and say
// which.
func TestRunAgainstAnExistingDeployment(t *testing.T) {
	t.Parallel()
	tests := []struct {
		fault string
		code  int
		want  string
	}{
		{fault: "", code: 0, want: "OK: no loss, no duplicates, in order"},
		{fault: "lose", code: 1, want: "FAIL: 1 lost"},
		{fault: "duplicate", code: 1, want: "FAIL: 1 duplicated"},
		{fault: "reorder", code: 1, want: "FAIL: 1 out of order"},
		{fault: "refuse", code: 1, want: "FAIL: 1 refused by the broker"},
	}
	for _, tc := range tests {
		t.Run("fault="+tc.fault, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			secretFile := filepath.Join(dir, "secret")
			if err := os.WriteFile(secretFile, []byte("s3cret\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			fd := newFakeDeployment(t, "s3cret", tc.fault)
			drain := "30s"
			if tc.fault == "lose" {
				drain = "300ms" // the lost event never comes: end the drain soon
			}
			var stdout, stderr bytes.Buffer
			// One poster and one channel, so that the fault's place is fixed.
			code := realMain(context.Background(), context.Background(), []string{
				"--broker-url", fd.broker.URL, "--signing-secret-file", secretFile, "--team-id", "T0FAKE",
				"--sse-url", fd.bridge.URL + "/events", "--events", "8", "--concurrency", "1", "--drain-timeout", drain,
			}, &stdout, &stderr)
			if code != tc.code || !strings.Contains(stdout.String(), tc.want) {
				t.Fatalf("exit %d, want %d; output:\n%s\nstderr:\n%s", code, tc.code, stdout.String(), stderr.String())
			}
			if strings.Contains(stdout.String()+stderr.String(), "s3cret") {
				t.Fatal("the signing secret appears in the output")
			}
		})
	}
}

// TestRealMainUsage: bad flags exit 2 naming the problem; --help exits 0;
// an unreadable secret file exits 1 naming the flag.
func TestRealMainUsage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		args []string
		code int
		want string
	}{
		{args: []string{"--help"}, code: 0, want: "Usage:"},
		{args: []string{"--rate", "x"}, code: 2, want: "events per second"},
		{args: []string{"--broker-url", "http://127.0.0.1:1", "--signing-secret-file", "/nonexistent/secret", "--team-id", "T",
			"--sse-url", "http://127.0.0.1:1/events"}, code: 1, want: "--signing-secret-file"},
	}
	for _, tc := range tests {
		var stdout, stderr bytes.Buffer
		code := realMain(context.Background(), context.Background(), tc.args, &stdout, &stderr)
		if code != tc.code || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("realMain(%q) = %d, want %d; stderr %q", tc.args, code, tc.code, stderr.String())
		}
	}
}
