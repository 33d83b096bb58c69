package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sealrelay/sealrelay/broker"
	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/internal/netutil"
	"github.com/sealrelay/sealrelay/internal/secretfile"
)

// Key file names written by `broker init` and read by `broker serve` and
// `broker keys rotate` from the keys directory.
const (
	boxKeyFile     = "broker-box.key"
	signingKeyFile = "broker-signing.key"
	masterKeysFile = "master.keys"
)

// envPrefix starts every environment variable the broker reads.
const envPrefix = "SEALRELAY_"

// Defaults of serve settings that other code refers to.
const (
	defaultListen            = ":8080"
	defaultSlackAPIURL       = "https://slack.com/api/"
	defaultSlackAuthorizeURL = "https://slack.com/oauth/v2/authorize"
	defaultDataDir           = "./data"
	defaultKeysDir           = "./keys"
	defaultRedisPrefix       = "sealrelay:"
	defaultAccessTokenTTL    = "90d"
	defaultSendRate          = "1"
	defaultSendBurst         = "20"
	defaultMaxPolls          = "4"
	defaultShutdownTimeout   = "30s"
	defaultLogLevel          = "info"
	defaultLogFormat         = "json"
)

// setting is one configuration value of `broker serve`: a flag --Name and
// an environment variable Env; a Secret setting can also be read from a file
// named by --Name-file or Env_FILE.
type setting struct {
	Name    string
	Env     string
	Default string
	Secret  bool
	Arg     string // placeholder in --help
	Usage   string
	// Fix says how to supply the setting when it is required and missing.
	Fix string
	// Required settings must resolve to a non-empty value.
	Required bool
	// Rotate marks settings that `broker keys rotate` reads too.
	Rotate bool
}

