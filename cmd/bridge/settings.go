package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/sealrelay/sealrelay/bridge"
	"github.com/sealrelay/sealrelay/internal/pprofserve"
	"github.com/sealrelay/sealrelay/internal/settings"
)

// The bridge's settings tables (internal/settings): every setting is a flag
// and, except the one-shot switches of register and unregister, an
// environment variable; secrets can also be files (--NAME-file,
// NAME_FILE). internal/deploycheck checks docs/operations.md against them.

// configSetting is --config, shared by every command.
func configSetting(usage string) settings.Setting {
	return settings.Setting{Name: "config", Env: "SEALRELAY_BRIDGE_CONFIG", Default: bridge.DefaultConfigPath(), Arg: "FILE", Usage: usage}
}

func insecureSetting() settings.Setting {
	return settings.Setting{Name: "insecure-http", Env: "SEALRELAY_BRIDGE_INSECURE_HTTP", Bool: true, Default: "false", Check: settings.Bool,
		Usage: "allow a plain http:// broker URL that is not loopback (the token travels in clear)"}
}

// registerSettings are the settings of `bridge register`.
func registerSettings() []*settings.Setting {
	return settings.Pointers([]settings.Setting{
		{Name: "broker-url", Env: bridge.EnvBrokerURL, Arg: "URL",
			Usage: "broker base URL (comma-separated for several replicas)"},
		{Name: "org-id", Aliases: []string{"workspace-id"}, Arg: "ID",
			Usage: "Slack installation id (team id such as T0123ABCD), shown on the install page"},
		{Name: "registration-token", Aliases: []string{"auth-code"}, Secret: true, Arg: "TOKEN",
			Usage: "one-time registration token shown at the end of the Slack install"},
		configSetting("configuration file to write (mode 0600)"),
		insecureSetting(),
	})
}

// unregisterSettings are the settings of `bridge unregister`.
func unregisterSettings() []*settings.Setting {
	return settings.Pointers([]settings.Setting{
		configSetting("configuration file written by register"),
		insecureSetting(),
		{Name: "force", Bool: true, Default: "false", Check: settings.Bool,
			Usage: "clear the local keys even when the broker call fails"},
	})
}

