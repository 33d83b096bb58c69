package redisstore

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sealrelay/sealrelay/queue"
	"github.com/sealrelay/sealrelay/queue/queuetest"

	"github.com/sealrelay/sealrelay/store/internal/inboxutil"
)

// privateRedis is a redis-server started by a test in its own directory, on
// a free port, with the AOF fsynced on every write.
type privateRedis struct {
	t    testing.TB
	dir  string
	port int
	cmd  *exec.Cmd
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func startPrivateRedis(t testing.TB, extra ...string) *privateRedis {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatalf("redis-server not installed (apt-get install -y redis-server): %v", err)
	}
	r := &privateRedis{t: t, dir: t.TempDir(), port: freePort(t)}
	r.start(extra...)
	t.Cleanup(r.stop)
	return r
}

func (r *privateRedis) addr() string { return "127.0.0.1:" + strconv.Itoa(r.port) }

func (r *privateRedis) start(extra ...string) {
	r.t.Helper()
	args := append([]string{"--port", strconv.Itoa(r.port), "--bind", "127.0.0.1", "--dir", r.dir,
		"--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no",
		"--protected-mode", "no", "--logfile", ""}, extra...)
	r.cmd = exec.Command("redis-server", args...)
	if err := r.cmd.Start(); err != nil {
		r.t.Fatalf("starting redis-server: %v", err)
	}
	c := redis.NewClient(&redis.Options{Addr: r.addr()})
	defer c.Close()
	queuetest.Eventually(r.t, 30*time.Second, "private redis-server to answer", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return c.Ping(ctx).Err() == nil
	})
}

// kill9 kills the server with SIGKILL and waits for it to exit.
func (r *privateRedis) kill9() {
	r.t.Helper()
	if err := r.cmd.Process.Kill(); err != nil {
		r.t.Fatalf("kill -9 redis-server: %v", err)
	}
	_ = r.cmd.Wait()
	r.cmd = nil
}

func (r *privateRedis) stop() {
	if r.cmd != nil {
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
		r.cmd = nil
	}
}

func (r *privateRedis) store(t *testing.T, opts InboxOptions) (*Inbox, *redis.Client) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: r.addr(), MaxRetries: -1})
	s, err := NewInbox(c, opts)
	if err != nil {
		t.Fatalf("NewInbox: %v", err)
	}
	t.Cleanup(func() { _ = s.Close(); _ = c.Close() })
	return s, c
}

// TestRedisKill9 kills redis-server (appendonly yes, appendfsync always) with
// SIGKILL and restarts it: every message Enqueue returned for is still there,
// acked ones stay gone, and leased ones come back once their lease lapses.
func TestRedisKill9(t *testing.T) {
	srv := startPrivateRedis(t)
	opts := InboxOptions{Options: queue.Options{Lease: time.Second}, PollInterval: time.Hour}
	s, _ := srv.store(t, opts)
	ctx := queuetest.TestCtx(t)
	const n = 300
	enqueued := map[string]bool{}
	for i := range n {
		id, err := s.Enqueue(ctx, "durable", fmt.Appendf(nil, "msg %d", i))
		if err != nil {
			t.Fatal(err)
		}
		enqueued[id] = true
	}
	leased := queuetest.MustPull(t, s, "durable", 20, 0)
	var acks []string
	for _, m := range leased[:10] {
		acks = append(acks, m.Receipt)
		delete(enqueued, m.ID)
	}
	if got := queuetest.MustAck(t, s, "durable", acks...); got != 10 {
		t.Fatalf("acked %d, want 10", got)
	}
	stillLeased := map[string]bool{}
	for _, m := range leased[10:] {
		stillLeased[m.ID] = true
	}

	srv.kill9()
	_ = s.Close()
	srv.start()

	s2, _ := srv.store(t, opts)
	got := map[string]int{}
	queuetest.Eventually(t, time.Minute, "every enqueued message to come back", func() bool {
		for _, m := range queuetest.MustPull(t, s2, "durable", 100, time.Second) {
			if !enqueued[m.ID] {
				t.Fatalf("got acked or unknown message %s after restart", m.ID)
			}
			if got[m.ID] > 0 {
				t.Fatalf("message %s delivered twice after restart", m.ID)
			}
			got[m.ID] = m.Deliveries
			queuetest.MustAck(t, s2, "durable", m.Receipt)
		}
		return len(got) == len(enqueued)
	})
	for id := range stillLeased {
		if got[id] != 2 {
			t.Errorf("leased message %s came back with delivery count %d, want 2", id, got[id])
		}
	}
}