// settings lists every setting of `broker serve`, in --help order. Tests
// check the environment variable names against it (see knownEnvVars).
var settings = []setting{
	{Name: "listen", Env: "SEALRELAY_LISTEN", Default: defaultListen, Arg: "ADDR",
		Usage: "address of the public HTTP(S) listener (HOST:PORT; \":8080\" = every interface)"},
	{Name: "public-url", Env: "SEALRELAY_PUBLIC_URL", Required: true, Arg: "URL",
		Usage: "public base URL of this broker as Slack and bridges reach it, e.g. https://relay.example.com; used for the OAuth redirect (<URL>/slack/oauth/callback) and the register command shown after install",
		Fix:   "set it to the https:// address at which Slack and your bridges reach this broker"},
	{Name: "slack-client-id", Env: "SEALRELAY_SLACK_CLIENT_ID", Required: true, Arg: "ID",
		Usage: "Slack app Client ID",
		Fix:   "copy it from your Slack app's Basic Information page (App Credentials)"},
	{Name: "slack-client-secret", Env: "SEALRELAY_SLACK_CLIENT_SECRET", Secret: true, Required: true, Arg: "SECRET",
		Usage: "Slack app Client Secret",
		Fix:   "copy it from your Slack app's Basic Information page (App Credentials)"},
	{Name: "slack-signing-secret", Env: "SEALRELAY_SLACK_SIGNING_SECRET", Secret: true, Required: true, Arg: "SECRET",
		Usage: "Slack app Signing Secret (verifies Slack's webhooks)",
		Fix:   "copy it from your Slack app's Basic Information page"},
	{Name: "slack-api-url", Env: "SEALRELAY_SLACK_API_URL", Default: defaultSlackAPIURL, Arg: "URL",
		Usage: "base URL of the Slack Web API (change only for testing)"},
	{Name: "slack-authorize-url", Env: "SEALRELAY_SLACK_AUTHORIZE_URL", Default: defaultSlackAuthorizeURL, Arg: "URL",
		Usage: "Slack OAuth v2 authorize URL (change only for testing)"},
	{Name: "slack-bot-scopes", Env: "SEALRELAY_SLACK_BOT_SCOPES", Default: strings.Join(broker.DefaultBotScopes, ","), Arg: "LIST",
		Usage: "comma-separated bot scopes requested at install"},
	{Name: "redis-url", Env: "SEALRELAY_REDIS_URL", Secret: true, Rotate: true, Arg: "URL",
		Usage: "Redis URL (redis://[user:password@]host:port/db or rediss://...); empty = embedded single-node store in --data-dir"},
	{Name: "redis-prefix", Env: "SEALRELAY_REDIS_PREFIX", Default: defaultRedisPrefix, Rotate: true, Arg: "PREFIX",
		Usage: "prefix of every Redis key (state under PREFIX\"st:{state}:\", inboxes under PREFIX\"q:ib:{<agent>}:\")"},
	{Name: "redis-cluster-addrs", Env: "SEALRELAY_REDIS_CLUSTER_ADDRS", Rotate: true, Arg: "HOST:PORT,...",
		Usage: "seed nodes of a Redis Cluster (instead of --redis-url); auth with --redis-username / --redis-password"},
	{Name: "redis-sentinel-master", Env: "SEALRELAY_REDIS_SENTINEL_MASTER", Rotate: true, Arg: "NAME",
		Usage: "master name monitored by Redis Sentinel (instead of --redis-url); with --redis-sentinel-addrs"},
	{Name: "redis-sentinel-addrs", Env: "SEALRELAY_REDIS_SENTINEL_ADDRS", Rotate: true, Arg: "HOST:PORT,...",
		Usage: "Sentinel addresses for --redis-sentinel-master"},
	{Name: "redis-username", Env: "SEALRELAY_REDIS_USERNAME", Rotate: true, Arg: "USER",
		Usage: "ACL user of the cluster or Sentinel-managed nodes (with --redis-url put it in the URL)"},
	{Name: "redis-password", Env: "SEALRELAY_REDIS_PASSWORD", Secret: true, Rotate: true, Arg: "PASSWORD",
		Usage: "password of the cluster or Sentinel-managed nodes (with --redis-url put it in the URL)"},
	{Name: "redis-sentinel-password", Env: "SEALRELAY_REDIS_SENTINEL_PASSWORD", Secret: true, Rotate: true, Arg: "PASSWORD",
		Usage: "password of the Sentinels themselves (requirepass of sentinel.conf), if any"},
	{Name: "agents-per-org", Env: "SEALRELAY_AGENTS_PER_ORG", Default: "0", Arg: "N",
		Usage: "agents one workspace may have registered at once; a registration beyond it gets 409 \"workspace already active\" (0 = unlimited; 1 = the Baudbot broker's rule)"},
	{Name: "data-dir", Env: "SEALRELAY_DATA_DIR", Default: defaultDataDir, Rotate: true, Arg: "DIR",
		Usage: "directory of the embedded store (state.db, queue.db) when no Redis URL is set"},
	{Name: "keys-dir", Env: "SEALRELAY_KEYS_DIR", Default: defaultKeysDir, Rotate: true, Arg: "DIR",
		Usage: "directory holding " + boxKeyFile + ", " + signingKeyFile + " and " + masterKeysFile + " (written by `broker init`); used for every key not given otherwise"},
	{Name: "box-key", Env: "SEALRELAY_BOX_KEY", Secret: true, Arg: "BASE64",
		Usage: "broker X25519 private key (default: read <keys-dir>/" + boxKeyFile + ")"},
	{Name: "signing-key", Env: "SEALRELAY_SIGNING_KEY", Secret: true, Arg: "BASE64",
		Usage: "broker Ed25519 signing seed (default: read <keys-dir>/" + signingKeyFile + ")"},
	{Name: "master-keys", Env: "SEALRELAY_MASTER_KEYS", Secret: true, Rotate: true, Arg: "KEYRING",
		Usage: "master keyring, entries VERSION:BASE64 separated by newlines or commas (default: read <keys-dir>/" + masterKeysFile + ")"},
	{Name: "metrics-listen", Env: "SEALRELAY_METRICS_LISTEN", Arg: "ADDR",
		Usage: "address of the Prometheus /metrics listener (e.g. 127.0.0.1:9090); empty = off"},
	{Name: "admin-listen", Env: "SEALRELAY_ADMIN_LISTEN", Default: defaultAdminListen, Arg: "ADDR", Usage: adminListenUsage},
	{Name: "admin-token", Env: "SEALRELAY_ADMIN_TOKEN", Secret: true, Arg: "TOKEN", Usage: adminTokenUsage},
	{Name: "agent-idle-after", Env: "SEALRELAY_AGENT_IDLE_AFTER", Default: defaultAgentIdleAfter, Arg: "DURATION", Usage: agentIdleAfterUsage},
	{Name: "tls-cert", Env: "SEALRELAY_TLS_CERT", Arg: "FILE",
		Usage: "TLS certificate chain (PEM) for the public listener; with --tls-key. Empty = plain HTTP (put a TLS proxy in front)"},
	{Name: "tls-key", Env: "SEALRELAY_TLS_KEY", Arg: "FILE",
		Usage: "TLS private key (PEM) for --tls-cert"},
	{Name: "log-level", Env: "SEALRELAY_LOG_LEVEL", Default: defaultLogLevel, Arg: "LEVEL",
		Usage: "debug, info, warn or error"},
	{Name: "log-format", Env: "SEALRELAY_LOG_FORMAT", Default: defaultLogFormat, Arg: "FORMAT",
		Usage: "json or text"},
	{Name: "access-token-ttl", Env: "SEALRELAY_ACCESS_TOKEN_TTL", Default: defaultAccessTokenTTL, Arg: "DURATION",
		Usage: "lifetime of agent access tokens (Go duration, or days such as 90d)"},
	{Name: "send-rate", Env: "SEALRELAY_SEND_RATE", Default: defaultSendRate, Arg: "PER_SECOND",
		Usage: "sustained messages per second one agent may send (0 = no limit)"},
	{Name: "send-burst", Env: "SEALRELAY_SEND_BURST", Default: defaultSendBurst, Arg: "N",
		Usage: "burst of messages one agent may send at once"},
	{Name: "call-policy", Env: "SEALRELAY_CALL_POLICY", Arg: "FILE",
		Usage: "JSON file of per-agent /api/call rules (methods and channels); empty = the built-in default (messaging, reading, views, assistant threads, file uploads, auth.test)"},
	{Name: "call-rate-post", Env: "SEALRELAY_CALL_RATE_POST", Default: defaultCallRatePost, Arg: "RATE/BURST",
		Usage: "per-agent /api/call bucket for posting methods (chat.*, reactions.add/remove, ...): calls per second/burst (0 = no limit)"},
	{Name: "call-rate-read", Env: "SEALRELAY_CALL_RATE_READ", Default: defaultCallRateRead, Arg: "RATE/BURST",
		Usage: "per-agent /api/call bucket for reading methods (*.info, *.list, conversations.history, ...) (0 = no limit)"},
	{Name: "call-rate-other", Env: "SEALRELAY_CALL_RATE_OTHER", Default: defaultCallRateOther, Arg: "RATE/BURST",
		Usage: "per-agent /api/call bucket for every other method (views.*, assistant.threads.*, ...) (0 = no limit)"},
	{Name: "call-max-response", Env: "SEALRELAY_CALL_MAX_RESPONSE", Default: defaultCallMaxResponse, Arg: "BYTES",
		Usage: "largest Slack answer /api/call relays; a larger one is refused with 502 response_too_large, never truncated"},
	{Name: "sync-response-timeout", Env: "SEALRELAY_SYNC_RESPONSE_TIMEOUT", Default: defaultSyncResponseTimeout, Arg: "DURATION",
		Usage: "how long a slash command or modal submission is held for an agent's inbox.respond (only for orgs whose agents declared it; Slack gives up after 3s)"},
	{Name: "max-polls-per-agent", Env: "SEALRELAY_MAX_POLLS_PER_AGENT", Default: defaultMaxPolls, Arg: "N",
		Usage: "concurrent long polls allowed per agent (more are refused with 429)"},
	{Name: "shutdown-timeout", Env: "SEALRELAY_SHUTDOWN_TIMEOUT", Default: defaultShutdownTimeout, Arg: "DURATION",
		Usage: "how long SIGINT/SIGTERM waits for in-flight requests before closing connections"},
	{Name: "token-refresh-margin", Env: "SEALRELAY_TOKEN_REFRESH_MARGIN", Default: defaultTokenRefreshMargin, Arg: "DURATION",
		Usage: "how long before its expiry a rotating Slack bot token is refreshed (token rotation; tokens last 12 h)"},
}

