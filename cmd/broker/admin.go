package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sealrelay/sealrelay/audit"
	"github.com/sealrelay/sealrelay/broker"
)

// adminListener is the admin API and page of a running broker on its own
// listener (--admin-listen).
type adminListener struct {
	ln     net.Listener
	hs     *http.Server
	socket string // unix socket path to remove at shutdown
}

// startAdmin opens the admin listener when configured (nil, nil when it is
// off) and registers the dead-letter gauge on reg. aud, the audit store
// serve writes (nil: none), feeds the page's recent records and the raw
// audit API that `broker audit --admin-url` reads.
func startAdmin(cfg *config, srv *broker.Server, reg prometheus.Registerer, aud audit.Store, logger *slog.Logger) (*adminListener, error) {
	adm, err := srv.Admin(broker.AdminOptions{IdleAfter: cfg.Admin.IdleAfter})
	if err != nil {
		return nil, fmt.Errorf("admin service: %w", err)
	}
	if err := reg.Register(adm.DeadLetterCollector()); err != nil {
		return nil, fmt.Errorf("register admin metrics: %w", err)
	}
	if cfg.Admin.Network == "" {
		if cfg.Admin.OffReason != "" {
			logger.Info(cfg.Admin.OffReason)
		}
		return nil, nil
	}
	al := &adminListener{}
	if cfg.Admin.Network == "unix" {
		// A socket left by a crashed broker is in the way; anything else
		// at that path is not ours to remove.
		if fi, err := os.Lstat(cfg.Admin.Addr); err == nil && fi.Mode()&os.ModeSocket != 0 {
			_ = os.Remove(cfg.Admin.Addr)
		}
		al.socket = cfg.Admin.Addr
	}
	ln, err := net.Listen(cfg.Admin.Network, cfg.Admin.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s (--admin-listen / SEALRELAY_ADMIN_LISTEN): %w", cfg.Admin.Addr, err)
	}
	if al.socket != "" {
		if err := os.Chmod(al.socket, 0o600); err != nil {
			_ = ln.Close()
			return nil, fmt.Errorf("restrict admin socket %s: %w", al.socket, err)
		}
	}
	opts := broker.AdminHandlerOptions{Token: cfg.Admin.Token, PublicURL: cfg.PublicURL, Logger: logger}
	if aud != nil {
		opts.AuditStore = aud
		keys, err := audit.DeriveKeys(cfg.SigningKey) // for POST /admin/api/audit/verify
		if err != nil {
			_ = ln.Close()
			return nil, fmt.Errorf("admin listener: audit keys: %w", err)
		}
		opts.AuditKeys = keys
	}
	al.ln = ln
	al.hs = &http.Server{
		Handler:           broker.NewAdminHandler(adm, opts),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	return al, nil
}

// serve serves the admin listener until shutdown, reporting a failure on
// errc.
func (al *adminListener) serve(errc chan<- error) {
	if al == nil {
		return
	}
	go func() {
		if err := al.hs.Serve(al.ln); !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("admin listener: %w", err)
		}
	}()
}

// addr is the bound address (nil when off).
func (al *adminListener) addr() net.Addr {
	if al == nil {
		return nil
	}
	return al.ln.Addr()
}

// shutdown stops the admin listener and removes its socket.
func (al *adminListener) shutdown(ctx context.Context) {
	if al == nil {
		return
	}
	if err := al.hs.Shutdown(ctx); err != nil {
		_ = al.hs.Close()
	}
	if al.socket != "" {
		_ = os.Remove(al.socket)
	}
}
