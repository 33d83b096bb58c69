// Package pprofserve serves Go's runtime profiles (net/http/pprof) on a
// listener of their own, for `--pprof-listen` of the broker and the bridge.
//
// Profiles show code paths, timings and allocation sizes, never message
// bodies or tokens, but a goroutine dump or a heap profile still says more
// about a running process than an operator wants on a network: the
// listener is therefore off by default and only accepts a loopback
// address (reach it through SSH forwarding or kubectl port-forward).
package pprofserve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/sealrelay/sealrelay/internal/netutil"
)

// CheckListen accepts "" (off) or a loopback HOST:PORT (127.0.0.1, ::1 or
// localhost); anything else is refused with a message that says why.
func CheckListen(addr string) error {
	if addr == "" {
		return nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("want HOST:PORT, e.g. 127.0.0.1:6060: %w", err)
	}
	if port == "" {
		return errors.New("want HOST:PORT with a port, e.g. 127.0.0.1:6060")
	}
	if !netutil.IsLoopbackHost(host) {
		return fmt.Errorf("profiles are served on loopback only (127.0.0.1, ::1 or localhost), not %q", host)
	}
	return nil
}

// Handler returns the /debug/pprof/ routes (index, cmdline, profile,
// symbol, trace and the named profiles such as heap and goroutine).
func Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("POST /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	return mux
}

// Server is a running profile listener.
type Server struct {
	hs *http.Server
	ln net.Listener
}

// Start listens on addr (checked with CheckListen) and serves Handler until
// Shutdown. what names the flag in errors, e.g. "--pprof-listen".
func Start(addr, what string, logger *slog.Logger) (*Server, error) {
	if err := CheckListen(addr); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: listen on %s: %w", what, addr, err)
	}
	hs := &http.Server{
		Handler:           Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		// A CPU profile or trace holds the request open for its ?seconds=.
		WriteTimeout: 5 * time.Minute,
		IdleTimeout:  time.Minute,
		ErrorLog:     slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	go func() {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("profile listener stopped", "err", err)
		}
	}()
	logger.Info("profiles listening", "addr", ln.Addr().String())
	return &Server{hs: hs, ln: ln}, nil
}

// Addr is the address the listener is bound to.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Shutdown stops the listener; a profile in progress is cut off when ctx
// ends.
func (s *Server) Shutdown(ctx context.Context) error {
	if s == nil {
		return nil
	}
	if err := s.hs.Shutdown(ctx); err != nil {
		_ = s.hs.Close()
		return fmt.Errorf("profile listener shutdown: %w", err)
	}
	return nil
}
