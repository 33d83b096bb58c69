package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"

	"github.com/sealrelay/sealrelay/audit"
	"github.com/sealrelay/sealrelay/broker"
	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/internal/pprofserve"
	"github.com/sealrelay/sealrelay/protocol"
	"github.com/sealrelay/sealrelay/queue"
	"github.com/sealrelay/sealrelay/state"
	"github.com/sealrelay/sealrelay/store/boltstore"
	"github.com/sealrelay/sealrelay/store/redisstore"
)

// cmdServe implements `broker serve`.
func cmdServe(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := loadConfig(args, getenv)
	if errors.Is(err, flag.ErrHelp) {
		printServeHelp(stdout)
		return err
	}
	if err != nil {
		return err
	}
	logger := newLogger(cfg, stderr)
	redis.SetLogger(redisLogger{logger.With("component", "redis")})
	for _, w := range cfg.Warnings {
		logger.Warn(w)
	}
	return serve(ctx, cfg, logger, nil)
}

// redisLogger routes go-redis's internal messages (dial failures and the
// like) to slog at warn level.
type redisLogger struct{ l *slog.Logger }

func (r redisLogger) Printf(ctx context.Context, format string, v ...any) {
	r.l.WarnContext(ctx, fmt.Sprintf(format, v...))
}

func newLogger(cfg *config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// listening reports the bound addresses once serve accepts connections
// (metrics is nil when the metrics listener is off).
type listening struct {
	API, Metrics net.Addr
	Admin        net.Addr // nil when the admin listener is off
}

// stores are the opened State and queue.Store with their closer.
type stores struct {
	st    state.Store
	q     queue.Store
	kind  string
	audit audit.Store // the audit log's engine, in the same Redis or bbolt file
	where string      // the Redis deployment, for the start log
	close func()
}

func openStores(ctx context.Context, cfg *config, logger *slog.Logger) (*stores, error) {
	if cfg.usesRedis() {
		rdb, where, err := newRedisClient(ctx, cfg)
		if err != nil {
			return nil, err
		}
		rs, err := redisstore.Open(rdb, cfg.RedisPrefix, redisstore.InboxOptions{Logger: logger})
		if err != nil {
			_ = rdb.Close()
			return nil, err
		}
		return &stores{st: rs, q: rs.Inbox, kind: "redis", where: where, audit: redisstore.NewAuditStore(rdb, cfg.RedisPrefix), close: func() {
			_ = rs.Close()
			_ = rdb.Close()
		}}, nil
	}
	bs, err := boltstore.Open(cfg.DataDir, queue.Options{}, boltstore.WithLogger(logger))
	if err != nil {
		return nil, fmt.Errorf("open the embedded store (--data-dir / SEALRELAY_DATA_DIR): %w", err)
	}
	return &stores{st: bs, q: bs.Inbox, kind: "embedded", audit: bs.Audit(), close: func() { _ = bs.Close() }}, nil
}

// brokerConfig maps the command's configuration to broker.Config.
func brokerConfig(cfg *config) broker.Config {
	rate := broker.RateLimit{Rate: cfg.SendRate, Burst: cfg.SendBurst}
	if cfg.SendRate == 0 {
		rate.Rate = -1 // no limit
	}
	return broker.Config{
		PublicURL:            cfg.PublicURL,
		SlackClientID:        cfg.SlackClientID,
		SlackClientSecret:    cfg.SlackClientSecret,
		SlackSigningSecret:   cfg.SlackSigningSecret,
		SlackAPIURL:          cfg.SlackAPIURL,
		SlackAuthorizeURL:    cfg.SlackAuthorizeURL,
		BotScopes:            cfg.SlackBotScopes,
		AccessTokenTTL:       cfg.AccessTokenTTL,
		AccessTokenOverlap:   cfg.AccessTokenOverlap,
		RegistrationTokenTTL: cfg.RegistrationTokenTTL,
		SendRate:             rate,
		MaxLongPollsPerAgent: cfg.MaxPollsPerAgent,
		AgentsPerOrg:         cfg.AgentsPerOrg,
		AgentIdleAfter:       cfg.Admin.IdleAfter,
		PauseIdleFanout:      cfg.PauseIdleFanout,
		CallPolicy:           cfg.Call.Policy,
		CallPostRate:         cfg.Call.PostRate,
		CallReadRate:         cfg.Call.ReadRate,
		CallOtherRate:        cfg.Call.OtherRate,
		CallMaxResponse:      cfg.Call.MaxResponse,
		SyncResponseTimeout:  cfg.SyncResponseTimeout,
		TokenRefreshMargin:   cfg.TokenRefreshMargin,
		AuditRequired:        cfg.AuditRequired,
		CompactStored:        !cfg.usesRedis(), // one process: no older replica reads it
	}
}

// serve runs the broker until ctx ends, then shuts down gracefully. ready,
// when not nil, receives the bound addresses once both listeners accept
// connections.
func serve(ctx context.Context, cfg *config, logger *slog.Logger, ready chan<- listening) error {
	s, err := openStores(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer s.close()

	if err := checkKeyringCovers(ctx, s.st, cfg.Keyring); err != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	bc := brokerConfig(cfg)
	if bc.Audit, err = startAudit(cfg, s.audit, logger); err != nil {
		return err
	}
	defer stopAudit(bc.Audit, cfg.ShutdownTimeout, logger)
	srv, err := broker.New(bc, s.st, s.q, broker.Keys{Box: cfg.BoxKey, Signing: cfg.SigningKey, Keyring: cfg.Keyring}, logger, reg)
	if err != nil {
		return fmt.Errorf("start broker: %w", err)
	}

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s (--listen / SEALRELAY_LISTEN): %w", cfg.Listen, err)
	}
	hs := srv.HTTPServer(cfg.Listen)
	if cfg.TLSCert != "" {
		cr, err := newCertReloader(cfg.TLSCert, cfg.TLSKey, logger)
		if err != nil {
			_ = ln.Close()
			return err
		}
		hs.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: cr.GetCertificate}
	}
	var mln net.Listener
	var ms *http.Server
	if cfg.MetricsListen != "" {
		mln, err = net.Listen("tcp", cfg.MetricsListen)
		if err != nil {
			_ = ln.Close()
			return fmt.Errorf("listen on %s (--metrics-listen / SEALRELAY_METRICS_LISTEN): %w", cfg.MetricsListen, err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", srv.MetricsHandler())
		ms = &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       10 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       60 * time.Second,
			ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		}
	}

	al, err := startAdmin(cfg, srv, reg, s.audit, logger) // admin.go
	if err != nil {
		_ = ln.Close()
		if mln != nil {
			_ = mln.Close()
		}
		return err
	}
	errc := make(chan error, 3)
	al.serve(errc)
	go func() {
		var err error
		if cfg.TLSCert != "" {
			err = hs.ServeTLS(ln, "", "")
		} else {
			err = hs.Serve(ln)
		}
		if !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("public listener: %w", err)
		}
	}()
	attrs := []any{"version", version, "protocol", protocol.Version, "listen", ln.Addr().String(),
		"public_url", cfg.PublicURL, "store", s.kind, "tls", cfg.TLSCert != "",
		"broker_pubkey", cfg.BoxKey.Public.String(), "broker_signing_pubkey", cfg.SigningKey.Public().String(),
		"master_key_version", cfg.Keyring.ActiveVersion()}
	addrs := listening{API: ln.Addr(), Admin: al.addr()}
	if al != nil {
		attrs = append(attrs, "admin_listen", al.addr().String())
	}
	if ms != nil {
		go func() {
			if err := ms.Serve(mln); !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("metrics listener: %w", err)
			}
		}()
		addrs.Metrics = mln.Addr()
		attrs = append(attrs, "metrics_listen", mln.Addr().String())
	}
	var prof *pprofserve.Server
	if cfg.PprofListen != "" {
		if prof, err = pprofserve.Start(cfg.PprofListen, "--pprof-listen / SEALRELAY_PPROF_LISTEN", logger); err != nil {
			_ = hs.Close()
			al.shutdown(context.Background())
			if ms != nil {
				_ = ms.Close()
			}
			return err
		}
		attrs = append(attrs, "pprof_listen", prof.Addr().String())
	}
	if cfg.RedisOptions != nil {
		attrs = append(attrs, "redis_addr", cfg.RedisOptions.Addr)
	} else if s.where != "" {
		attrs = append(attrs, "redis", s.where)
	} else {
		attrs = append(attrs, "data_dir", cfg.DataDir)
	}
	logger.Info("broker started", attrs...)
	if ready != nil {
		ready <- addrs
	}

	var runErr error
	select {
	case <-ctx.Done():
		logger.Info("shutting down", "timeout", cfg.ShutdownTimeout.String())
	case runErr = <-errc:
		logger.Error("listener failed; shutting down", "err", runErr)
	}

	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	// Release long polls first so that http.Server.Shutdown does not wait
	// for them to time out.
	pollDone := make(chan error, 1)
	go func() { pollDone <- srv.Shutdown(sctx) }()
	if err := hs.Shutdown(sctx); err != nil {
		logger.Warn("public listener did not drain in time; closing connections", "err", err)
		_ = hs.Close()
	}
	if err := <-pollDone; err != nil {
		logger.Warn("long polls did not finish in time", "err", err)
	}
	al.shutdown(sctx)
	_ = prof.Shutdown(sctx)
	if ms != nil {
		if err := ms.Shutdown(sctx); err != nil {
			_ = ms.Close()
		}
	}
	logger.Info("broker stopped")
	return runErr
}

