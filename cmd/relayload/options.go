package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Hard bounds of one run.
const (
	maxEvents      = 1_000_000
	maxDuration    = time.Hour
	maxConcurrency = 256
	maxAgents      = 64
	maxChannels    = 10_000
	maxRate        = 100_000
)

// options configure one run.
type options struct {
	// Against an existing deployment.
	BrokerURL         string
	SigningSecretFile string
	TeamID            string
	SSEURLs           []string
	ForwardListen     string
	ForwardSecretFile string

	// Spawn mode.
	Spawn     bool
	RedisURL  string
	BrokerBin string
	BridgeBin string
	Agents    int
	Consume   string // "sse" or "forward"
	KeepData  bool
	Profile   string // directory for the CPU profiles; "" = off

	// Load shape.
	Rate         float64 // events per second; 0 = flat out
	Concurrency  int
	Duration     time.Duration
	Events       int
	Channels     int
	DrainTimeout time.Duration

	PIDs        []int
	JSON        bool
	AllowRemote bool
}

// rateFlag parses "200", "200/s" or "0".
type rateFlag struct{ v *float64 }

func (r rateFlag) String() string {
	if r.v == nil {
		return "0"
	}
	return strconv.FormatFloat(*r.v, 'f', -1, 64) + "/s"
}

func (r rateFlag) Set(s string) error {
	n, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(s), "/s"), 64)
	if err != nil || n < 0 || n > maxRate || n != n {
		return fmt.Errorf("want events per second, 0-%d (e.g. 200/s; 0 = flat out)", maxRate)
	}
	*r.v = n
	return nil
}

// pidsFlag collects --pid values (repeatable, or comma-separated).
type pidsFlag struct{ v *[]int }

func (p pidsFlag) String() string { return "" }

func (p pidsFlag) Set(s string) error {
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return fmt.Errorf("%q is not a process id", f)
		}
		*p.v = append(*p.v, n)
	}
	return nil
}

// newFlagSet defines every flag of relayload on o (sse receives the raw
// --sse-url list).
func newFlagSet(o *options, sse *string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("relayload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.BrokerURL, "broker-url", "", "broker to load (an existing deployment; loopback unless --allow-remote)")
	fs.StringVar(&o.SigningSecretFile, "signing-secret-file", "", "file holding the Slack app's signing secret (the broker's --slack-signing-secret)")
	fs.StringVar(&o.TeamID, "team-id", "", "team (or enterprise) id of an org installed on that broker")
	fs.StringVar(sse, "sse-url", "", "consume a bridge's Server-Sent Events, e.g. http://127.0.0.1:7890/events (comma-separated for several bridges)")
	fs.StringVar(&o.ForwardListen, "forward-listen", "", "consume a bridge's forwarded webhooks on this loopback address (bridge run --forward-url http://ADDR/slack/events)")
	fs.StringVar(&o.ForwardSecretFile, "forward-signing-secret-file", "", "file holding the bridge's forward signing secret (verifies the forwarded requests)")
	fs.BoolVar(&o.Spawn, "spawn", false, "start a broker, a simulated Slack and --agents bridges, install and register them, then load them")
	fs.StringVar(&o.RedisURL, "redis-url", "", "spawn: run the broker on this Redis (under a unique key prefix, removed afterwards; empty = embedded store); existing deployment: its Redis, only read (INFO) for the redis CPU row")
	fs.StringVar(&o.BrokerBin, "broker-bin", "", "spawn: broker binary (empty = go build ./cmd/broker)")
	fs.StringVar(&o.BridgeBin, "bridge-bin", "", "spawn: bridge binary (empty = go build ./cmd/bridge)")
	fs.IntVar(&o.Agents, "agents", 1, "spawn: bridges registered on the one org (every event fans out to each)")
	fs.StringVar(&o.Consume, "consume", "sse", "spawn: how the harness consumes the bridges: sse or forward")
	fs.BoolVar(&o.KeepData, "keep-data", false, "spawn: keep the temporary directory (logs, keys, stores)")
	fs.StringVar(&o.Profile, "profile", "", "spawn: run the broker and bridges with --pprof-listen and write a CPU profile of each over the posting time to this directory (DIR/broker.pprof, DIR/bridge-N.pprof)")
	fs.Var(rateFlag{&o.Rate}, "rate", "events per second offered, N or N/s (0 = flat out)")
	fs.IntVar(&o.Concurrency, "concurrency", 4, "concurrent posters")
	fs.DurationVar(&o.Duration, "duration", 10*time.Second, "how long to post (ignored with --events)")
	fs.IntVar(&o.Events, "events", 0, fmt.Sprintf("post exactly this many events (0 = for --duration; at most %d)", maxEvents))
	fs.IntVar(&o.Channels, "channels", 0, "channels the events spread over, each posted in order by one poster (0 = --concurrency)")
	fs.DurationVar(&o.DrainTimeout, "drain-timeout", 30*time.Second, "how long to wait after posting for every event to be delivered")
	fs.Var(pidsFlag{&o.PIDs}, "pid", "process whose CPU time per event to report (repeatable; the spawned ones are added)")
	fs.BoolVar(&o.JSON, "json", false, "print the report as JSON")
	fs.BoolVar(&o.AllowRemote, "allow-remote", false, "allow non-loopback broker and bridge URLs")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage:\n"+
			"  relayload --spawn [--redis-url URL] [--agents N] [--consume sse|forward] [load flags]\n"+
			"  relayload --broker-url URL --signing-secret-file F --team-id T (--sse-url URL | --forward-listen ADDR --forward-signing-secret-file F) [load flags]\n\n"+
			"Posts Slack-signed webhooks to a broker, consumes them through real bridges and reports\n"+
			"throughput, latencies, loss/duplicates/reordering and CPU per event. Exits 1 on any\n"+
			"loss, duplicate, reordering or refused webhook.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	return fs
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	var sse string
	fs := newFlagSet(&o, &sse, stderr)
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q (see --help)", fs.Arg(0))
	}
	for _, u := range strings.Split(sse, ",") {
		if u = strings.TrimSpace(u); u != "" {
			o.SSEURLs = append(o.SSEURLs, u)
		}
	}
	if o.Channels == 0 {
		o.Channels = o.Concurrency
	}
	return o, o.validate()
}