// knownEnvVars returns every environment variable the broker reads, with
// the _FILE variants of secrets, in table order.
func knownEnvVars() []string {
	var out []string
	for _, s := range settings {
		out = append(out, s.Env)
		if s.Secret {
			out = append(out, s.Env+"_FILE")
		}
	}
	return out
}

func settingByName(name string) *setting {
	for i := range settings {
		if settings[i].Name == name {
			return &settings[i]
		}
	}
	panic("unknown setting " + name)
}

// names renders how a setting can be given, for error messages:
// "SEALRELAY_X (or --x, --x-file, SEALRELAY_X_FILE)".
func (s *setting) names() string {
	if s.Secret {
		return fmt.Sprintf("%s (or --%s / --%s-file / %s_FILE)", s.Env, s.Name, s.Name, s.Env)
	}
	return fmt.Sprintf("%s (or --%s)", s.Env, s.Name)
}

// configError collects every configuration problem found at start, one
// message per problem.
type configError struct{ problems []string }

func (e *configError) Error() string {
	if len(e.problems) == 1 {
		return e.problems[0]
	}
	return fmt.Sprintf("%d configuration problems:\n  - %s", len(e.problems), strings.Join(e.problems, "\n  - "))
}

// value is a resolved setting: the text and where it came from.
type value struct {
	text   string
	source string // "--x", "--x-file /p", "SEALRELAY_X", "SEALRELAY_X_FILE (/p)", "default"
	isSet  bool   // false when the default was used
}