// TestRedisResubscribeWakesWaiters: when the pub/sub connection drops, a
// notice may be lost; the resubscription wakes every waiter, which pulls.
func TestRedisResubscribeWakesWaiters(t *testing.T) {
	srv := startPrivateRedis(t)
	s, c := srv.store(t, InboxOptions{PollInterval: time.Hour})
	ctx := queuetest.TestCtx(t)
	res := queuetest.StartWaitingPull(t, ctx, redisHarness(), s, "lost", 10*time.Minute)
	// Enqueue behind the store's back, publishing on a channel nobody hears,
	// as if the wake-up had been lost.
	er, err := s.enqueue(ctx, "lost", inboxutil.NewID(), false, []byte("quiet"), "nobody-listens")
	if err != nil {
		t.Fatalf("enqueue: %v", err)
	}
	if err := c.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
		t.Fatalf("CLIENT KILL: %v", err)
	}
	id := er.id
	select {
	case r := <-res:
		if r.Err != nil || len(r.Msgs) != 1 || r.Msgs[0].ID != id {
			t.Fatalf("woken pull: %v %v, want [%s]", queuetest.IDs(r.Msgs), r.Err, id)
		}
	case <-time.After(time.Minute):
		t.Fatal("waiter not woken after the pub/sub connection was re-established")
	}
}

// TestRedisServerRestartWakesWaiters: a waiter survives a restart of Redis
// and is served by an Enqueue made after it.
func TestRedisServerRestartWakesWaiters(t *testing.T) {
	srv := startPrivateRedis(t)
	b, _ := srv.store(t, InboxOptions{PollInterval: time.Hour})
	res := queuetest.StartWaitingPull(t, queuetest.TestCtx(t), redisHarness(), b, "restart", 10*time.Minute)
	srv.kill9()
	srv.start()
	a, _ := srv.store(t, InboxOptions{PollInterval: time.Hour})
	id := queuetest.MustEnqueue(t, a, "restart", []byte("after restart"))
	select {
	case r := <-res:
		if r.Err != nil || len(r.Msgs) != 1 || r.Msgs[0].ID != id {
			t.Fatalf("woken pull: %v %v, want [%s]", queuetest.IDs(r.Msgs), r.Err, id)
		}
	case <-time.After(time.Minute):
		t.Fatal("waiter not served after Redis restarted")
	}
}

// TestRedisScriptFlush: after SCRIPT FLUSH (or a failover to a server that
// never saw the scripts) every operation reloads its script and works.
func TestRedisScriptFlush(t *testing.T) {
	srv := startPrivateRedis(t)
	s, c := srv.store(t, InboxOptions{})
	ctx := queuetest.TestCtx(t)
	a := queuetest.MustEnqueue(t, s, "flush", []byte("a"))
	ops := []struct {
		name string
		run  func() error
	}{
		{"enqueue", func() error { _, err := s.Enqueue(ctx, "flush", []byte("b")); return err }},
		{"pull", func() error {
			msgs, err := s.Pull(ctx, "flush", 1, 0)
			if err == nil && (len(msgs) != 1 || msgs[0].ID != a) {
				return fmt.Errorf("pulled %v, want [%s]", queuetest.IDs(msgs), a)
			}
			return err
		}},
		{"ack", func() error {
			n, err := s.Ack(ctx, "flush", []string{a})
			if err == nil && n != 1 {
				return fmt.Errorf("acked %d", n)
			}
			return err
		}},
		{"stats", func() error { _, err := s.Stats(ctx, "flush"); return err }},
		{"dead letters", func() error { _, err := s.DeadLetters(ctx, "flush", 1); return err }},
		{"redrive", func() error { _, err := s.Redrive(ctx, "flush", nil); return err }},
		{"purge", func() error { _, err := s.PurgeDeadLetters(ctx, "flush"); return err }},
		{"sweep", func() error { _, err := s.Sweep(ctx); return err }},
	}
	for _, op := range ops {
		if err := c.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		if err := op.run(); err != nil {
			t.Errorf("%s after SCRIPT FLUSH: %v", op.name, err)
		}
	}
	if st := queuetest.MustStats(t, s, "flush"); st.Ready != 1 {
		t.Fatalf("stats %+v, want the second message ready", st)
	}
}