// validate checks the combination of flags.
func (o *options) validate() error {
	switch {
	case o.Concurrency < 1 || o.Concurrency > maxConcurrency:
		return fmt.Errorf("--concurrency must be 1-%d", maxConcurrency)
	case o.Channels < o.Concurrency || o.Channels > maxChannels:
		return fmt.Errorf("--channels must be from --concurrency (%d) to %d: each channel is posted in order by one poster", o.Concurrency, maxChannels)
	case o.Events < 0 || o.Events > maxEvents:
		return fmt.Errorf("--events must be 0-%d", maxEvents)
	case o.Events == 0 && (o.Duration <= 0 || o.Duration > maxDuration):
		return fmt.Errorf("--duration must be positive and at most %s", maxDuration)
	case o.Events > 0 && o.Rate > 0 && float64(o.Events)/o.Rate > maxDuration.Seconds():
		return fmt.Errorf("--events %d at --rate %g/s would post for longer than %s", o.Events, o.Rate, maxDuration)
	case o.DrainTimeout <= 0 || o.DrainTimeout > maxDuration:
		return fmt.Errorf("--drain-timeout must be positive and at most %s", maxDuration)
	}
	if o.Spawn {
		if o.BrokerURL != "" || o.SigningSecretFile != "" || o.TeamID != "" || len(o.SSEURLs) > 0 || o.ForwardListen != "" || o.ForwardSecretFile != "" {
			return errors.New("--spawn starts its own broker and bridges: drop --broker-url, --signing-secret-file, --team-id, --sse-url and --forward-*")
		}
		if o.Agents < 1 || o.Agents > maxAgents {
			return fmt.Errorf("--agents must be 1-%d", maxAgents)
		}
		if o.Consume != "sse" && o.Consume != "forward" {
			return fmt.Errorf("--consume %q: want sse or forward", o.Consume)
		}
		if _, known := plannedPosting(o); o.Profile != "" && !known {
			return errors.New("--profile needs the posting time in advance: use --duration, or --events with --rate (a CPU profile's length is fixed when it starts)")
		}
		return nil
	}
	if o.Profile != "" {
		return errors.New("--profile is for --spawn (it starts the broker and bridges with --pprof-listen); against an existing deployment, start them with --pprof-listen and fetch /debug/pprof/profile yourself (docs/operations.md)")
	}
	if o.BrokerURL == "" || o.SigningSecretFile == "" || o.TeamID == "" {
		return errors.New("give --spawn, or --broker-url, --signing-secret-file and --team-id of an existing deployment")
	}
	if o.BrokerBin != "" || o.BridgeBin != "" || o.Agents != 1 || o.KeepData {
		return errors.New("--broker-bin, --bridge-bin, --agents and --keep-data are for --spawn")
	}
	if err := checkTarget("--broker-url", o.BrokerURL, o.AllowRemote); err != nil {
		return err
	}
	if o.RedisURL != "" {
		u, err := url.Parse(o.RedisURL)
		if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
			return errors.New("--redis-url: want a redis:// or rediss:// URL")
		}
		if !o.AllowRemote && !isLoopback(u.Hostname()) {
			return errors.New("--redis-url is not a loopback address: reading a remote Redis needs --allow-remote")
		}
	}
	switch {
	case len(o.SSEURLs) > 0 && o.ForwardListen != "":
		return errors.New("consume either --sse-url or --forward-listen, not both")
	case len(o.SSEURLs) > 0:
		if len(o.SSEURLs) > maxAgents {
			return fmt.Errorf("at most %d --sse-url bridges", maxAgents)
		}
		for _, u := range o.SSEURLs {
			if err := checkTarget("--sse-url", u, o.AllowRemote); err != nil {
				return err
			}
		}
	case o.ForwardListen != "":
		if o.ForwardSecretFile == "" {
			return errors.New("--forward-listen needs --forward-signing-secret-file (the bridge's forward signing secret)")
		}
		host, _, err := net.SplitHostPort(o.ForwardListen)
		if err != nil {
			return fmt.Errorf("--forward-listen %q: want HOST:PORT", o.ForwardListen)
		}
		if !isLoopback(host) && !o.AllowRemote {
			return fmt.Errorf("--forward-listen %q is not a loopback address (pass --allow-remote to listen there)", o.ForwardListen)
		}
	default:
		return errors.New("name the bridge to consume: --sse-url or --forward-listen")
	}
	return nil
}

// checkTarget refuses a URL that is not http(s) or, without allowRemote,
// whose host is not loopback.
func checkTarget(name, raw string, allowRemote bool) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%s %q: want an http:// or https:// URL", name, raw)
	}
	if !allowRemote && !isLoopback(u.Hostname()) {
		return fmt.Errorf("%s %q is not a loopback address: loading a remote deployment needs --allow-remote", name, raw)
	}
	return nil
}

// isLoopback reports whether host is localhost or a loopback IP.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