// checkKeyringCovers fails when a stored secret names a master key version
// the keyring lacks (typically a replica started with the keyring from
// before a `keys rotate`), so that the broker does not start only to fail
// every send of those orgs. It only reads (state.Installations.ForEachSecret).
func checkKeyringCovers(ctx context.Context, st state.Installations, kr *crypto.Keyring) error {
	have := map[uint32]bool{}
	for _, v := range kr.Versions() {
		have[v] = true
	}
	missing := map[uint32]int{}
	orgs := map[uint32]string{}
	err := st.ForEachSecret(ctx, func(owner, stored string) error {
		v, err := crypto.StoredVersion(stored)
		if err == nil && !have[v] {
			missing[v]++
			orgs[v] = owner
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("check stored secrets against the master keyring: %w", err)
	}
	if len(missing) == 0 {
		return nil
	}
	vs := make([]uint32, 0, len(missing))
	for v := range missing {
		vs = append(vs, v)
	}
	slices.Sort(vs)
	var parts []string
	for _, v := range vs {
		parts = append(parts, fmt.Sprintf("version %d (%d secrets, e.g. org %s)", v, missing[v], orgs[v]))
	}
	mk := settingByName("master-keys")
	return &configError{Problems: []string{fmt.Sprintf(
		"the master keyring (%s) lacks master key %s used by stored Slack tokens: start the broker with the current keyring file (after `broker keys rotate`, every replica needs the new file)",
		mk.Names(), strings.Join(parts, ", "))}}
}