// resolver resolves settings from parsed flags and the environment.
type resolver struct {
	fs       *flag.FlagSet
	set      map[string]bool
	getenv   func(string) string
	problems []string
}

func (r *resolver) problem(format string, args ...any) {
	r.problems = append(r.problems, fmt.Sprintf(format, args...))
}

// readSecretFile reads a *_FILE secret, trimming surrounding white space
// (secretfile.Read); an empty file is "" without error, for the caller to
// explain.
func readSecretFile(path string) (string, error) {
	b, err := secretfile.Read(path)
	if errors.Is(err, secretfile.ErrEmpty) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	defer crypto.Wipe(b)
	return string(b), nil
}

// get resolves one setting: a flag on the command line wins over the
// environment, which wins over the default. Giving a value and a file at the
// same level is a problem.
func (r *resolver) get(s *setting) value {
	flagVal, flagSet := r.fs.Lookup(s.Name).Value.String(), r.set[s.Name]
	var fileFlag string
	var fileFlagSet bool
	if s.Secret {
		fileFlag, fileFlagSet = r.fs.Lookup(s.Name+"-file").Value.String(), r.set[s.Name+"-file"]
	}
	switch {
	case flagSet && fileFlagSet:
		r.problem("--%s and --%s-file are both given: keep one", s.Name, s.Name)
		return value{}
	case flagSet:
		return value{text: strings.TrimSpace(flagVal), source: "--" + s.Name, isSet: true}
	case fileFlagSet:
		return r.fromFile(s, fileFlag, fmt.Sprintf("--%s-file %s", s.Name, fileFlag))
	}
	envVal := r.getenv(s.Env)
	envFile := ""
	if s.Secret {
		envFile = r.getenv(s.Env + "_FILE")
	}
	switch {
	case envVal != "" && envFile != "":
		r.problem("%s and %s_FILE are both set: keep one", s.Env, s.Env)
		return value{}
	case envVal != "":
		return value{text: strings.TrimSpace(envVal), source: s.Env, isSet: true}
	case envFile != "":
		return r.fromFile(s, envFile, fmt.Sprintf("%s_FILE (%s)", s.Env, envFile))
	}
	return value{text: s.Default, source: "default"}
}

func (r *resolver) fromFile(s *setting, path, source string) value {
	text, err := readSecretFile(path)
	if err != nil {
		r.problem("%s: cannot read the %s file: %v", source, s.Name, err)
		return value{}
	}
	if text == "" {
		r.problem("%s: the file is empty: put the %s in it", source, s.Name)
		return value{}
	}
	return value{text: text, source: source, isSet: true}
}

// required resolves a setting that must not be empty.
func (r *resolver) required(s *setting) value {
	v := r.get(s)
	if v.text == "" && v.source != "" {
		r.problem("%s is required: %s", s.names(), s.Fix)
	}
	return v
}

// describe names the source of a bad value; the value itself is quoted
// unless the setting is a secret.
func (s *setting) describe(v value) string {
	if s.Secret || strings.Contains(v.source, "_FILE") || strings.HasSuffix(v.source, "-file") {
		return v.source
	}
	src := v.source
	if src == "default" {
		src = "default --" + s.Name
	}
	return fmt.Sprintf("%s=%q", src, v.text)
}

// config is the validated configuration of `broker serve`.
type config struct {
	Listen             string
	PublicURL          string // no trailing slash
	SlackClientID      string
	SlackClientSecret  string
	SlackSigningSecret string
	SlackAPIURL        string // with trailing slash
	SlackAuthorizeURL  string
	SlackBotScopes     []string
	RedisURL           string
	RedisOptions       *redis.Options
	// RedisCluster and RedisFailover are set instead of RedisOptions by
	// --redis-cluster-addrs and --redis-sentinel-master (config_redis.go).
	RedisCluster  *redis.ClusterOptions
	RedisFailover *redis.FailoverOptions
	// AgentsPerOrg is --agents-per-org (0 = unlimited).
	AgentsPerOrg       int
	RedisPrefix        string
	DataDir            string
	KeysDir            string
	BoxKey             *crypto.BoxKeyPair
	SigningKey         *crypto.SigningKey
	Keyring            *crypto.Keyring
	MetricsListen      string
	TLSCert, TLSKey    string
	LogLevel           slog.Level
	LogFormat          string
	AccessTokenTTL     time.Duration
	SendRate           float64
	SendBurst          int
	MaxPollsPerAgent   int
	ShutdownTimeout    time.Duration
	TokenRefreshMargin time.Duration
	Call               callConfig
	// SyncResponseTimeout is --sync-response-timeout.
	SyncResponseTimeout time.Duration
	Admin               adminConfig // --admin-listen, --admin-token, --agent-idle-after (config_admin.go)
	// Warnings are logged once the logger exists.
	Warnings []string
}

