// Command bridge is sealrelay's agent half. It runs next to the agent,
// behind NAT, with outbound HTTPS only.
//
//	bridge register   --broker-url URL --org-id ID --registration-token TOKEN
//	bridge run        [--forward-url URL --forward-signing-secret-file F] [--listen 127.0.0.1:7890]
//	bridge unregister
//
// Run `bridge <command> -h` for every flag.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/sealrelay/sealrelay/bridge"
	"github.com/sealrelay/sealrelay/internal/pprofserve"
	"golang.org/x/term"
)

const usage = `usage: bridge <command> [flags]

commands:
  register     link this agent to a Slack installation on a broker
  run          poll the broker, deliver events locally, serve the local API
  unregister   remove this agent at the broker and clear its keys
  rotate-keys  replace this agent's keys at the broker (stop bridge run first)

Run "bridge <command> -h" for the flags of a command.
`

func main() {
	os.Exit(realMain(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func realMain(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "register":
		err = cmdRegister(ctx, args[1:], stdin, stdout, stderr)
	case "unregister":
		err = cmdUnregister(ctx, args[1:], stdout, stderr)
	case "run":
		err = cmdRun(ctx, args[1:], stderr)
	case "rotate-keys":
		err = cmdRotateKeys(ctx, args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "bridge: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if errors.Is(err, errUsage) {
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "bridge %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

var errUsage = errors.New("usage")

// terminalFd returns r's file descriptor when r is an interactive terminal.
func terminalFd(r io.Reader) (int, bool) {
	f, ok := r.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return 0, false
	}
	return int(f.Fd()), true
}

func cmdRegister(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	l, err := loadSettings("register", registerSettings(), args, stderr)
	if err != nil {
		return err
	}
	if err := l.Err(); err != nil {
		return err
	}
	brokerURL, orgID, token := l.Text("broker-url"), l.Text("org-id"), l.Text("registration-token")
	config, insecure := l.Text("config"), l.Bool("insecure-http")
	if fd, ok := terminalFd(stdin); ok {
		rd := bufio.NewReader(stdin)
		prompt := func(label string, v *string) {
			for *v == "" {
				fmt.Fprintf(stdout, "%s: ", label)
				line, err := rd.ReadString('\n')
				*v = strings.TrimSpace(line)
				if err != nil {
					return
				}
			}
		}
		prompt("Broker URL (e.g. https://broker.example.com)", &brokerURL)
		prompt("Org id (Slack team id, e.g. T0123ABCD)", &orgID)
		for token == "" {
			fmt.Fprint(stdout, "Registration token (not shown): ")
			b, err := term.ReadPassword(fd)
			fmt.Fprintln(stdout)
			if err != nil {
				return fmt.Errorf("reading the registration token: %w", err)
			}
			token = strings.TrimSpace(string(b))
		}
	}
	var missing []string
	if brokerURL == "" {
		missing = append(missing, "--broker-url")
	}
	if orgID == "" {
		missing = append(missing, "--org-id")
	}
	if token == "" {
		missing = append(missing, "--registration-token")
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing %s (the broker's install page shows the exact command)", strings.Join(missing, ", "))
	}
	if f, err := bridge.ReadEnvFile(config); err == nil {
		if tok, _ := f.Get(bridge.EnvAccessToken); tok != "" {
			fmt.Fprintf(stderr, "note: %s already holds a registration; it will be replaced (run `bridge unregister` first to also remove the old agent at the broker)\n", config)
		}
	}
	ctx, cancel := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer cancel()
	id, err := bridge.Register(ctx, bridge.RegisterOptions{
		BrokerURL: brokerURL, OrgID: orgID, RegistrationToken: token, ConfigPath: config, InsecureHTTP: insecure,
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Registered with %s for org %s.\n", strings.Join(id.BrokerURLs, ", "), id.OrgID)
	fmt.Fprintf(stdout, "Wrote %s (mode 0600; it holds your private keys and access token).\n", config)
	if !id.AccessTokenExpiresAt.IsZero() {
		fmt.Fprintf(stdout, "The access token expires at %s; register again before then.\n", id.AccessTokenExpiresAt.UTC().Format(time.RFC3339))
	}
	cfgFlag := ""
	if config != bridge.DefaultConfigPath() {
		cfgFlag = " --config " + config
	}
	fmt.Fprintf(stdout, "\nNext, start the bridge:\n\n  bridge run%s\n\n", cfgFlag)
	fmt.Fprintf(stdout, "then watch events with   curl -N http://127.0.0.1:7890/events\n")
	fmt.Fprintf(stdout, "and answer with          curl -X POST http://127.0.0.1:7890/send -H 'Content-Type: application/json' -d '{\"channel\":\"C123\",\"text\":\"hi\"}'\n")
	fmt.Fprintf(stdout, "(or forward events to your Slack app with --forward-url http://127.0.0.1:3000/slack/events --forward-signing-secret-file FILE)\n")
	return nil
}

func cmdUnregister(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	l, err := loadSettings("unregister", unregisterSettings(), args, stderr)
	if err != nil {
		return err
	}
	if err := l.Err(); err != nil {
		return err
	}
	config := l.Text("config")
	ctx, cancel := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer cancel()
	if err := bridge.Unregister(ctx, config, l.Bool("insecure-http"), l.Bool("force"), nil); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Unregistered: the broker removed this agent and its inbox; keys cleared from %s.\n", config)
	return nil
}

func cmdRun(ctx context.Context, args []string, stderr io.Writer) error {
	l, err := loadSettings("run", runSettings(), args, stderr)
	if err != nil {
		return err
	}
	wait := intIn(l, "wait-seconds", 1, 25)
	concurrency := intIn(l, "delivery-concurrency", 1, 64)
	forwardTimeout, perr := time.ParseDuration(l.Text("forward-timeout"))
	if perr == nil && forwardTimeout <= 0 {
		l.Problem("--forward-timeout must be positive")
	}
	if err := l.Err(); err != nil {
		return err
	}
	var level slog.Level
	_ = level.UnmarshalText([]byte(l.Text("log-level")))
	hopts := &slog.HandlerOptions{Level: level}
	logger := slog.New(slog.NewTextHandler(stderr, hopts))
	if l.Text("log-format") == "json" {
		logger = slog.New(slog.NewJSONHandler(stderr, hopts))
	}

	insecure := l.Bool("insecure-http")
	id, err := bridge.LoadIdentity(l.Text("config"), nil, insecure)
	if err != nil {
		return err
	}
	if u := l.Text("broker-url"); u != "" {
		if id.BrokerURLs, err = bridge.ParseBrokerURLs(u, insecure); err != nil {
			return err
		}
	}
	allowRemote := l.Bool("allow-remote")
	cfg := bridge.Config{
		Identity: *id, StateDir: l.Text("state-dir"), WaitSeconds: wait, MaxMessages: l.Int("max-messages"),
		BacklogMaxMessages: l.Int("backlog-max-messages"),
		ForwardURL:         l.Text("forward-url"), ForwardInteractivityURL: l.Text("forward-interactivity-url"),
		ForwardCommandsURL: l.Text("forward-commands-url"),
		Stream:             l.Bool("stream"), StreamBuffer: l.Int("stream-buffer"), AllowRemote: allowRemote,
		ForwardTimeout: forwardTimeout, DeliveryConcurrency: concurrency,
		SocketMode: l.Bool("socket-mode"), SocketModeAppID: l.Text("socket-mode-app-id"),
		ForwardSigningSecret: []byte(l.Text("forward-signing-secret")),
		LocalToken:           l.Text("local-token"),
	}
	for _, o := range strings.Split(l.Text("web-api-allow-origin"), ",") {
		if o = strings.TrimSpace(o); o != "" {
			cfg.WebAPIAllowedOrigins = append(cfg.WebAPIAllowedOrigins, o)
		}
	}
	listen := l.Text("listen")
	if err := bridge.CheckListenAddr(listen, allowRemote); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("local API: %w", err)
	}
	defer ln.Close()
	cfg.ListenAddr = ln.Addr().String() // the Host check needs the real port
	b, err := bridge.New(cfg, logger)
	if err != nil {
		return err
	}
	defer b.Close()

	api := bridge.NewLocalServer(b.Handler())
	go func() {
		if err := api.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("local API stopped", "err", err)
		}
	}()
	logger.Info("local API listening", "addr", ln.Addr().String(), "token", cfg.LocalToken != "")
	var metricsSrv *http.Server
	if metricsListen := l.Text("metrics-listen"); metricsListen != "" {
		mln, err := net.Listen("tcp", metricsListen)
		if err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", b.MetricsHandler())
		metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = metricsSrv.Serve(mln) }()
		logger.Info("metrics listening", "addr", mln.Addr().String())
	}

	var profSrv *pprofserve.Server
	if addr := l.Text("pprof-listen"); addr != "" {
		if profSrv, err = pprofserve.Start(addr, "--pprof-listen", logger); err != nil {
			return err
		}
	}

	ctx, cancel := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer cancel()
	runErr := b.Run(ctx)
	logger.Info("shutting down")
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	_ = b.Close() // ends SSE streams so Shutdown does not wait for them
	_ = api.Shutdown(sctx)
	if metricsSrv != nil {
		_ = metricsSrv.Shutdown(sctx)
	}
	_ = profSrv.Shutdown(sctx)
	return runErr
}
