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
	"github.com/sealrelay/sealrelay/internal/secretfile"
	"golang.org/x/term"
)

const usage = `usage: bridge <command> [flags]

commands:
  register     link this agent to a Slack installation on a broker
  run          poll the broker, deliver events locally, serve the local API
  unregister   remove this agent at the broker and clear its keys

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
	fs := flag.NewFlagSet("bridge register", flag.ContinueOnError)
	fs.SetOutput(stderr)
	brokerURL := fs.String("broker-url", os.Getenv(bridge.EnvBrokerURL), "broker base URL (comma-separated for several replicas); env "+bridge.EnvBrokerURL)
	var orgID, token string
	fs.StringVar(&orgID, "org-id", "", "Slack installation id (team id such as T0123ABCD), shown on the install page")
	fs.StringVar(&orgID, "workspace-id", "", "alias of --org-id")
	fs.StringVar(&token, "registration-token", "", "one-time registration token shown at the end of the Slack install")
	fs.StringVar(&token, "auth-code", "", "alias of --registration-token")
	config := fs.String("config", bridge.DefaultConfigPath(), "configuration file to write (mode 0600)")
	insecure := fs.Bool("insecure-http", false, "allow a plain http:// broker URL that is not loopback (the token travels in clear)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "unexpected argument %q\n", fs.Arg(0))
		return errUsage
	}
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
		prompt("Broker URL (e.g. https://broker.example.com)", brokerURL)
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
	if *brokerURL == "" {
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
	if f, err := bridge.ReadEnvFile(*config); err == nil {
		if tok, _ := f.Get(bridge.EnvAccessToken); tok != "" {
			fmt.Fprintf(stderr, "note: %s already holds a registration; it will be replaced (run `bridge unregister` first to also remove the old agent at the broker)\n", *config)
		}
	}
	ctx, cancel := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer cancel()
	id, err := bridge.Register(ctx, bridge.RegisterOptions{
		BrokerURL: *brokerURL, OrgID: orgID, RegistrationToken: token, ConfigPath: *config, InsecureHTTP: *insecure,
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Registered with %s for org %s.\n", strings.Join(id.BrokerURLs, ", "), id.OrgID)
	fmt.Fprintf(stdout, "Wrote %s (mode 0600; it holds your private keys and access token).\n", *config)
	if !id.AccessTokenExpiresAt.IsZero() {
		fmt.Fprintf(stdout, "The access token expires at %s; register again before then.\n", id.AccessTokenExpiresAt.UTC().Format(time.RFC3339))
	}
	cfgFlag := ""
	if *config != bridge.DefaultConfigPath() {
		cfgFlag = " --config " + *config
	}
	fmt.Fprintf(stdout, "\nNext, start the bridge:\n\n  bridge run%s\n\n", cfgFlag)
	fmt.Fprintf(stdout, "then watch events with   curl -N http://127.0.0.1:7890/events\n")
	fmt.Fprintf(stdout, "and answer with          curl -X POST http://127.0.0.1:7890/send -H 'Content-Type: application/json' -d '{\"channel\":\"C123\",\"text\":\"hi\"}'\n")
	fmt.Fprintf(stdout, "(or forward events to your Slack app with --forward-url http://127.0.0.1:3000/slack/events --forward-signing-secret-file FILE)\n")
	return nil
}

func cmdUnregister(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bridge unregister", flag.ContinueOnError)
	fs.SetOutput(stderr)
	config := fs.String("config", bridge.DefaultConfigPath(), "configuration file written by register")
	insecure := fs.Bool("insecure-http", false, "allow a plain http:// broker URL that is not loopback")
	force := fs.Bool("force", false, "clear the local keys even when the broker call fails")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, cancel := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer cancel()
	if err := bridge.Unregister(ctx, *config, *insecure, *force, nil); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Unregistered: the broker removed this agent and its inbox; keys cleared from %s.\n", *config)
	return nil
}

// envOr returns the environment variable name, or def.
func envOr(name, def string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return def
}

func cmdRun(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("bridge run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	config := fs.String("config", envOr("SEALRELAY_BRIDGE_CONFIG", bridge.DefaultConfigPath()), "configuration file written by register (variables from the environment win); env SEALRELAY_BRIDGE_CONFIG")
	brokerURL := fs.String("broker-url", "", "override "+bridge.EnvBrokerURL+" (comma-separated replicas)")
	insecure := fs.Bool("insecure-http", false, "allow a plain http:// broker URL that is not loopback")
	stateDir := fs.String("state-dir", envOr("SEALRELAY_BRIDGE_STATE_DIR", bridge.DefaultStateDir()), "directory of the persistent de-duplication store; env SEALRELAY_BRIDGE_STATE_DIR")
	listen := fs.String("listen", envOr("SEALRELAY_BRIDGE_LISTEN", bridge.DefaultListenAddr), "local API address; env SEALRELAY_BRIDGE_LISTEN")
	allowRemote := fs.Bool("allow-remote", false, "allow a non-loopback --listen address; turns off the Host check (use --local-token-file too)")
	tokenFile := fs.String("local-token-file", envOr("SEALRELAY_BRIDGE_LOCAL_TOKEN_FILE", ""), "file holding a bearer token every local API request must carry; env SEALRELAY_BRIDGE_LOCAL_TOKEN_FILE")
	forwardURL := fs.String("forward-url", envOr("SEALRELAY_FORWARD_URL", ""), "POST each Slack request, signed like Slack would, to this URL (e.g. http://127.0.0.1:3000/slack/events); env SEALRELAY_FORWARD_URL")
	forwardInteractive := fs.String("forward-interactivity-url", envOr("SEALRELAY_FORWARD_INTERACTIVITY_URL", ""), "URL for interactivity payloads (default --forward-url)")
	forwardCommands := fs.String("forward-commands-url", envOr("SEALRELAY_FORWARD_COMMANDS_URL", ""), "URL for slash commands (default --forward-url)")
	secret := fs.String("forward-signing-secret", "", "signing secret for forwarded requests (prefer the file or env SEALRELAY_FORWARD_SIGNING_SECRET: flags show in ps)")
	secretFile := fs.String("forward-signing-secret-file", envOr("SEALRELAY_FORWARD_SIGNING_SECRET_FILE", ""), "file holding the forward signing secret; env SEALRELAY_FORWARD_SIGNING_SECRET_FILE")
	stream := fs.Bool("stream", true, "serve events as Server-Sent Events on GET /events")
	streamBuffer := fs.Int("stream-buffer", 1000, "events kept for SSE consumers that connect late (mirrored to an encrypted spool in --state-dir; with the stream as the only sink, unread events are never evicted: the bridge stops pulling until a consumer reads)")
	forwardTimeout := fs.Duration("forward-timeout", envDuration("SEALRELAY_FORWARD_TIMEOUT", 3*time.Second), "time the local app has to answer a forwarded request before it is retried with X-Slack-Retry-Reason: http_timeout (Slack's is 3s); env SEALRELAY_FORWARD_TIMEOUT")
	concurrency := fs.Int("delivery-concurrency", 4, "channels delivered to at once (1-64); events of one channel stay in order")
	socketMode := fs.Bool("socket-mode", envOr("SEALRELAY_SOCKET_MODE", "") == "1", "the app uses Socket Mode: while no Socket Mode client is connected, events stay at the broker instead of going to --forward-url or the stream; env SEALRELAY_SOCKET_MODE=1")
	socketAppID := fs.String("socket-mode-app-id", envOr("SEALRELAY_SOCKET_MODE_APP_ID", ""), "app id named in the Socket Mode hello (default: the api_app_id of the events)")
	wait := fs.Int("wait-seconds", 20, "long-poll wait in seconds (1-25)")
	maxMessages := fs.Int("max-messages", 10, "messages per pull (1-100)")
	backlogMax := fs.Int("backlog-max-messages", 100, "messages per pull after a pull came back full, while a backlog drains (--max-messages to 100)")
	logLevel := fs.String("log-level", envOr("SEALRELAY_LOG_LEVEL", "info"), "debug, info, warn or error; env SEALRELAY_LOG_LEVEL")
	logFormat := fs.String("log-format", envOr("SEALRELAY_LOG_FORMAT", "text"), "text or json")
	metricsListen := fs.String("metrics-listen", envOr("SEALRELAY_BRIDGE_METRICS_LISTEN", ""), "serve Prometheus metrics on this address (off when empty)")
	webAPIOrigins := fs.String("web-api-allow-origin", envOr("SEALRELAY_BRIDGE_WEB_API_ALLOW_ORIGINS", ""), "comma-separated web origins (scheme://host:port) whose browser requests the Slack Web API on /api/<method> answers (none: browsers are refused); env SEALRELAY_BRIDGE_WEB_API_ALLOW_ORIGINS")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "unexpected argument %q\n", fs.Arg(0))
		return errUsage
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level %q: want debug, info, warn or error", *logLevel)
	}
	hopts := &slog.HandlerOptions{Level: level}
	var logger *slog.Logger
	switch *logFormat {
	case "text":
		logger = slog.New(slog.NewTextHandler(stderr, hopts))
	case "json":
		logger = slog.New(slog.NewJSONHandler(stderr, hopts))
	default:
		return fmt.Errorf("--log-format %q: want text or json", *logFormat)
	}

	id, err := bridge.LoadIdentity(*config, nil, *insecure)
	if err != nil {
		return err
	}
	if *brokerURL != "" {
		if id.BrokerURLs, err = bridge.ParseBrokerURLs(*brokerURL, *insecure); err != nil {
			return err
		}
	}
	if *wait < 1 || *wait > 25 {
		return errors.New("--wait-seconds must be 1-25")
	}
	if *concurrency < 1 || *concurrency > 64 {
		return errors.New("--delivery-concurrency must be 1-64")
	}
	if *forwardTimeout <= 0 {
		return errors.New("--forward-timeout must be positive")
	}
	cfg := bridge.Config{
		Identity: *id, StateDir: *stateDir, WaitSeconds: *wait, MaxMessages: *maxMessages,
		BacklogMaxMessages: *backlogMax,
		ForwardURL:         *forwardURL, ForwardInteractivityURL: *forwardInteractive, ForwardCommandsURL: *forwardCommands,
		Stream: *stream, StreamBuffer: *streamBuffer, AllowRemote: *allowRemote,
		ForwardTimeout: *forwardTimeout, DeliveryConcurrency: *concurrency,
		SocketMode: *socketMode, SocketModeAppID: *socketAppID,
	}
	for _, o := range strings.Split(*webAPIOrigins, ",") {
		if o = strings.TrimSpace(o); o != "" {
			cfg.WebAPIAllowedOrigins = append(cfg.WebAPIAllowedOrigins, o)
		}
	}
	if cfg.ForwardSigningSecret, err = loadSecret(*secret, *secretFile, "SEALRELAY_FORWARD_SIGNING_SECRET"); err != nil {
		return err
	}
	if *tokenFile != "" {
		tok, err := secretfile.Read(*tokenFile)
		if err != nil {
			return fmt.Errorf("--local-token-file: %w", err)
		}
		cfg.LocalToken = string(tok)
	}
	if err := bridge.CheckListenAddr(*listen, *allowRemote); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
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
	if *metricsListen != "" {
		mln, err := net.Listen("tcp", *metricsListen)
		if err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", b.MetricsHandler())
		metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = metricsSrv.Serve(mln) }()
		logger.Info("metrics listening", "addr", mln.Addr().String())
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
	return runErr
}

// envDuration reads a duration from the environment variable name, or
// returns def when it is unset or malformed.
func envDuration(name string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(name)); err == nil && d > 0 {
		return d
	}
	return def
}

func loadSecret(flagValue, file, env string) ([]byte, error) {
	n := 0
	for _, s := range []string{flagValue, file, os.Getenv(env)} {
		if s != "" {
			n++
		}
	}
	if n > 1 {
		return nil, fmt.Errorf("give the forward signing secret once: --forward-signing-secret, --forward-signing-secret-file or %s", env)
	}
	switch {
	case flagValue != "":
		return []byte(flagValue), nil
	case file != "":
		b, err := secretfile.Read(file)
		if err != nil {
			return nil, fmt.Errorf("--forward-signing-secret-file: %w", err)
		}
		return b, nil
	default:
		return []byte(os.Getenv(env)), nil
	}
}
