package boltstore

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sealrelay/sealrelay/queue"
	"github.com/sealrelay/sealrelay/queue/queuetest"
)

const childDirEnv = "SEALRELAY_QUEUE_BOLT_CHILD_DIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(childDirEnv); dir != "" {
		boltChild(dir)
		return
	}
	os.Exit(m.Run())
}

// boltChild is the child process of TestBoltKill9: it enqueues with 8
// concurrent producers forever and prints each id once Enqueue returned.
func boltChild(dir string) {
	s, err := OpenInbox(dir, queue.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	for p := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				id, err := s.Enqueue(context.Background(), "crash", fmt.Appendf(nil, "p%d-%d", p, i))
				if err != nil {
					fmt.Fprintln(os.Stderr, "child:", err)
					os.Exit(3)
				}
				mu.Lock()
				fmt.Fprintln(out, id)
				_ = out.Flush()
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

// TestBoltKill9 re-executes the test binary as a child that enqueues into a
// bolt store, kills it with SIGKILL mid-stream, reopens the store and checks
// that every id the child printed (after Enqueue returned) is present.
func TestBoltKill9(t *testing.T) {
	dir := t.TempDir()
	// Before the child runs: 20 messages, 10 of them leased (lease 4 s).
	const lease = 4 * time.Second
	pre, err := OpenInbox(dir, queue.Options{Lease: lease})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		queuetest.MustEnqueue(t, pre, "crash", fmt.Appendf(nil, "pre-%d", i))
	}
	leased := queuetest.MustPull(t, pre, "crash", 10, 0)
	leasedAt := time.Now()
	if len(leased) != 10 {
		t.Fatalf("leased %d", len(leased))
	}
	if err := pre.Close(); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childDirEnv+"="+dir)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	var printed []string
	for len(printed) < 500 && sc.Scan() {
		printed = append(printed, strings.TrimSpace(sc.Text()))
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatalf("kill -9: %v", err)
	}
	for sc.Scan() { // lines written before the kill
		if line := strings.TrimSpace(sc.Text()); line != "" {
			printed = append(printed, line)
		}
	}
	_ = cmd.Wait()
	if len(printed) < 500 {
		t.Fatalf("child printed only %d ids", len(printed))
	}

	s, err := OpenInbox(dir, queue.Options{Lease: lease})
	if err != nil {
		t.Fatalf("reopen after kill -9: %v", err)
	}
	defer s.Close()
	st := queuetest.MustStats(t, s, "crash")
	if time.Since(leasedAt) < lease-time.Second && st.Leased != len(leased) {
		t.Fatalf("after reopen %d messages leased, want %d (leases must survive)", st.Leased, len(leased))
	}
	present := map[string]bool{}
	wasLeased := map[string]bool{}
	for _, m := range leased {
		wasLeased[m.ID] = true
	}
	deliveries := map[string]int{}
	// Drain: the leased messages come back once their deadline passes, as
	// their second delivery.
	queuetest.Eventually(t, time.Minute, "every message, leased ones included", func() bool {
		msgs := queuetest.MustPull(t, s, "crash", queue.MaxPull, 2*time.Second)
		var receipts []string
		for _, m := range msgs {
			if present[m.ID] {
				t.Fatalf("id %s delivered twice", m.ID)
			}
			present[m.ID] = true
			deliveries[m.ID] = m.Deliveries
			receipts = append(receipts, m.Receipt)
		}
		queuetest.MustAck(t, s, "crash", receipts...)
		return len(msgs) == 0 && queuetest.MustStats(t, s, "crash").Depth() == 0
	})
	for id := range wasLeased {
		if deliveries[id] != 2 {
			t.Errorf("leased message %s came back as delivery %d, want 2", id, deliveries[id])
		}
	}
	var lost []string
	for _, id := range printed {
		if !present[id] {
			lost = append(lost, id)
		}
	}
	if len(lost) > 0 {
		t.Fatalf("%d of %d acknowledged enqueues lost after kill -9, e.g. %v", len(lost), len(printed), lost[:min(5, len(lost))])
	}
	if len(present) < len(printed)+20 {
		t.Fatalf("store held %d messages, want at least %d", len(present), len(printed)+20)
	}
	t.Logf("child printed %d ids, store held %d messages", len(printed), len(present))
}

// TestBoltReopen: state survives Close/Open; leased messages come back after
// their deadline with the next delivery count; ids are never reused.
func TestBoltReopen(t *testing.T) {
	dir := t.TempDir()
	opts := queue.Options{Lease: 3 * time.Second}
	s, err := OpenInbox(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := OpenInbox(dir, opts); err == nil {
		t.Fatal("a second OpenInbox of the same directory succeeded")
	}
	a := queuetest.MustEnqueue(t, s, "re", []byte("a"))
	b := queuetest.MustEnqueue(t, s, "re", []byte("b"))
	leased := queuetest.MustPull(t, s, "re", 1, 0)
	if len(leased) != 1 || leased[0].ID != a {
		t.Fatalf("pulled %v", queuetest.IDs(leased))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = OpenInbox(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if st := queuetest.MustStats(t, s, "re"); st.Depth() != 2 {
		t.Fatalf("after reopen: %+v", st)
	}
	got := queuetest.MustPull(t, s, "re", 2, 0)
	queuetest.CheckPulled(t, got, []string{b}, []int{1})
	if n := queuetest.MustAck(t, s, "re", got[0].Receipt); n != 1 {
		t.Fatalf("ack after reopen removed %d", n)
	}
	again := queuetest.MustPull(t, s, "re", 2, time.Minute)
	queuetest.CheckPulled(t, again, []string{a}, []int{2})
	queuetest.MustAck(t, s, "re", a)
	c := queuetest.MustEnqueue(t, s, "re", []byte("c"))
	if c == a || c == b {
		t.Fatalf("id %s reused", c)
	}
}