// newFlagSet registers a string flag (and a -file flag for secrets) for
// every setting in list.
func newFlagSet(name string, list []*setting) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	for _, s := range list {
		fs.String(s.Name, "", s.Usage)
		if s.Secret {
			fs.String(s.Name+"-file", "", "file holding the "+s.Name)
		}
	}
	return fs
}

func allSettings() []*setting {
	out := make([]*setting, len(settings))
	for i := range settings {
		out[i] = &settings[i]
	}
	return out
}

// parseFlags parses args into fs and returns the resolver. flag.ErrHelp is
// passed through; other parse errors become usage errors.
func parseFlags(fs *flag.FlagSet, args []string, getenv func(string) string) (*resolver, error) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, usageError{fmt.Sprintf("%v (see --help)", err)}
	}
	if fs.NArg() > 0 {
		return nil, usageError{fmt.Sprintf("unexpected argument %q (see --help)", fs.Arg(0))}
	}
	r := &resolver{fs: fs, set: map[string]bool{}, getenv: getenv}
	fs.Visit(func(f *flag.Flag) { r.set[f.Name] = true })
	return r, nil
}

// loadConfig parses the flags of `broker serve` and the SEALRELAY_*
// environment (through getenv), reads secret and key files, and validates
// everything. All problems are reported together in one *configError.
func loadConfig(args []string, getenv func(string) string) (*config, error) {
	fs := newFlagSet("broker serve", allSettings())
	r, err := parseFlags(fs, args, getenv)
	if err != nil {
		return nil, err
	}
	c := &config{}
	get := func(name string) (*setting, value) {
		s := settingByName(name)
		return s, r.get(s)
	}

	s, v := get("listen")
	c.Listen = r.addr(s, v, false)
	s, v = get("metrics-listen")
	c.MetricsListen = r.addr(s, v, true)
	if c.MetricsListen != "" && c.MetricsListen == c.Listen && !strings.HasSuffix(c.Listen, ":0") {
		r.problem("--metrics-listen and --listen are both %q: the metrics listener needs its own address (e.g. 127.0.0.1:9090)", c.Listen)
	}

	s = settingByName("public-url")
	if v := r.required(s); v.text != "" {
		c.PublicURL = r.httpURL(s, v)
		if u, err := url.Parse(c.PublicURL); err == nil && u.Scheme == "http" && !netutil.IsLoopbackHost(u.Hostname()) {
			c.Warnings = append(c.Warnings, "public URL "+c.PublicURL+" is not https: Slack requires https redirect and request URLs")
		}
		c.PublicURL = strings.TrimRight(c.PublicURL, "/")
	}
	c.SlackClientID = r.token(settingByName("slack-client-id"), r.required(settingByName("slack-client-id")))
	c.SlackClientSecret = r.token(settingByName("slack-client-secret"), r.required(settingByName("slack-client-secret")))
	c.SlackSigningSecret = r.token(settingByName("slack-signing-secret"), r.required(settingByName("slack-signing-secret")))

	s, v = get("slack-api-url")
	c.SlackAPIURL = r.httpURL(s, v)
	if c.SlackAPIURL != "" && !strings.HasSuffix(c.SlackAPIURL, "/") {
		c.SlackAPIURL += "/"
	}
	s, v = get("slack-authorize-url")
	c.SlackAuthorizeURL = r.httpURL(s, v)
	s, v = get("slack-bot-scopes")
	c.SlackBotScopes = r.scopes(s, v)

	r.storage(c)

	s, v = get("keys-dir")
	c.KeysDir = v.text
	if c.KeysDir == "" && v.source != "" {
		r.problem("%s is empty: name the directory written by `broker init`", describeOrNames(s, v))
	}
	c.BoxKey, c.SigningKey, c.Keyring = r.keys(c.KeysDir, &c.Warnings)

	tlsCert, tlsKey := settingByName("tls-cert"), settingByName("tls-key")
	certV, keyV := r.get(tlsCert), r.get(tlsKey)
	switch {
	case certV.text == "" && keyV.text == "":
	case certV.text == "" || keyV.text == "":
		r.problem("%s and %s must be given together (or neither, behind a TLS-terminating proxy)", tlsCert.names(), tlsKey.names())
	default:
		if _, err := tls.LoadX509KeyPair(certV.text, keyV.text); err != nil {
			r.problem("%s / %s: cannot load the TLS certificate and key: %v", tlsCert.describe(certV), tlsKey.describe(keyV), err)
		}
		c.TLSCert, c.TLSKey = certV.text, keyV.text
	}

	s, v = get("log-level")
	if err := c.LogLevel.UnmarshalText([]byte(v.text)); err != nil || v.text == "" {
		r.problem("%s is not a log level: use debug, info, warn or error", s.describe(v))
	}
	s, v = get("log-format")
	switch strings.ToLower(v.text) {
	case "json", "text":
		c.LogFormat = strings.ToLower(v.text)
	default:
		r.problem("%s is not a log format: use json or text", s.describe(v))
	}

	s, v = get("access-token-ttl")
	if d, err := parseDays(v.text); err != nil || d < time.Minute || d > 3650*24*time.Hour {
		r.problem("%s is not a valid lifetime: use a duration between 1m and 3650d, such as 90d or 720h", s.describe(v))
	} else {
		c.AccessTokenTTL = d
	}
	s, v = get("send-rate")
	if f, err := strconv.ParseFloat(v.text, 64); err != nil || math.IsNaN(f) || f < 0 || f > 1e6 {
		r.problem("%s is not a rate: use messages per second such as 1 or 0.5 (0 = no limit)", s.describe(v))
	} else {
		c.SendRate = f
	}
	c.SendBurst = r.intRange(settingByName("send-burst"), r.get(settingByName("send-burst")), 1, 1_000_000)
	r.call(&c.Call)
	r.respond(c)
	c.AgentsPerOrg = r.intRange(settingByName("agents-per-org"), r.get(settingByName("agents-per-org")), 0, 1_000_000)
	c.MaxPollsPerAgent = r.intRange(settingByName("max-polls-per-agent"), r.get(settingByName("max-polls-per-agent")), 1, 1000)
	s, v = get("shutdown-timeout")
	if d, err := parseDays(v.text); err != nil || d <= 0 {
		r.problem("%s is not a positive duration: use e.g. 30s", s.describe(v))
	} else {
		c.ShutdownTimeout = d
	}
	c.TokenRefreshMargin = r.tokenRefreshMargin()
	r.admin(c)

	if len(r.problems) > 0 {
		return nil, &configError{problems: r.problems}
	}
	return c, nil
}

