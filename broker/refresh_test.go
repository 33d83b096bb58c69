package broker

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/internal/slackfake"
	"github.com/sealrelay/sealrelay/protocol"
	"github.com/sealrelay/sealrelay/state"
	"github.com/sealrelay/sealrelay/store/boltstore"
)

// refreshHook runs functions around the fake Slack's refresh-token
// exchanges (oauth.v2.access with grant_type=refresh_token).
type refreshHook struct {
	mu     sync.Mutex
	before func(r *http.Request) // before the fake answers
	after  func()                // after it answered, before the broker reads the answer
}

func (k *refreshHook) set(before func(*http.Request), after func()) {
	k.mu.Lock()
	k.before, k.after = before, after
	k.mu.Unlock()
}

// withRefreshHook installs k around the harness's fake Slack.
func withRefreshHook(k *refreshHook) harnessOpt {
	return func(h *harness) {
		h.slackMW = func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/api/oauth.v2.access" {
					next.ServeHTTP(w, r)
					return
				}
				body, _ := io.ReadAll(r.Body)
				r.Body = io.NopCloser(bytes.NewReader(body))
				form, _ := url.ParseQuery(string(body))
				k.mu.Lock()
				before, after := k.before, k.after
				k.mu.Unlock()
				if form.Get("grant_type") != "refresh_token" {
					before, after = nil, nil
				}
				if before != nil {
					before(r)
				}
				rec := httptest.NewRecorder()
				next.ServeHTTP(rec, r)
				if after != nil {
					after()
				}
				for k, v := range rec.Header() {
					w.Header()[k] = v
				}
				w.WriteHeader(rec.Code)
				_, _ = w.Write(rec.Body.Bytes())
			})
		}
	}
}

// refreshCalls counts the successful refresh-token exchanges Slack saw.
func refreshCalls(h *harness) int {
	n := 0
	for _, c := range h.fake.CallsTo("oauth.v2.access") {
		if c.Params.Get("grant_type") == "refresh_token" && c.Error == "" {
			n++
		}
	}
	return n
}

// busyState reports when a refresh finds the lease held by another replica.
type busyState struct {
	state.Store
	busy func()
}

func (s *busyState) UpdateInstallation(ctx context.Context, org string, fn func(*state.Installation) error) error {
	err := s.Store.UpdateInstallation(ctx, org, fn)
	if errors.Is(err, errRefreshBusy) {
		s.busy()
	}
	return err
}

// dueInstall installs a rotating bot token of 3 h and registers an agent,
// then advances the clock by 90 min: the token expires within the default
// refresh margin (2 h), so the next send refreshes it, and the refreshed
// one is not due.
func dueInstall(h *harness, team string) (org string, a *agentClient) {
	org, tok := h.install(slackfake.Install{TeamID: team, Rotating: true, ExpiresIn: 3 * 3600})
	a = h.register(org, tok)
	h.clock.Advance(90 * time.Minute)
	return org, a
}

// TestRefreshDoesNotUndoRevoke (issue 11): an app_uninstalled that lands
// between the refresh's Slack call and its write-back stays revoked; the
// send answers token_revoked and posts nothing.
func TestRefreshDoesNotUndoRevoke(t *testing.T) {
	t.Parallel()
	hook := &refreshHook{}
	h := newHarness(t, withRefreshHook(hook))
	org, a := dueInstall(h, "T0RRV001")
	hook.set(nil, func() {
		h.postEvent(h.url, mustJSON(map[string]any{"type": "event_callback", "team_id": org, "event_id": "EvRRV001",
			"event": map[string]any{"type": "app_uninstalled"}}))
	})
	status, _, body := a.sendRaw(a.sendBody(protocol.ActionPostMessage, protocol.Routing{Channel: "C1"}, map[string]any{"text": "x"}, a.now()))
	if n := refreshCalls(h); n != 1 {
		t.Fatalf("%d refresh calls, want 1", n)
	}
	expectError(t, status, body, http.StatusBadGateway, "token_revoked")
	inst, err := h.st.GetInstallation(context.Background(), org)
	if err != nil {
		t.Fatal(err)
	}
	if !inst.Revoked || inst.BotToken != "" || inst.BotRefreshToken != "" || inst.RefreshLease != "" {
		t.Fatalf("refresh undid the revoke: revoked=%v token=%q refresh=%q lease=%q",
			inst.Revoked, inst.BotToken, inst.BotRefreshToken, inst.RefreshLease)
	}
	if posts := h.fake.CallsTo("chat.postMessage"); len(posts) != 0 {
		t.Fatalf("%d posts after revoke", len(posts))
	}
}

