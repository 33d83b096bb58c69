package redisstore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sealrelay/sealrelay/state"
)

// gate is a go-redis hook that holds every pipeline until opened and
// records how many commands each one carried; lone commands are counted.
type gate struct {
	open    chan struct{}
	once    sync.Once
	entered chan int // the size of each pipeline as it arrives

	mu      sync.Mutex
	sizes   []int
	singles int
}

// connSetup are the commands go-redis sends by itself (a new connection's
// handshake, cluster topology), which the gate neither holds nor counts.
var connSetup = map[string]bool{"hello": true, "client": true, "auth": true, "select": true,
	"readonly": true, "cluster": true, "command": true}

// newGate installs a closed gate on c; it opens when t ends at the latest.
func newGate(t testing.TB, c redis.UniversalClient) *gate {
	g := &gate{open: make(chan struct{}), entered: make(chan int, 1024)}
	c.AddHook(g)
	t.Cleanup(g.release)
	return g
}

// release lets every held and later pipeline through.
func (g *gate) release() { g.once.Do(func() { close(g.open) }) }

// wait returns once n more pipelines reached the gate.
func (g *gate) wait(n int) {
	for range n {
		<-g.entered
	}
}

func (g *gate) counts() (sizes []int, singles int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]int(nil), g.sizes...), g.singles
}

func (g *gate) DialHook(next redis.DialHook) redis.DialHook { return next }

func (g *gate) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !connSetup[cmd.Name()] {
			g.mu.Lock()
			g.singles++
			g.mu.Unlock()
		}
		return next(ctx, cmd)
	}
}

func (g *gate) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if len(cmds) > 0 && connSetup[cmds[0].Name()] {
			return next(ctx, cmds)
		}
		g.mu.Lock()
		g.sizes = append(g.sizes, len(cmds))
		g.mu.Unlock()
		select {
		case g.entered <- len(cmds):
		default:
		}
		<-g.open
		return next(ctx, cmds)
	}
}

// countQueued makes st report every call that joins its coalescer's queue
// on the returned channel.
func countQueued(st *State) <-chan struct{} {
	ch := make(chan struct{}, 1024)
	st.onQueue(func() { ch <- struct{}{} })
	return ch
}

func waitQueued(ch <-chan struct{}, n int) {
	for range n {
		<-ch
	}
}

// occupy fills every in-flight slot of st's coalescer with a UseNonce call
// held at g (one pipeline each) and returns a function that waits for their
// answers once g opens. ctxs, if given, are the fillers' contexts.
func occupy(t *testing.T, st *State, g *gate, ctxs ...context.Context) (wait func()) {
	t.Helper()
	errs := make(chan error, coalesceMaxInFlight)
	for i := range coalesceMaxInFlight {
		ctx := context.Background()
		if i < len(ctxs) {
			ctx = ctxs[i]
		}
		go func() {
			fresh, err := st.UseNonce(ctx, "filler", fmt.Sprint("n", i), time.Minute)
			if err == nil && !fresh {
				err = errors.New("filler nonce not fresh")
			}
			if i < len(ctxs) && ctx.Err() != nil && errors.Is(err, ctx.Err()) {
				err = nil // a filler whose ctx was cancelled on purpose
			}
			errs <- err
		}()
		g.wait(1)
	}
	return func() {
		t.Helper()
		for range coalesceMaxInFlight {
			if err := <-errs; err != nil {
				t.Errorf("filler: %v", err)
			}
		}
	}
}