func describeOrNames(s *setting, v value) string {
	if v.source == "default" {
		return s.names()
	}
	return s.describe(v)
}

// storage resolves the Redis or embedded-store settings into c.
func (r *resolver) storage(c *config) {
	s, v := settingByName("redis-url"), r.get(settingByName("redis-url"))
	c.RedisURL = v.text
	if v.text != "" {
		opts, err := redis.ParseURL(v.text)
		if err != nil {
			// The URL may hold a password: never echo it.
			r.problem("%s is not a Redis URL (%v): use redis://[user:password@]host:6379/0 or rediss://... for TLS", v.source, redactURLError(err, v.text))
		} else {
			c.RedisOptions = opts
		}
	}
	ps, pv := settingByName("redis-prefix"), r.get(settingByName("redis-prefix"))
	if pv.text == "" || strings.ContainsAny(pv.text, " \t\r\n{}") {
		r.problem("%s is not a usable key prefix: use a short word without spaces or braces, such as sealrelay:", describeOrNames(ps, pv))
	}
	c.RedisPrefix = pv.text
	r.redisTopology(c)
	ds, dv := settingByName("data-dir"), r.get(settingByName("data-dir"))
	if !c.usesRedis() && dv.text == "" {
		r.problem("%s is empty and no %s is set: name a directory for the embedded store, or set a Redis URL", describeOrNames(ds, dv), s.Env)
	}
	c.DataDir = dv.text
}

func redactURLError(err error, secretURL string) string {
	msg := err.Error()
	if secretURL != "" {
		msg = strings.ReplaceAll(msg, secretURL, "<url>")
	}
	if u, perr := url.Parse(secretURL); perr == nil && u.User != nil {
		if p, ok := u.User.Password(); ok && p != "" {
			msg = strings.ReplaceAll(msg, p, "<password>")
		}
	}
	return msg
}