// runSettings are the settings of `bridge run`.
func runSettings() []*settings.Setting {
	return settings.Pointers([]settings.Setting{
		configSetting("configuration file written by register (variables from the environment win)"),
		{Name: "broker-url", Env: bridge.EnvBrokerURL, Arg: "URL",
			Usage: "broker base URL (comma-separated replicas); overrides the file's"},
		insecureSetting(),
		{Name: "state-dir", Env: "SEALRELAY_BRIDGE_STATE_DIR", Default: bridge.DefaultStateDir(), Arg: "DIR",
			Usage: "directory of the persistent de-duplication store and the stream spool"},
		{Name: "listen", Env: "SEALRELAY_BRIDGE_LISTEN", Default: bridge.DefaultListenAddr, Arg: "ADDR", Check: settings.ListenAddr,
			Usage: "local API address"},
		{Name: "allow-remote", Env: "SEALRELAY_BRIDGE_ALLOW_REMOTE", Bool: true, Default: "false", Check: settings.Bool,
			Usage: "allow a non-loopback --listen address; turns off the Host check (use --local-token-file too)"},
		{Name: "local-token", Env: "SEALRELAY_BRIDGE_LOCAL_TOKEN", Secret: true, Arg: "TOKEN",
			Usage: "bearer token every local API request must carry (prefer the file: flags show in ps)"},
		{Name: "forward-url", Env: "SEALRELAY_FORWARD_URL", Arg: "URL",
			Usage: "POST each Slack request, signed like Slack would, to this URL (e.g. http://127.0.0.1:3000/slack/events)"},
		{Name: "forward-interactivity-url", Env: "SEALRELAY_FORWARD_INTERACTIVITY_URL", Arg: "URL",
			Usage: "URL for interactivity payloads (default --forward-url)"},
		{Name: "forward-commands-url", Env: "SEALRELAY_FORWARD_COMMANDS_URL", Arg: "URL",
			Usage: "URL for slash commands (default --forward-url)"},
		{Name: "forward-signing-secret", Env: "SEALRELAY_FORWARD_SIGNING_SECRET", Secret: true, Arg: "SECRET",
			Usage: "signing secret for forwarded requests (prefer the file: flags show in ps)"},
		{Name: "forward-timeout", Env: "SEALRELAY_FORWARD_TIMEOUT", Default: "3s", Arg: "DURATION", Check: checkDuration,
			Usage: "time the local app has to answer a forwarded request before it is retried with X-Slack-Retry-Reason: http_timeout (Slack's is 3s)"},
		{Name: "delivery-concurrency", Env: "SEALRELAY_BRIDGE_DELIVERY_CONCURRENCY", Default: "4", Arg: "N", Check: settings.Int,
			Usage: "channels delivered to at once (1-64); events of one channel stay in order"},
		{Name: "socket-mode", Env: "SEALRELAY_SOCKET_MODE", Bool: true, Default: "false", Check: settings.Bool,
			Usage: "the app uses Socket Mode: while no Socket Mode client is connected, events stay at the broker instead of going to --forward-url or the stream"},
		{Name: "socket-mode-app-id", Env: "SEALRELAY_SOCKET_MODE_APP_ID", Arg: "ID",
			Usage: "app id named in the Socket Mode hello (default: the api_app_id of the events)"},
		{Name: "stream", Env: "SEALRELAY_BRIDGE_STREAM", Bool: true, Default: "true", Check: settings.Bool,
			Usage: "serve events as Server-Sent Events on GET /events (--stream=false to turn off)"},
		{Name: "stream-buffer", Env: "SEALRELAY_BRIDGE_STREAM_BUFFER", Default: "1000", Arg: "N", Check: settings.Int,
			Usage: "events kept for SSE consumers that connect late (mirrored to an encrypted spool in --state-dir; with the stream as the only sink, unread events are never evicted: the bridge stops pulling until a consumer reads)"},
		{Name: "wait-seconds", Env: "SEALRELAY_BRIDGE_WAIT_SECONDS", Default: "20", Arg: "N", Check: settings.Int,
			Usage: "long-poll wait in seconds (1-25)"},
		{Name: "max-messages", Env: "SEALRELAY_BRIDGE_MAX_MESSAGES", Default: "10", Arg: "N", Check: settings.Int,
			Usage: "messages per pull (1-100)"},
		{Name: "backlog-max-messages", Env: "SEALRELAY_BRIDGE_BACKLOG_MAX_MESSAGES", Default: "100", Arg: "N", Check: settings.Int,
			Usage: "messages per pull after a pull came back full, while a backlog drains (--max-messages to 100)"},
		{Name: "log-level", Env: "SEALRELAY_LOG_LEVEL", Default: "info", Arg: "LEVEL", Check: checkLogLevel,
			Usage: "debug, info, warn or error"},
		{Name: "log-format", Env: "SEALRELAY_LOG_FORMAT", Default: "text", Arg: "FORMAT", Check: checkLogFormat,
			Usage: "text or json"},
		{Name: "metrics-listen", Env: "SEALRELAY_BRIDGE_METRICS_LISTEN", Arg: "ADDR", Check: settings.Optional(settings.ListenAddr),
			Usage: "serve Prometheus metrics on this address (off when empty)"},
		{Name: "pprof-listen", Env: "SEALRELAY_BRIDGE_PPROF_LISTEN", Arg: "ADDR", Check: pprofserve.CheckListen,
			Usage: "serve Go runtime profiles (/debug/pprof/) on this loopback address, e.g. 127.0.0.1:6061 (off when empty)"},
		{Name: "web-api-allow-origin", Env: "SEALRELAY_BRIDGE_WEB_API_ALLOW_ORIGINS", Arg: "ORIGINS",
			Usage: "comma-separated web origins (scheme://host:port) whose browser requests the Slack Web API on /api/<method> answers (none: browsers are refused)"},
	})
}

func checkDuration(text string) error {
	if _, err := time.ParseDuration(text); err != nil {
		return errors.New("is not a duration: use e.g. 3s")
	}
	return nil
}

func checkLogLevel(text string) error {
	var l slog.Level
	if l.UnmarshalText([]byte(text)) != nil {
		return errors.New("is not a log level: want debug, info, warn or error")
	}
	return nil
}

func checkLogFormat(text string) error {
	if text != "text" && text != "json" {
		return errors.New("is not a log format: want text or json")
	}
	return nil
}

// loadSettings parses args and the environment into list for command
// name. -h prints the listing to w and returns flag.ErrHelp; a usage
// mistake is printed and returned as errUsage; problems are left in the
// loader (Err).
func loadSettings(name string, list []*settings.Setting, args []string, w io.Writer) (*settings.Loader, error) {
	l, err := settings.Load("bridge "+name, list, args, os.Getenv)
	var ue *settings.UsageError
	switch {
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprintf(w, "Usage: bridge %s [flags]\n\nA flag wins over its environment variable, which wins over the default;\nevery secret can also be read from a file (--NAME-file or NAME_FILE).\n\n", name)
		settings.Help(w, list)
		return nil, err
	case errors.As(err, &ue):
		fmt.Fprintln(w, ue.Msg)
		return nil, errUsage
	case err != nil:
		return nil, err
	}
	return l, nil
}

// intIn records a problem unless setting name is from lo to hi, with the
// message the bridge always gave ("--NAME must be LO-HI").
func intIn(l *settings.Loader, name string, lo, hi int) int {
	s, v := l.Get(name)
	n, err := strconv.Atoi(v.Text)
	if err == nil && (n < lo || n > hi) {
		if v.Source == "--"+name {
			l.Problem("--%s must be %d-%d", name, lo, hi)
		} else {
			l.Problem("--%s must be %d-%d (%s)", name, lo, hi, s.Describe(v))
		}
	}
	return n
}
