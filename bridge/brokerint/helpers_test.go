package brokerint_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/sealrelay/sealrelay/bridge"
)

const (
	testTimeout = 20 * time.Second
	localSecret = "8f742231b10e8888abcd99yyyzzz85a5"
)

func testLogger(testing.TB) *slog.Logger {
	if os.Getenv("BRIDGE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

type collector struct{ ch chan *bridge.Event }

func newCollector() *collector { return &collector{ch: make(chan *bridge.Event, 1000)} }

func (c *collector) deliver(_ context.Context, ev *bridge.Event) error {
	c.ch <- ev
	return nil
}

func (c *collector) next(t testing.TB) *bridge.Event {
	t.Helper()
	select {
	case ev := <-c.ch:
		return ev
	case <-time.After(testTimeout):
		t.Fatal("no event delivered")
		return nil
	}
}

func baseConfig(id bridge.Identity, dir string) bridge.Config {
	return bridge.Config{Identity: id, StateDir: dir, WaitSeconds: 5, BackoffMin: time.Millisecond, BackoffMax: 5 * time.Millisecond}
}

type running struct {
	b      *bridge.Bridge
	cancel context.CancelFunc
	done   chan error
}

func start(t testing.TB, cfg bridge.Config) *running {
	t.Helper()
	b, err := bridge.New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{b: b, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- b.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *running) stop(t testing.TB) {
	r.cancel()
	select {
	case _, ok := <-r.done:
		if ok {
			close(r.done)
		}
	case <-time.After(testTimeout):
		t.Fatal("Run did not return after cancel")
	}
	r.b.Close()
}

func newBridge(t testing.TB, cfg bridge.Config) (*bridge.Bridge, error) {
	b, err := bridge.New(cfg, testLogger(t))
	if err == nil {
		t.Cleanup(func() { b.Close() })
	}
	return b, err
}

func apiListener(t testing.TB) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func serveAPI(t testing.TB, ln net.Listener, b *bridge.Bridge) string {
	srv := httptest.NewUnstartedServer(b.Handler())
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL
}

func post(t testing.TB, base, path, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// slackApp is a local Slack app that verifies requests with slack-go.
type slackApp struct {
	got chan appRequest
}

type appRequest struct {
	path string
	body []byte
}

func newSlackApp(t testing.TB) (*slackApp, *httptest.Server) {
	a := &slackApp{got: make(chan appRequest, 100)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		sv, err := slack.NewSecretsVerifier(r.Header, localSecret)
		if err == nil {
			_, _ = sv.Write(body)
			err = sv.Ensure()
		}
		if err != nil {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		a.got <- appRequest{path: r.URL.Path, body: body}
	}))
	t.Cleanup(srv.Close)
	return a, srv
}

func (a *slackApp) next(t testing.TB) appRequest {
	t.Helper()
	select {
	case r := <-a.got:
		return r
	case <-time.After(testTimeout):
		t.Fatal("local app received nothing")
		return appRequest{}
	}
}

// firstSSEData reads GET /events until the first data line.
func firstSSEData(t testing.TB, base string) <-chan string {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan string, 1)
	go func() {
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				ch <- d
				return
			}
		}
	}()
	return ch
}