// keyText returns the text of key setting s resolved as v; when nothing is
// given it reads the file name in keysDir. It also returns where the text
// came from.
func (r *resolver) keyText(s *setting, v value, keysDir, name string) (string, string, bool) {
	if v.source == "" { // problem already reported
		return "", "", false
	}
	if v.isSet {
		return v.text, v.source, true
	}
	if keysDir == "" {
		return "", "", false
	}
	path := filepath.Join(keysDir, name)
	text, err := readSecretFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		r.problem("%s is not set and %s does not exist: run `broker init --dir %s` first, or point %s at the directory holding the keys",
			s.names(), path, keysDir, settingByName("keys-dir").names())
		return "", "", false
	case err != nil:
		r.problem("cannot read %s (%s): %v", path, s.Env, err)
		return "", "", false
	}
	return text, path, true
}

// keys loads the box key, signing key and master keyring.
func (r *resolver) keys(keysDir string, warnings *[]string) (*crypto.BoxKeyPair, *crypto.SigningKey, *crypto.Keyring) {
	var box *crypto.BoxKeyPair
	var sig *crypto.SigningKey
	var kr *crypto.Keyring
	boxS, sigS, mkS := settingByName("box-key"), settingByName("signing-key"), settingByName("master-keys")
	boxV, sigV, mkV := r.get(boxS), r.get(sigS), r.get(mkS)
	if keysDir != "" && !boxV.isSet && !sigV.isSet && !mkV.isSet && boxV.source != "" && sigV.source != "" && mkV.source != "" {
		_, e1 := os.Stat(filepath.Join(keysDir, boxKeyFile))
		_, e2 := os.Stat(filepath.Join(keysDir, signingKeyFile))
		_, e3 := os.Stat(filepath.Join(keysDir, masterKeysFile))
		if errors.Is(e1, os.ErrNotExist) && errors.Is(e2, os.ErrNotExist) && errors.Is(e3, os.ErrNotExist) {
			r.problem("no broker keys: %s holds none of %s, %s, %s and %s, %s, %s are not set: run `broker init --dir %s` once, or point %s at the directory holding the keys",
				keysDir, boxKeyFile, signingKeyFile, masterKeysFile, boxS.Env, sigS.Env, mkS.Env, keysDir, settingByName("keys-dir").names())
			return nil, nil, nil
		}
	}
	if text, src, ok := r.keyText(boxS, boxV, keysDir, boxKeyFile); ok {
		k, err := crypto.ParseBoxKeyPair(text)
		if err != nil {
			r.problem("%s: not a broker box key (%v): use the %s written by `broker init`", src, err, boxKeyFile)
		}
		box = k
		checkMode(src, warnings)
	}
	if text, src, ok := r.keyText(sigS, sigV, keysDir, signingKeyFile); ok {
		k, err := crypto.ParseSigningKey(text)
		if err != nil {
			r.problem("%s: not a broker signing key (%v): use the %s written by `broker init`", src, err, signingKeyFile)
		}
		sig = k
		checkMode(src, warnings)
	}
	if text, src, ok := r.keyText(mkS, mkV, keysDir, masterKeysFile); ok {
		k, err := crypto.ParseKeyring(text)
		if err != nil {
			r.problem("%s: not a master keyring (%v): use the %s written by `broker init` (lines VERSION:BASE64)", src, err, masterKeysFile)
		}
		kr = k
		checkMode(src, warnings)
	}
	return box, sig, kr
}

// checkMode warns when a key file named by src is readable by group or
// others.
func checkMode(src string, warnings *[]string) {
	path := src
	if i := strings.Index(src, "("); i >= 0 && strings.HasSuffix(src, ")") {
		path = src[i+1 : len(src)-1]
	} else if f, ok := strings.CutPrefix(src, "--"); ok {
		_, p, found := strings.Cut(f, " ")
		if !found {
			return
		}
		path = p
	}
	fi, err := os.Stat(path)
	if err != nil {
		return
	}
	if fi.Mode().Perm()&0o077 != 0 {
		*warnings = append(*warnings, fmt.Sprintf("key file %s has mode %v: restrict it with chmod 600", path, fi.Mode().Perm()))
	}
}

// addr validates a HOST:PORT listen address.
func (r *resolver) addr(s *setting, v value, optional bool) string {
	if v.text == "" {
		if !optional && v.source != "" {
			r.problem("%s is empty: use HOST:PORT such as :8080", describeOrNames(s, v))
		}
		return ""
	}
	_, port, err := net.SplitHostPort(v.text)
	if err == nil {
		_, err = strconv.ParseUint(port, 10, 16)
	}
	if err != nil {
		r.problem("%s is not a listen address: use HOST:PORT such as :8080 or 127.0.0.1:9090", s.describe(v))
		return ""
	}
	return v.text
}