// TestRefreshSingleFlightReplicas (issue 12 item 7): two replicas on one
// Redis prefix that both find the token due at once make exactly one
// refresh call, and both post with the new token. The refresh call is held
// until the other replica has found the lease taken.
func TestRefreshSingleFlightReplicas(t *testing.T) {
	t.Parallel()
	hook := &refreshHook{}
	busy := make(chan struct{})
	var once sync.Once
	h := newHarness(t, withRefreshHook(hook), func(h *harness) {
		h.wrapSt = func(st state.Store) state.Store {
			return &busyState{Store: st, busy: func() { once.Do(func() { close(busy) }) }}
		}
	})
	_, _, _, _, urlB := h.newReplica()
	org, a := dueInstall(h, "T0RSF001")
	b := *a
	b.base = urlB
	hook.set(func(r *http.Request) {
		select {
		case <-busy:
		case <-r.Context().Done():
		}
	}, nil)
	statuses := make([]int, 2)
	bodies := make([][]byte, 2)
	var wg sync.WaitGroup
	for i, c := range []*agentClient{a, &b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses[i], _, bodies[i] = c.sendRaw(c.sendBody(protocol.ActionPostMessage, protocol.Routing{Channel: "C1"}, map[string]any{"text": "x"}, c.now()))
		}()
	}
	wg.Wait()
	for i := range statuses {
		if statuses[i] != http.StatusOK {
			t.Fatalf("replica %d: %d %s", i, statuses[i], bodies[i])
		}
	}
	if n := refreshCalls(h); n != 1 {
		t.Fatalf("%d refresh calls, want exactly 1", n)
	}
	assertPostsUseStoredToken(t, h, h.st, org, 2)
}

// TestRefreshSingleFlightInProcess: concurrent sends on one broker refresh
// once, with the Redis state and with the embedded bbolt state.
func TestRefreshSingleFlightInProcess(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		bolt bool
	}{{"redis", false}, {"bolt", true}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var st state.Store
			h := newHarness(t, func(h *harness) {
				if tt.bolt {
					bst := openTestBoltState(t, filepath.Join(t.TempDir(), boltstore.StateFileName))
					h.wrapSt = func(state.Store) state.Store { return bst }
					st = bst
				}
			})
			if st == nil {
				st = h.st
			}
			org, a := dueInstall(h, "T0RIP001")
			const n = 6
			statuses := make([]int, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					statuses[i], _, _ = a.sendRaw(a.sendBody(protocol.ActionPostMessage, protocol.Routing{Channel: "C1"}, map[string]any{"text": "x"}, a.now()))
				}()
			}
			wg.Wait()
			for i, s := range statuses {
				if s != http.StatusOK {
					t.Fatalf("send %d: status %d", i, s)
				}
			}
			if got := refreshCalls(h); got != 1 {
				t.Fatalf("%d refresh calls, want exactly 1", got)
			}
			assertPostsUseStoredToken(t, h, st, org, n)
		})
	}
}

// assertPostsUseStoredToken checks that the n posts used the bot token now
// stored (the refreshed one) and that no refresh lease is left.
func assertPostsUseStoredToken(t *testing.T, h *harness, st state.Store, org string, n int) {
	t.Helper()
	inst, err := st.GetInstallation(context.Background(), org)
	if err != nil {
		t.Fatal(err)
	}
	if inst.RefreshLease != "" || !inst.RefreshLeaseUntil.IsZero() {
		t.Fatalf("refresh lease left: %q until %v", inst.RefreshLease, inst.RefreshLeaseUntil)
	}
	if h.srv.needsRefresh(inst) {
		t.Fatalf("stored token still due: expires %v", inst.BotTokenExpiresAt)
	}
	tok, err := h.keys.Keyring.Decrypt(inst.BotToken, org)
	if err != nil {
		t.Fatal(err)
	}
	defer crypto.Wipe(tok)
	posts := h.fake.CallsTo("chat.postMessage")
	if len(posts) != n {
		t.Fatalf("%d posts, want %d", len(posts), n)
	}
	for i, p := range posts {
		if p.Token != string(tok) || p.Error != "" {
			t.Fatalf("post %d used another token than the refreshed one (error %q)", i, p.Error)
		}
	}
}

// TestRefreshLeaseLapses: a lease left by a replica that died mid-refresh
// holds the others back only until it lapses; then one of them refreshes.
func TestRefreshLeaseLapses(t *testing.T) {
	t.Parallel()
	busy := make(chan struct{})
	var once sync.Once
	h := newHarness(t, func(h *harness) {
		h.wrapSt = func(st state.Store) state.Store {
			return &busyState{Store: st, busy: func() { once.Do(func() { close(busy) }) }}
		}
	})
	org, a := dueInstall(h, "T0RLL001")
	ctx := context.Background()
	if err := h.st.UpdateInstallation(ctx, org, func(inst *state.Installation) error {
		inst.RefreshLease, inst.RefreshLeaseUntil = "dead-replica", h.clock.Now().Add(h.srv.refreshLeaseTTL())
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	done := make(chan int)
	go func() {
		status, _, _ := a.sendRaw(a.sendBody(protocol.ActionPostMessage, protocol.Routing{Channel: "C1"}, map[string]any{"text": "x"}, a.now()))
		done <- status
	}()
	<-busy // the send found the lease held and waits
	if n := refreshCalls(h); n != 0 {
		t.Fatalf("%d refresh calls while the lease is held", n)
	}
	h.clock.Advance(h.srv.refreshLeaseTTL() + time.Second)
	if status := <-done; status != http.StatusOK {
		t.Fatalf("send: status %d", status)
	}
	if n := refreshCalls(h); n != 1 {
		t.Fatalf("%d refresh calls, want 1", n)
	}
	assertPostsUseStoredToken(t, h, h.st, org, 1)
}
