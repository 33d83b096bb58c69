package pprofserve_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/sealrelay/sealrelay/internal/pprofserve"
)

func TestCheckListen(t *testing.T) {
	t.Parallel()
	tests := []struct {
		addr    string
		wantErr string
	}{
		{"", ""},
		{"127.0.0.1:6060", ""},
		{"[::1]:6060", ""},
		{"localhost:0", ""},
		{"0.0.0.0:6060", "loopback only"},
		{":6060", "loopback only"},
		{"10.0.0.1:6060", "loopback only"},
		{"127.0.0.1", "HOST:PORT"},
	}
	for _, tt := range tests {
		err := pprofserve.CheckListen(tt.addr)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("CheckListen(%q) = %v, want nil", tt.addr, err)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("CheckListen(%q) = %v, want an error containing %q", tt.addr, err, tt.wantErr)
		}
	}
}

func TestServesProfiles(t *testing.T) {
	t.Parallel()
	s, err := pprofserve.Start("127.0.0.1:0", "--pprof-listen", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/goroutine?debug=1", "/debug/pprof/heap"} {
		resp, err := http.Get("http://" + s.Addr().String() + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK || len(body) == 0 {
			t.Errorf("GET %s = %d with %d bytes, want 200 with a profile", path, resp.StatusCode, len(body))
		}
	}
	if _, err := pprofserve.Start("0.0.0.0:0", "--pprof-listen", slog.New(slog.DiscardHandler)); err == nil {
		t.Error("Start on 0.0.0.0 succeeded, want the loopback refusal")
	}
}
