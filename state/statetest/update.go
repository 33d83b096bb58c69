package statetest

import (
	"context"
	"errors"
	"github.com/sealrelay/sealrelay/state"
	"strconv"
	"sync"
	"testing"
	"time"
)

// stateUpdateInstallation: UpdateInstallation is an atomic read-modify-write
// (concurrent updates all land), a callback error writes nothing and is
// returned as is, and an absent installation is ErrNotFound.
func stateUpdateInstallation(t *testing.T, st state.Store) {
	ctx := context.Background()
	errStop := errors.New("stop")
	if err := st.UpdateInstallation(ctx, "T9", func(*state.Installation) error { return nil }); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("update absent: %v, want ErrNotFound", err)
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	if err := st.PutInstallation(ctx, &state.Installation{OrgID: "T9", BotToken: "sr1.a", InstalledAt: now}); err != nil {
		t.Fatal(err)
	}
	err := st.UpdateInstallation(ctx, "T9", func(inst *state.Installation) error {
		inst.BotToken = "sr1.changed"
		return errStop
	})
	if !errors.Is(err, errStop) {
		t.Fatalf("callback error: %v, want it returned", err)
	}
	if got, _ := st.GetInstallation(ctx, "T9"); got.BotToken != "sr1.a" {
		t.Fatalf("failed callback stored %q", got.BotToken)
	}
	// Concurrent read-modify-writes: none is lost (at most 8, below the
	// Redis retry bound, since each retry means another writer committed).
	const n = 8
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- st.UpdateInstallation(ctx, "T9", func(inst *state.Installation) error {
				inst.BotScopes = append(inst.BotScopes, "s"+strconv.Itoa(i))
				return nil
			})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	got, err := st.GetInstallation(ctx, "T9")
	if err != nil {
		t.Fatal(err)
	}
	if len(got.BotScopes) != n || got.BotToken != "sr1.a" || !got.InstalledAt.Equal(now) {
		t.Fatalf("after %d concurrent updates: %+v", n, got)
	}
	// Revoke goes through the same primitive and clears a refresh lease.
	if err := st.UpdateInstallation(ctx, "T9", func(inst *state.Installation) error {
		inst.RefreshLease, inst.RefreshLeaseUntil = "lease", now.Add(time.Minute)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := st.RevokeInstallation(ctx, "T9", now); err != nil {
		t.Fatal(err)
	}
	got, _ = st.GetInstallation(ctx, "T9")
	if !got.Revoked || got.BotToken != "" || got.RefreshLease != "" || !got.RefreshLeaseUntil.IsZero() || len(got.BotScopes) != n {
		t.Fatalf("after revoke: %+v", got)
	}
}