// coalesceState returns a State on c with one agent registered for org T1.
func coalesceState(t *testing.T, c redis.UniversalClient, prefix string) *State {
	t.Helper()
	st := NewState(c, prefix)
	t.Cleanup(func() { _ = st.Close() })
	ctx := context.Background()
	hk := testHashKey(t)
	now := time.Now()
	tok := hk.Hash(KindRegistrationToken, "t")
	if err := st.PutRegistrationToken(ctx, tok, "T1", now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := st.RegisterAgent(ctx, tok, testAgent(t, hk, "ag1", "T1", now), now, 0); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestCoalesceRoundTrips: N concurrent claims and completions go out in a
// few pipelines (the in-flight slots plus one batch), each call with its
// own result. TestRedisStateCluster runs it on a Cluster too.
func TestCoalesceRoundTrips(t *testing.T) {
	t.Parallel()
	rdb, prefix := testRedis(t)
	testCoalesceRoundTrips(t, rdb, prefix)
}

func testCoalesceRoundTrips(t *testing.T, c redis.UniversalClient, prefix string) {
	st := coalesceState(t, c, prefix)
	ctx := context.Background()
	const n = 64 // half claims, half completions
	queued := countQueued(st)
	g := newGate(t, c)
	errs := make(chan error, n)
	for i := range n {
		go func() {
			if i%2 == 0 {
				claim, agents, err := st.ClaimEventAndListAgents(ctx, fmt.Sprint("E", i), "T1")
				if err == nil && (claim != state.EventClaimed || len(agents) != 1) {
					err = fmt.Errorf("claim %d: %v with %d agents", i, claim, len(agents))
				}
				errs <- err
				return
			}
			errs <- st.CompleteEvent(ctx, fmt.Sprint("E", i), time.Minute)
		}()
	}
	waitQueued(queued, n)
	g.release()
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	sizes, singles := g.counts()
	if limit := coalesceMaxInFlight + 1; len(sizes) > limit {
		t.Errorf("%d calls took %d pipelines %v; want at most %d", n, len(sizes), sizes, limit)
	}
	total := 0
	for _, s := range sizes {
		total += s
	}
	if want := n/2*2 + n/2; total != want {
		t.Errorf("pipelines carried %d commands, want %d", total, want)
	}
	if singles != 0 {
		t.Errorf("%d commands went out alone", singles)
	}
	// The claims left pending records, the completions done ones.
	for i := range n {
		want := state.EventInProgress
		if i%2 == 1 {
			want = state.EventDone
		}
		if got, err := st.ClaimEvent(ctx, fmt.Sprint("E", i)); err != nil || got != want {
			t.Errorf("event E%d: %v, %v; want %v", i, got, err, want)
		}
	}
}

// TestCoalescePerCallResults: calls sharing one pipeline each get their
// own answer, a Redis error included.
func TestCoalescePerCallResults(t *testing.T) {
	t.Parallel()
	rdb, prefix := testRedis(t)
	st := coalesceState(t, rdb, prefix)
	ctx := context.Background()
	// Setup: a done event, two pending ones, one whose key has the wrong type,
	// an org whose agent list has the wrong type, a used nonce.
	if err := st.CompleteEvent(ctx, "done", time.Minute); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"busy", "release"} {
		if c, err := st.ClaimEvent(ctx, id); err != nil || c != state.EventClaimed {
			t.Fatalf("claim %s: %v %v", id, c, err)
		}
	}
	if err := rdb.HSet(ctx, st.k.event(eventKeyPart("bad")), "x", "1").Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Set(ctx, st.k.orgAgents("TBAD"), "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if fresh, err := st.UseNonce(ctx, "ag1", "used", time.Minute); err != nil || !fresh {
		t.Fatalf("nonce: %v %v", fresh, err)
	}

	g := newGate(t, rdb)
	fillers := occupy(t, st, g)
	queued := countQueued(st)
	wrongType := func(err error) error {
		if err == nil || !strings.Contains(err.Error(), "WRONGTYPE") {
			return fmt.Errorf("err %v, want WRONGTYPE", err)
		}
		return nil
	}
	calls := []struct {
		name string
		cmds int
		run  func() error
	}{
		{"claim new", 2, func() error {
			c, a, err := st.ClaimEventAndListAgents(ctx, "new", "T1")
			if err != nil || c != state.EventClaimed || len(a) != 1 {
				return fmt.Errorf("%v %d %v", c, len(a), err)
			}
			return nil
		}},
		{"claim done", 2, func() error {
			c, _, err := st.ClaimEventAndListAgents(ctx, "done", "T1")
			if err != nil || c != state.EventDone {
				return fmt.Errorf("%v %v", c, err)
			}
			return nil
		}},
		{"claim busy", 1, func() error {
			c, err := st.ClaimEvent(ctx, "busy")
			if err != nil || c != state.EventInProgress {
				return fmt.Errorf("%v %v", c, err)
			}
			return nil
		}},
		{"claim wrong type", 2, func() error {
			_, _, err := st.ClaimEventAndListAgents(ctx, "bad", "T1")
			return wrongType(err)
		}},
		{"agents wrong type", 2, func() error {
			_, _, err := st.ClaimEventAndListAgents(ctx, "other", "TBAD")
			return wrongType(err)
		}},
		{"used nonce", 1, func() error {
			fresh, err := st.UseNonce(ctx, "ag1", "used", time.Minute)
			if err != nil || fresh {
				return fmt.Errorf("%v %v", fresh, err)
			}
			return nil
		}},
		{"fresh signature", 1, func() error {
			fresh, err := st.UseSignature(ctx, testHashKey(t).Hash(KindUnregisterSig, "s"), time.Minute)
			if err != nil || !fresh {
				return fmt.Errorf("%v %v", fresh, err)
			}
			return nil
		}},
		{"release pending", 1, func() error { return st.ReleaseEvent(ctx, "release") }},
		{"complete", 1, func() error { return st.CompleteEvent(ctx, "completed", time.Minute) }},
	}
	errs := make([]error, len(calls))
	var wg sync.WaitGroup
	want := 0
	for i, c := range calls {
		want += c.cmds
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.run()
		}()
	}
	waitQueued(queued, len(calls))
	g.release()
	wg.Wait()
	fillers()
	for i, c := range calls {
		if errs[i] != nil {
			t.Errorf("%s: %v", c.name, errs[i])
		}
	}
	sizes, _ := g.counts()
	if len(sizes) != coalesceMaxInFlight+1 || sizes[len(sizes)-1] != want {
		t.Errorf("pipelines %v; want %d fillers then one of %d commands", sizes, coalesceMaxInFlight, want)
	}
	// The release removed its pending record, the completion wrote one.
	for id, want := range map[string]state.EventClaim{"release": state.EventClaimed, "completed": state.EventDone, "busy": state.EventInProgress} {
		if c, err := st.ClaimEvent(ctx, id); err != nil || c != want {
			t.Errorf("%s afterwards: %v %v; want %v", id, c, err, want)
		}
	}
}

