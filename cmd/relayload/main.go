// Command relayload is sealrelay's load harness: the way to size a
// deployment (docs/operations.md, "Sizing a deployment").
//
//	relayload --spawn [--redis-url URL] [--agents N] [--consume sse|forward] [--rate 200/s] [--duration 10s]
//	relayload --broker-url http://127.0.0.1:8080 --signing-secret-file F --team-id T \
//	          (--sse-url http://127.0.0.1:7890/events | --forward-listen 127.0.0.1:3999 --forward-signing-secret-file F)
//
// It posts Slack-signed Events API webhooks to a broker at a fixed rate or
// flat out with --concurrency posters, consumes them through real bridges
// (their SSE stream, or the Slack-signed requests they forward, verified
// with slack-go), and prints the delivered events per second, the
// end-to-end and webhook-answer p50/p99/max, the lost, duplicated and
// out-of-order counts and the CPU time per event of every process it
// watches (from /proc), of Redis when --redis-url names it (INFO cpu) and
// of the system under test in total, beside the machine's crypto floor
// (the protocol's seal, sign, verify and open of one event, measured
// in-process before the load). Every event has a unique event_id and a sequence
// number per channel; each channel is posted in order by one poster, so a
// delivery older than one already seen on its channel is out of order.
//
// --spawn starts everything itself: a simulated Slack (internal/slackfake),
// a broker (embedded store, or --redis-url under a unique key prefix that
// is removed afterwards) and --agents bridges from --broker-bin and
// --bridge-bin (built with `go build` when not given), installed through
// the OAuth flow and registered with `bridge register`, as cmd/sandbox
// does. With --profile DIR it also starts them with --pprof-listen and
// writes a CPU profile of each over the posting time to DIR (profile.go).
//
// The exit code is 0 when every accepted event reached every consumer once
// and in order, 1 on any loss, duplicate, reordering or refused webhook
// (or a --profile it could not take), and 2 on bad flags. The first Ctrl-C stops posting (the drain and the
// report still happen), the second ends the drain.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	stop, stopPosting := context.WithCancel(context.Background())
	abort, abortDrain := context.WithCancel(context.Background())
	go func() {
		<-sig
		stopPosting()
		<-sig
		abortDrain()
	}()
	code := realMain(stop, abort, os.Args[1:], os.Stdout, os.Stderr)
	signal.Stop(sig)
	os.Exit(code)
}

// realMain parses the flags, runs the load and prints the report; it
// returns the exit code (0 ok, 1 failure, 2 usage).
func realMain(stop, abort context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "relayload: %v\n", err)
		return 2
	}
	res, err := run(stop, abort, o, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "relayload: %v\n", err)
		return 1
	}
	if o.JSON {
		if err := writeJSON(stdout, &res.report); err != nil {
			fmt.Fprintf(stderr, "relayload: %v\n", err)
			return 1
		}
	} else {
		writeHuman(stdout, &res.report)
	}
	if res.failed {
		return 1
	}
	return 0
}
