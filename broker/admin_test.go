package broker

import (
	"context"
	"errors"
	"fmt"
	"github.com/sealrelay/sealrelay/state"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sealrelay/sealrelay/internal/slackfake"
	"github.com/sealrelay/sealrelay/queue"
	"github.com/sealrelay/sealrelay/store/boltstore"
	"github.com/sealrelay/sealrelay/store/redisstore"
)

// adminEnv is a state.Store and queue.Store of one engine, fresh and isolated.
type adminEnv struct {
	st state.Store
	q  queue.Store
	hk *HashKey
}

var adminEngines = []struct {
	name string
	open func(t testing.TB, qo queue.Options) adminEnv
}{
	{"redis", func(t testing.TB, qo queue.Options) adminEnv {
		rdb, prefix := testRedis(t)
		rs, err := redisstore.Open(rdb, prefix, redisstore.InboxOptions{Options: qo})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = rs.Close() })
		return adminEnv{st: rs, q: rs.Inbox, hk: testHashKey(t)}
	}},
	{"bolt", func(t testing.TB, qo queue.Options) adminEnv {
		bs, err := boltstore.Open(t.TempDir(), qo)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = bs.Close() })
		return adminEnv{st: bs, q: bs.Inbox, hk: testHashKey(t)}
	}},
}