// TestCoalesceCancel: a caller whose ctx ends while queued returns at once
// with ctx's error and its command is not sent; the others are not held up.
// A caller whose batch is on the wire waits for its answer.
func TestCoalesceCancel(t *testing.T) {
	t.Parallel()
	rdb, prefix := testRedis(t)
	st := coalesceState(t, rdb, prefix)
	ctx := context.Background()
	g := newGate(t, rdb)
	sentCtx, cancelSent := context.WithCancel(ctx)
	fillers := occupy(t, st, g, sentCtx)
	queued := countQueued(st)

	qctx, cancelQueued := context.WithCancel(ctx)
	cancelled := make(chan error, 1)
	go func() {
		_, err := st.ClaimEvent(qctx, "cancelled")
		cancelled <- err
	}()
	others := make(chan error, 2)
	for _, id := range []string{"o1", "o2"} {
		go func() {
			c, err := st.ClaimEvent(ctx, id)
			if err == nil && c != state.EventClaimed {
				err = fmt.Errorf("claim %s: %v", id, c)
			}
			others <- err
		}()
	}
	waitQueued(queued, 3)
	cancelQueued()
	// The gate is still closed: the cancelled call returns without its batch.
	if err := <-cancelled; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled claim: %v, want context.Canceled", err)
	}
	// A caller whose batch is on the wire leaves too when its ctx ends
	// (Redis silent: the gate is still closed), so a webhook's deadline
	// holds however long Redis takes.
	onWire := make(chan error, 1)
	go func() {
		_, err := st.UseNonce(sentCtx, "filler", "late", time.Minute)
		onWire <- err
	}()
	cancelSent()
	if err := <-onWire; !errors.Is(err, context.Canceled) {
		t.Fatalf("call with a cancelled ctx: %v, want context.Canceled", err)
	}
	g.release()
	for range 2 {
		if err := <-others; err != nil {
			t.Error(err)
		}
	}
	fillers()
	sizes, _ := g.counts()
	if len(sizes) != coalesceMaxInFlight+1 || sizes[len(sizes)-1] != 2 {
		t.Errorf("pipelines %v; want %d fillers then the 2 live claims", sizes, coalesceMaxInFlight)
	}
	if c, err := st.ClaimEvent(ctx, "cancelled"); err != nil || c != state.EventClaimed {
		t.Errorf("the cancelled claim was sent: now %v %v", c, err)
	}
}