// httpURL validates an absolute http(s) URL without query or fragment.
func (r *resolver) httpURL(s *setting, v value) string {
	if v.text == "" {
		return ""
	}
	u, err := url.Parse(v.text)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		r.problem("%s is not an absolute http(s) URL without query: use e.g. https://relay.example.com", s.describe(v))
		return ""
	}
	return v.text
}

var tokenPattern = regexp.MustCompile(`^[\x21-\x7e]+$`)

// token validates a credential: printable ASCII, no spaces.
func (r *resolver) token(s *setting, v value) string {
	if v.text == "" {
		return ""
	}
	if !tokenPattern.MatchString(v.text) || len(v.text) > 512 {
		r.problem("%s contains spaces or non-ASCII characters: copy the value again from your Slack app's Basic Information page", s.describe(v))
		return ""
	}
	return v.text
}

var scopePattern = regexp.MustCompile(`^[a-z][a-z0-9_.:-]*$`)

func (r *resolver) scopes(s *setting, v value) []string {
	var out []string
	for _, sc := range strings.Split(v.text, ",") {
		sc = strings.TrimSpace(sc)
		if sc == "" {
			continue
		}
		if !scopePattern.MatchString(sc) {
			r.problem("%s: %q is not a Slack scope: use a comma-separated list such as chat:write,app_mentions:read", s.describe(v), sc)
			return nil
		}
		out = append(out, sc)
	}
	if len(out) == 0 {
		r.problem("%s names no scope: the bot needs at least chat:write", describeOrNames(s, v))
	}
	return out
}

func (r *resolver) intRange(s *setting, v value, lo, hi int) int {
	n, err := strconv.Atoi(v.text)
	if err != nil || n < lo || n > hi {
		r.problem("%s is not a whole number from %d to %d", s.describe(v), lo, hi)
		return 0
	}
	return n
}

// parseDays parses a Go duration, also accepting a whole number of days
// ("90d").
func parseDays(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n < 0 || n > 100000 {
			return 0, fmt.Errorf("bad number of days %q", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	return time.ParseDuration(s)
}

// printSettingsHelp writes the flag/env table of list to w.
func printSettingsHelp(w io.Writer, list []*setting) {
	for _, s := range list {
		line := fmt.Sprintf("  --%s %s", s.Name, s.Arg)
		env := "env " + s.Env
		if s.Secret {
			line += fmt.Sprintf(", --%s-file FILE", s.Name)
			env += ", " + s.Env + "_FILE"
		}
		switch {
		case s.Required:
			env += "; required"
		case s.Default != "":
			env += fmt.Sprintf("; default %q", s.Default)
		}
		fmt.Fprintf(w, "%s\n        %s\n", line, env)
		for _, l := range wrapText(s.Usage, 70) {
			fmt.Fprintf(w, "        %s\n", l)
		}
	}
}

// wrapText splits text into lines of at most width bytes at spaces.
func wrapText(text string, width int) []string {
	var lines []string
	cur := ""
	for _, word := range strings.Fields(text) {
		if cur != "" && len(cur)+1+len(word) > width {
			lines = append(lines, cur)
			cur = ""
		}
		if cur != "" {
			cur += " "
		}
		cur += word
	}
	if cur != "" {
		lines = append(lines, cur)
	}
	return lines
}

const serveHelpIntro = `Usage: broker serve [flags]

Runs the broker. Every setting is a flag and an environment variable; a flag
given on the command line wins over the environment, which wins over the
default; an empty variable counts as unset. Every secret can also be read
from a file: --NAME-file FILE or SEALRELAY_NAME_FILE=FILE (Docker/systemd
secrets; surrounding white space is trimmed). Giving a value and a file for
the same setting at the same level is an error. At start the broker refuses to
run when stored Slack tokens use a master key version its keyring lacks. Without Redis the broker keeps its state and inboxes in
--data-dir (one process only); with --redis-url, --redis-cluster-addrs or
--redis-sentinel-master (exactly one) any number of replicas can run side by
side.

Settings:
`

const serveHelpOutro = `
Endpoints: the public listener serves /slack/*, /api/*, /healthz and /readyz;
/metrics is served only on --metrics-listen. SIGINT or SIGTERM stops the
broker gracefully (long polls are released, in-flight requests finish within
--shutdown-timeout).
`

func printServeHelp(w io.Writer) {
	fmt.Fprint(w, serveHelpIntro)
	printSettingsHelp(w, allSettings())
	fmt.Fprint(w, serveHelpOutro)
}