// addAgent installs org (if needed) and registers agent id through state.Store.
func (e adminEnv) addAgent(t testing.TB, org, id string, at time.Time) *state.Agent {
	t.Helper()
	ctx := context.Background()
	if _, err := e.st.GetInstallation(ctx, org); errors.Is(err, state.ErrNotFound) {
		if err := e.st.PutInstallation(ctx, &state.Installation{OrgID: org, TeamID: org, TeamName: "team " + org, InstalledAt: at, UpdatedAt: at}); err != nil {
			t.Fatal(err)
		}
	}
	tok := e.hk.Hash(KindRegistrationToken, "reg-"+id)
	if err := e.st.PutRegistrationToken(ctx, tok, org, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	a := testAgent(t, e.hk, id, org, at)
	if err := e.st.RegisterAgent(ctx, tok, a, at, 0); err != nil {
		t.Fatal(err)
	}
	return a
}

func TestAdminStoreOps(t *testing.T) {
	t.Parallel()
	for _, eng := range adminEngines {
		t.Run(eng.name, func(t *testing.T) {
			t.Parallel()
			e := eng.open(t, queue.Options{})
			as := e.st
			ctx := context.Background()
			if l, err := as.ListInstallations(ctx); err != nil || len(l) != 0 {
				t.Fatalf("empty store: installations %v, %v", l, err)
			}
			if l, err := as.ListAllAgents(ctx); err != nil || len(l) != 0 {
				t.Fatalf("empty store: agents %v, %v", l, err)
			}
			now := time.Now().UTC().Truncate(time.Millisecond)
			e.addAgent(t, "T2", "ag-c", now)
			e.addAgent(t, "T1", "ag-b", now)
			e.addAgent(t, "T2", "ag-a", now)
			insts, err := as.ListInstallations(ctx)
			if err != nil || len(insts) != 2 || insts[0].OrgID != "T1" || insts[1].OrgID != "T2" {
				t.Fatalf("installations %v, %v", insts, err)
			}
			agents, err := as.ListAllAgents(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, a := range agents {
				got = append(got, a.OrgID+"/"+a.ID)
			}
			if strings.Join(got, ",") != "T2/ag-a,T1/ag-b,T2/ag-c" {
				t.Fatalf("all agents %v, want ordered by id", got)
			}

			if err := as.RecordPull(ctx, "ag-a", now); err != nil {
				t.Fatal(err)
			}
			later := now.Add(time.Minute)
			if err := as.RecordPull(ctx, "ag-a", later); err != nil {
				t.Fatal(err)
			}
			if err := as.RecordPull(ctx, "ag-b", now); err != nil {
				t.Fatal(err)
			}
			pulls, err := as.LastPulls(ctx, []string{"ag-a", "ag-b", "ag-c"})
			if err != nil {
				t.Fatal(err)
			}
			if len(pulls) != 2 || !pulls["ag-a"].Equal(later) || !pulls["ag-b"].Equal(now) {
				t.Fatalf("last pulls %v, want ag-a at %v, ag-b at %v, ag-c absent", pulls, later, now)
			}
			if err := as.ForgetPull(ctx, "ag-a"); err != nil {
				t.Fatal(err)
			}
			if err := as.ForgetPull(ctx, "ag-never"); err != nil {
				t.Fatalf("forget of an absent record: %v", err)
			}
			if pulls, err := as.LastPulls(ctx, []string{"ag-a", "ag-b"}); err != nil || len(pulls) != 1 {
				t.Fatalf("after forget: %v, %v", pulls, err)
			}
			if pulls, err := as.LastPulls(ctx, nil); err != nil || len(pulls) != 0 {
				t.Fatalf("no ids: %v, %v", pulls, err)
			}
		})
	}
}

func TestAdminAgentViews(t *testing.T) {
	t.Parallel()
	for _, eng := range adminEngines {
		t.Run(eng.name, func(t *testing.T) {
			t.Parallel()
			e := eng.open(t, queue.Options{})
			ctx := context.Background()
			now := time.Now().UTC().Truncate(time.Millisecond)
			old := now.Add(-48 * time.Hour)
			e.addAgent(t, "T1", "ag-fresh", now.Add(-time.Hour))          // never pulled, registered 1 h ago
			e.addAgent(t, "T1", "ag-silent", old)                         // never pulled, registered 2 days ago
			e.addAgent(t, "T1", "ag-pulling", old)                        // pulled a minute ago
			e.addAgent(t, "T2", "ag-stale", old)                          // pulled 25 h ago
			e.addAgent(t, "T2", "ag-expired", now.Add(-100*24*time.Hour)) // token past its 90 days
			as := e.st
			for id, at := range map[string]time.Time{"ag-pulling": now.Add(-time.Minute), "ag-stale": now.Add(-25 * time.Hour)} {
				if err := as.RecordPull(ctx, id, at); err != nil {
					t.Fatal(err)
				}
			}
			if err := e.st.SetRespondUntil(ctx, "ag-pulling", now.Add(time.Minute)); err != nil {
				t.Fatal(err)
			}
			if err := e.st.SetRespondUntil(ctx, "ag-stale", now.Add(-time.Minute)); err != nil {
				t.Fatal(err)
			}
			for range 3 {
				if _, err := e.q.Enqueue(ctx, "ag-pulling", []byte(`{}`)); err != nil {
					t.Fatal(err)
				}
			}
			if m, err := e.q.Pull(ctx, "ag-pulling", 1, 0); err != nil || len(m) != 1 {
				t.Fatalf("pull: %v %v", m, err)
			}
			adm, err := NewAdmin(e.st, e.q, AdminOptions{Now: func() time.Time { return now }})
			if err != nil {
				t.Fatal(err)
			}
			all, err := adm.Agents(ctx, "")
			if err != nil {
				t.Fatal(err)
			}
			byID := map[string]AgentView{}
			var order []string
			for _, v := range all {
				byID[v.ID] = v
				order = append(order, v.ID)
			}
			if got := strings.Join(order, ","); got != "ag-fresh,ag-pulling,ag-silent,ag-expired,ag-stale" {
				t.Fatalf("order %s, want by org then id", got)
			}
			tests := []struct {
				id           string
				idle         bool
				lastPull     time.Time
				ready, lease int
				caps         string
				expired      bool
			}{
				{"ag-fresh", false, time.Time{}, 0, 0, "", false},
				{"ag-silent", true, time.Time{}, 0, 0, "", false},
				{"ag-pulling", false, now.Add(-time.Minute), 2, 1, CapabilityRespond, false},
				{"ag-stale", true, now.Add(-25 * time.Hour), 0, 0, "", false},
				{"ag-expired", true, time.Time{}, 0, 0, "", true},
			}
			for _, tt := range tests {
				v := byID[tt.id]
				if v.Idle != tt.idle || !v.LastPull.Equal(tt.lastPull) || v.Ready != tt.ready || v.Leased != tt.lease ||
					strings.Join(v.Capabilities, ",") != tt.caps || v.TokenExpired != tt.expired {
					t.Errorf("%s: %+v, want idle=%v last_pull=%v ready=%d leased=%d caps=%q expired=%v",
						tt.id, v, tt.idle, tt.lastPull, tt.ready, tt.lease, tt.caps, tt.expired)
				}
			}
			t2, err := adm.Agents(ctx, "T2")
			if err != nil || len(t2) != 2 || t2[0].OrgID != "T2" || t2[1].OrgID != "T2" {
				t.Fatalf("org filter: %+v, %v", t2, err)
			}
			one, err := adm.Agent(ctx, "ag-pulling")
			if err != nil || one.Ready != 2 || !one.LastPull.Equal(now.Add(-time.Minute)) {
				t.Fatalf("Agent: %+v, %v", one, err)
			}
			if _, err := adm.Agent(ctx, "ag-nobody"); !errors.Is(err, state.ErrNotFound) {
				t.Fatalf("unknown agent: %v, want state.ErrNotFound", err)
			}
			if _, err := adm.Agent(ctx, "bad id!"); !errors.Is(err, ErrInvalidAdminArgument) {
				t.Fatalf("malformed id: %v, want ErrInvalidAdminArgument", err)
			}
			insts, err := adm.Installations(ctx)
			if err != nil || len(insts) != 2 || insts[0].Agents != 3 || insts[1].Agents != 2 || insts[0].TeamName != "team T1" {
				t.Fatalf("installations %+v, %v", insts, err)
			}
		})
	}
}

func TestAdminRevoke(t *testing.T) {
	t.Parallel()
	for _, eng := range adminEngines {
		t.Run(eng.name, func(t *testing.T) {
			t.Parallel()
			e := eng.open(t, queue.Options{})
			ctx := context.Background()
			now := time.Now().UTC()
			a := e.addAgent(t, "T1", "ag-gone", now)
			e.addAgent(t, "T1", "ag-kept", now)
			for _, id := range []string{"ag-gone", "ag-kept"} {
				if _, err := e.q.Enqueue(ctx, id, []byte(`{}`)); err != nil {
					t.Fatal(err)
				}
				if err := e.st.RecordPull(ctx, id, now); err != nil {
					t.Fatal(err)
				}
			}
			var revoked []string
			adm, err := NewAdmin(e.st, e.q, AdminOptions{OnRevoke: func(a *state.Agent) { revoked = append(revoked, a.ID) }})
			if err != nil {
				t.Fatal(err)
			}
			res, err := adm.Revoke(ctx, "ag-gone")
			if err != nil || res.AgentID != "ag-gone" || res.OrgID != "T1" || res.Dropped != 1 {
				t.Fatalf("revoke: %+v, %v", res, err)
			}
			if strings.Join(revoked, ",") != "ag-gone" {
				t.Fatalf("OnRevoke calls %v", revoked)
			}
			if _, err := e.st.GetAgent(ctx, "ag-gone"); !errors.Is(err, state.ErrNotFound) {
				t.Fatalf("agent still there: %v", err)
			}
			if _, err := e.st.LookupAccessToken(ctx, a.AccessTokenHash, now); !errors.Is(err, state.ErrNotFound) {
				t.Fatalf("access token still resolves: %v", err)
			}
			if st, err := e.q.Stats(ctx, "ag-gone"); err != nil || st.Depth() != 0 {
				t.Fatalf("inbox still holds %+v, %v", st, err)
			}
			if p, _ := e.st.LastPulls(ctx, []string{"ag-gone", "ag-kept"}); len(p) != 1 {
				t.Fatalf("last pulls after revoke %v, want only ag-kept", p)
			}
			if st, err := e.q.Stats(ctx, "ag-kept"); err != nil || st.Depth() != 1 {
				t.Fatalf("other agent's inbox: %+v, %v", st, err)
			}
			if _, err := adm.Revoke(ctx, "ag-gone"); !errors.Is(err, state.ErrNotFound) {
				t.Fatalf("second revoke: %v, want state.ErrNotFound", err)
			}
		})
	}
}

// deadLetter stores n messages in inbox and lets each exhaust its single
// delivery, so that they end as dead letters (the queue's lease is short;
// waiting pulls return when it lapses).
func deadLetter(t *testing.T, q queue.Store, inbox string, n int) []string {
	t.Helper()
	ctx := context.Background()
	var ids []string
	for i := range n {
		id, err := q.Enqueue(ctx, inbox, []byte(fmt.Sprintf(`{"secret-body":%d}`, i)))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	for range 200 {
		st, err := q.Stats(ctx, inbox)
		if err != nil {
			t.Fatal(err)
		}
		if st.DeadLetters == n {
			return ids
		}
		if _, err := q.Pull(ctx, inbox, queue.MaxPull, 200*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	t.Fatalf("%d messages did not become dead letters", n)
	return nil
}

func gaugeValues(t *testing.T, c prometheus.Collector) map[string]float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 100)
	c.Collect(ch)
	close(ch)
	out := map[string]float64{}
	for m := range ch {
		var d dto.Metric
		if err := m.Write(&d); err != nil {
			t.Fatal(err)
		}
		out[d.GetLabel()[0].GetValue()] = d.GetGauge().GetValue()
	}
	return out
}

func TestAdminDeadLetters(t *testing.T) {
	t.Parallel()
	for _, eng := range adminEngines {
		t.Run(eng.name, func(t *testing.T) {
			t.Parallel()
			e := eng.open(t, queue.Options{Lease: 50 * time.Millisecond, MaxDeliveries: 1})
			ctx := context.Background()
			now := time.Now().UTC()
			e.addAgent(t, "T1", "ag-dl", now)
			e.addAgent(t, "T1", "ag-clean", now)
			adm, err := NewAdmin(e.st, e.q, AdminOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if g := gaugeValues(t, adm.DeadLetterCollector()); len(g) != 0 {
				t.Fatalf("gauge before dead letters: %v", g)
			}
			ids := deadLetter(t, e.q, "ag-dl", 3)
			list, err := adm.DeadLetters(ctx, "ag-dl", 0)
			if err != nil || len(list) != 3 {
				t.Fatalf("list: %+v, %v", list, err)
			}
			want := map[string]bool{}
			for _, id := range ids {
				want[id] = true
			}
			for i, d := range list {
				if !want[d.ID] || d.Deliveries != 1 || d.Size != len(`{"secret-body":0}`) || d.EnqueuedAt.IsZero() || d.AgeSeconds < 0 {
					t.Errorf("dead letter %d: %+v (want one of %v, 1 delivery, size of the body)", i, d, ids)
				}
			}
			if g := gaugeValues(t, adm.DeadLetterCollector()); len(g) != 1 || g["ag-dl"] != 3 {
				t.Fatalf("gauge after list: %v, want ag-dl=3 and no series for ag-clean", g)
			}
			if l, err := adm.DeadLetters(ctx, "ag-dl", 1); err != nil || len(l) != 1 {
				t.Fatalf("limit 1: %v, %v", l, err)
			}
			if n, err := adm.Redrive(ctx, "ag-dl", []string{ids[1]}); err != nil || n != 1 {
				t.Fatalf("redrive one: %d, %v", n, err)
			}
			if l, _ := adm.DeadLetters(ctx, "ag-dl", 0); len(l) != 2 || l[0].ID == ids[1] || l[1].ID == ids[1] {
				t.Fatalf("dead letters after redriving %s: %+v", ids[1], l)
			}
			if n, err := adm.Redrive(ctx, "ag-dl", []string{ids[1]}); err != nil || n != 0 {
				t.Fatalf("redrive of a message no longer dead: %d, %v", n, err)
			}
			if st, _ := e.q.Stats(ctx, "ag-dl"); st.Ready != 1 || st.DeadLetters != 2 {
				t.Fatalf("after redrive one: %+v", st)
			}
			if n, err := adm.Purge(ctx, "ag-dl"); err != nil || n != 2 {
				t.Fatalf("purge: %d, %v", n, err)
			}
			if g := gaugeValues(t, adm.DeadLetterCollector()); len(g) != 0 {
				t.Fatalf("gauge after purge: %v", g)
			}
			if n, err := adm.Redrive(ctx, "ag-dl", nil); err != nil || n != 0 {
				t.Fatalf("redrive all of none: %d, %v", n, err)
			}

			bad := []struct {
				name string
				call func() error
				want error
			}{
				{"list unknown agent", func() error { _, err := adm.DeadLetters(ctx, "ag-nobody", 0); return err }, state.ErrNotFound},
				{"redrive unknown agent", func() error { _, err := adm.Redrive(ctx, "ag-nobody", nil); return err }, state.ErrNotFound},
				{"purge unknown agent", func() error { _, err := adm.Purge(ctx, "ag-nobody"); return err }, state.ErrNotFound},
				{"limit too large", func() error { _, err := adm.DeadLetters(ctx, "ag-dl", MaxDeadLetterListLimit+1); return err }, ErrInvalidAdminArgument},
				{"negative limit", func() error { _, err := adm.DeadLetters(ctx, "ag-dl", -1); return err }, ErrInvalidAdminArgument},
				{"malformed message id", func() error { _, err := adm.Redrive(ctx, "ag-dl", []string{"a#1"}); return err }, ErrInvalidAdminArgument},
				{"too many ids", func() error { _, err := adm.Redrive(ctx, "ag-dl", make([]string, MaxRedriveIDs+1)); return err }, ErrInvalidAdminArgument},
				{"malformed agent id", func() error { _, err := adm.Purge(ctx, "../x"); return err }, ErrInvalidAdminArgument},
			}
			for _, b := range bad {
				if err := b.call(); !errors.Is(err, b.want) {
					t.Errorf("%s: %v, want %v", b.name, err, b.want)
				}
			}
		})
	}
}

func TestDeadLetterGaugeReadsEveryAgent(t *testing.T) {
	t.Parallel()
	e := adminEngines[1].open(t, queue.Options{Lease: 50 * time.Millisecond, MaxDeliveries: 1})
	now := time.Now()
	e.addAgent(t, "T1", "ag-x", now)
	deadLetter(t, e.q, "ag-x", 2)
	adm, err := NewAdmin(e.st, e.q, AdminOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// No admin call touched ag-x: the first scrape reads the store.
	if g := gaugeValues(t, adm.DeadLetterCollector()); g["ag-x"] != 2 {
		t.Fatalf("gauge %v, want ag-x=2 from the store", g)
	}
}

func TestNewAdminNeedsAdminStore(t *testing.T) {
	t.Parallel()
	type plainState struct{ state.Store }
	if _, err := NewAdmin(plainState{}, nil, AdminOptions{}); err == nil {
		t.Fatal("NewAdmin accepted a state.Store without admin operations")
	}
}

// TestServerRecordsPullsAndRevokeStopsThem runs the broker: a pull records
// the agent's last pull (at most once per PullRecordInterval), and after a
// revoke through Server.Admin the agent's next pull is refused with 401.
func TestServerRecordsPullsAndRevokeStopsThem(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.clock.Freeze()
	org, reg := h.install(slackfake.Install{})
	c := h.register(org, reg)
	adm, err := h.srv.Admin(AdminOptions{})
	if err != nil {
		t.Fatal(err)
	}
	lastPull := func() time.Time {
		t.Helper()
		v, err := adm.Agent(context.Background(), c.id(t))
		if err != nil {
			t.Fatal(err)
		}
		return v.LastPull
	}
	if lp := lastPull(); !lp.IsZero() {
		t.Fatalf("last pull before any pull: %v", lp)
	}
	first := h.clock.Now().Truncate(time.Millisecond)
	c.pull(10, 0)
	if lp := lastPull(); !lp.Equal(first) {
		t.Fatalf("last pull %v, want %v", lp, first)
	}
	h.clock.Advance(PullRecordInterval / 2)
	c.pull(10, 0)
	if lp := lastPull(); !lp.Equal(first) {
		t.Fatalf("pull within %v was written again: %v", PullRecordInterval, lp)
	}
	h.clock.Advance(PullRecordInterval)
	c.pull(10, 0)
	if lp, want := lastPull(), h.clock.Now().Truncate(time.Millisecond); !lp.Equal(want) {
		t.Fatalf("last pull %v, want %v", lp, want)
	}
	if _, err := adm.Revoke(context.Background(), c.id(t)); err != nil {
		t.Fatal(err)
	}
	status, body := c.pullRaw(c.pullBody(10, 0, c.now()))
	if status != http.StatusUnauthorized {
		t.Fatalf("pull after revoke: %d %s, want 401", status, body)
	}
	if !strings.Contains(h.logs.String(), "agent revoked by an operator") {
		t.Fatal("revoke not logged")
	}
}

// id looks up the agent id of c by its signing key.
func (c *agentClient) id(t *testing.T) string {
	t.Helper()
	agents, err := c.h.st.ListAgents(context.Background(), c.org)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range agents {
		if a.SigningPublicKey == c.sig.Public() {
			return a.ID
		}
	}
	t.Fatalf("agent of org %s not registered", c.org)
	return ""
}

// pullSpy records how each waiting Pull of the wrapped queue ended.
type pullSpy struct {
	queue.Store
	queue.DeadLetterAdmin
	ended chan error // ctx.Err() when a Pull with a wait returns
}

func (p *pullSpy) Pull(ctx context.Context, inbox string, maxN int, wait time.Duration) ([]queue.Message, error) {
	m, err := p.Store.Pull(ctx, inbox, maxN, wait)
	if wait > 0 {
		p.ended <- ctx.Err()
	}
	return m, err
}

// watching reports whether a pull of agentID is registered for revocation.
func (w *pollWatch) watching(agentID string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.polls[agentID]) > 0
}

// TestRevokeEndsWaitingPull: a revoke ends the agent's waiting long poll at
// once (its queue wait is cancelled, not timed out; it answers 200 with no
// messages), and the agent's next pull is refused with 401.
func TestRevokeEndsWaitingPull(t *testing.T) {
	t.Parallel()
	spy := &pullSpy{ended: make(chan error, 4)}
	h := newHarness(t, withQueueWrapper(func(q queue.Store) queue.Store {
		spy.Store, spy.DeadLetterAdmin = q, q.(queue.DeadLetterAdmin)
		return spy
	}))
	org, reg := h.install(slackfake.Install{})
	c := h.register(org, reg)
	id := c.id(t)
	waiting := make(chan struct{}, 1)
	h.srv.onLongPoll = func(string) { waiting <- struct{}{} }
	type result struct {
		status int
		body   []byte
	}
	done := make(chan result, 1)
	go func() {
		status, body := c.pullRaw(c.pullBody(10, 20, c.now()))
		done <- result{status, body}
	}()
	<-waiting
	for !h.srv.revokeWatch.watching(id) { // registered just after onLongPoll
		runtime.Gosched()
	}
	adm, err := h.srv.Admin(AdminOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := adm.Revoke(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	if err := <-spy.ended; !errors.Is(err, context.Canceled) {
		t.Fatalf("the waiting pull's queue wait ended with %v, want it cancelled by the revoke", err)
	}
	r := <-done
	if r.status != http.StatusOK || !strings.Contains(string(r.body), `"messages":[]`) {
		t.Fatalf("waiting pull after revoke: %d %s, want 200 with no messages", r.status, r.body)
	}
	if status, body := c.pullRaw(c.pullBody(10, 0, c.now())); status != http.StatusUnauthorized {
		t.Fatalf("next pull: %d %s, want 401", status, body)
	}
}