// TestCoalesceClose: Close fails the queued calls without sending them,
// waits for the batches on the wire, and later calls fail with ErrClosed.
func TestCoalesceClose(t *testing.T) {
	t.Parallel()
	rdb, prefix := testRedis(t)
	st := coalesceState(t, rdb, prefix)
	ctx := context.Background()
	g := newGate(t, rdb)
	fillers := occupy(t, st, g)
	queued := countQueued(st)
	qerr := make(chan error, 1)
	go func() {
		_, err := st.UseNonce(ctx, "ag1", "queued", time.Minute)
		qerr <- err
	}()
	waitQueued(queued, 1)
	closed := make(chan error, 1)
	go func() { closed <- st.Close() }()
	if err := <-qerr; !errors.Is(err, ErrClosed) {
		t.Fatalf("queued call at Close: %v, want ErrClosed", err)
	}
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) with batches on the wire", err)
	default:
	}
	g.release()
	fillers()
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := st.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	after := []struct {
		name string
		run  func() error
	}{
		{"ClaimEvent", func() error { _, err := st.ClaimEvent(ctx, "x"); return err }},
		{"ClaimEventAndListAgents", func() error { _, _, err := st.ClaimEventAndListAgents(ctx, "x", "T1"); return err }},
		{"CompleteEvent", func() error { return st.CompleteEvent(ctx, "x", time.Minute) }},
		{"ReleaseEvent", func() error { return st.ReleaseEvent(ctx, "x") }},
		{"UseNonce", func() error { _, err := st.UseNonce(ctx, "ag1", "x", time.Minute); return err }},
		{"UseSignature", func() error {
			_, err := st.UseSignature(ctx, testHashKey(t).Hash(KindUnregisterSig, "x"), time.Minute)
			return err
		}},
	}
	for _, a := range after {
		if err := a.run(); !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", a.name, err)
		}
	}
	// Neither the queued nonce nor anything after Close reached Redis.
	n, err := rdb.Exists(ctx, st.k.nonce("ag1", eventKeyPart("queued")), st.k.event(eventKeyPart("x"))).Result()
	if err != nil || n != 0 {
		t.Errorf("keys of unsent calls: %d exist (%v)", n, err)
	}
}

// TestCoalesceConnectionError: a connection error fails every call of the
// batch, each with an error.
func TestCoalesceConnectionError(t *testing.T) {
	t.Parallel()
	errDown := errors.New("test: the server is down")
	rdb := redis.NewClient(&redis.Options{Addr: "redis.invalid:6379", MaxRetries: -1, DialerRetries: 1,
		Dialer: func(context.Context, string, string) (net.Conn, error) { return nil, errDown }})
	t.Cleanup(func() { _ = rdb.Close() })
	st := NewState(rdb, "unused:")
	t.Cleanup(func() { _ = st.Close() })
	ctx := context.Background()
	queued := countQueued(st)
	g := newGate(t, rdb)
	const n = 8
	errs := make(chan error, n)
	for i := range n {
		go func() {
			_, err := st.ClaimEvent(ctx, fmt.Sprint("E", i))
			errs <- err
		}()
	}
	waitQueued(queued, n)
	g.release()
	for range n {
		if err := <-errs; !errors.Is(err, errDown) {
			t.Errorf("claim without a server: %v, want %v", err, errDown)
		}
	}
	if sizes, _ := g.counts(); len(sizes) >= n {
		t.Errorf("%d calls took %d pipelines", n, len(sizes))
	}
}
