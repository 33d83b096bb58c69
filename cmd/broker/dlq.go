package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/sealrelay/sealrelay/broker"
)

const dlqUsage = `Usage:
  broker dlq list [--limit N] [--json] [connection flags] AGENT_ID
  broker dlq redrive [--id MESSAGE_ID ...] [--json] [connection flags] AGENT_ID
  broker dlq purge [--yes] [--json] [connection flags] AGENT_ID

list     the agent's dead letters (messages leased 10 times without an ack):
         id, deliveries, age, size — never their (sealed) bodies
redrive  move them (all, or the --id ones) back to the agent's inbox
purge    delete every dead letter of the agent (asks unless --yes)

Connection flags: as for broker agents (--admin-url, --admin-token-file,
--redis-url, --redis-prefix); see broker agents --help.
`

// idList collects a repeated --id flag.
type idList []string

func (l *idList) String() string     { return strings.Join(*l, ",") }
func (l *idList) Set(s string) error { *l = append(*l, s); return nil }

func cmdDLQ(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return runDLQ(ctx, args, getenv, stdout, stderr, osCLIIO())
}

func runDLQ(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer, tio cliIO) error {
	if len(args) == 0 || (args[0] != "list" && args[0] != "redrive" && args[0] != "purge") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			fmt.Fprint(stdout, dlqUsage)
			return flag.ErrHelp
		}
		return usageError{"want `broker dlq list|redrive|purge AGENT_ID` (see broker dlq --help)"}
	}
	sub := args[0]
	fs := flag.NewFlagSet("broker dlq "+sub, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var af adminFlags
	af.register(fs)
	asJSON := fs.Bool("json", false, "print JSON instead of text")
	yes := fs.Bool("yes", false, "do not ask for confirmation")
	limit := fs.Int("limit", broker.DefaultDeadLetterListLimit, "list at most this many (1-1000)")
	var ids idList
	fs.Var(&ids, "id", "redrive only this message id (repeatable)")
	pos, err := parseInterleaved(fs, args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, dlqUsage)
			return err
		}
		return usageError{fmt.Sprintf("%v (see broker dlq --help)", err)}
	}
	if len(pos) != 1 {
		return usageError{fmt.Sprintf("want exactly one AGENT_ID: broker dlq %s [flags] AGENT_ID (flags go before it)", sub)}
	}
	agent := pos[0]
	if err := broker.ValidateAgentID(agent); err != nil {
		return usageError{err.Error()}
	}
	if len(ids) > 0 && sub != "redrive" {
		return usageError{"--id is a flag of broker dlq redrive"}
	}
	if *limit < 1 || *limit > broker.MaxDeadLetterListLimit {
		return usageError{fmt.Sprintf("--limit must be 1 to %d", broker.MaxDeadLetterListLimit)}
	}
	b, err := af.open(ctx, getenv)
	if err != nil {
		return err
	}
	defer b.Close()
	switch sub {
	case "list":
		list, err := b.DeadLetters(ctx, agent, *limit)
		if err != nil {
			return err
		}
		if *asJSON {
			return writeCLIJSON(stdout, list)
		}
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "MESSAGE ID\tDELIVERIES\tAGE\tSIZE")
		for _, d := range list {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%d\n", d.ID, d.Deliveries, ageSeconds(d.AgeSeconds), d.Size)
		}
		_ = tw.Flush()
		fmt.Fprintf(stdout, "%d dead letters of %s\n", len(list), agent)
		return nil
	case "redrive":
		n, err := b.Redrive(ctx, agent, ids)
		if err != nil {
			return err
		}
		if *asJSON {
			return writeCLIJSON(stdout, map[string]any{"agent_id": agent, "redriven": n})
		}
		fmt.Fprintf(stdout, "redrove %d dead letters of %s back to its inbox\n", n, agent)
		return nil
	default:
		if err := tio.confirm(stderr, *yes, fmt.Sprintf("Delete every dead letter of agent %s? They cannot be recovered.", agent), agent); err != nil {
			return err
		}
		n, err := b.Purge(ctx, agent)
		if err != nil {
			return err
		}
		if *asJSON {
			return writeCLIJSON(stdout, map[string]any{"agent_id": agent, "purged": n})
		}
		fmt.Fprintf(stdout, "purged %d dead letters of %s\n", n, agent)
		return nil
	}
}

func ageSeconds(s int64) string {
	switch {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm", s/60)
	case s < 48*3600:
		return fmt.Sprintf("%dh", s/3600)
	}
	return fmt.Sprintf("%dd", s/86400)
}
