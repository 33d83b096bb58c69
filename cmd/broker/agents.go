package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/term"

	"github.com/sealrelay/sealrelay/broker"
	"github.com/sealrelay/sealrelay/protocol"
	"github.com/sealrelay/sealrelay/state"
)

const agentsUsage = `Usage:
  broker agents list [--org ORG] [--json] [connection flags]
  broker agents revoke [--yes] [connection flags] AGENT_ID
  broker agents token [--replace] [--yes] [connection flags] ORG

list    every registered agent: id, org, registered at, last pull, inbox
        (ready / leased), dead letters, token expiry, declared capabilities,
        and whether it is idle (no pull for --agent-idle-after)
revoke  delete the agent, its access token and its inbox: its next pull is
        answered 401 and it must register again (asks for confirmation
        unless --yes)
token   mint a one-time registration token for ORG (shown once; valid for
        --registration-token-ttl): by default it adds an agent; with
        --replace, registering with it deletes every other agent of ORG
        (their access tokens and inboxes) in the same step (asks for
        confirmation unless --yes). Needs the admin listener.

Connection flags (default: the local admin listener):
  --admin-url URL          http://127.0.0.1:8081 (default) or unix:/path/to/socket
  --admin-token-file FILE  the broker's admin token (or SEALRELAY_ADMIN_TOKEN_FILE)
  --redis-url URL          open the Redis store directly instead
  --redis-prefix PREFIX    its key prefix (default sealrelay:)
  --agent-idle-after D     idle threshold with --redis-url (default 24h)
`

// cliIO is the terminal of an admin command: where confirmations are read
// and whether it is interactive.
type cliIO struct {
	stdin io.Reader
	isTTY func() bool
}

func osCLIIO() cliIO {
	return cliIO{stdin: os.Stdin, isTTY: func() bool { return term.IsTerminal(int(os.Stdin.Fd())) }}
}

// confirm asks the operator to type want before a destructive action.
func (c cliIO) confirm(stderr io.Writer, yes bool, question, want string) error {
	if yes {
		return nil
	}
	if !c.isTTY() {
		return usageError{"refusing without confirmation: stdin is not a terminal; pass --yes"}
	}
	fmt.Fprintf(stderr, "%s\nType %q to confirm: ", question, want)
	line, err := bufio.NewReader(c.stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read confirmation: %w", err)
	}
	if strings.TrimSpace(line) != want {
		return usageError{"not confirmed; nothing changed"}
	}
	return nil
}

func cmdAgents(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return runAgents(ctx, args, getenv, stdout, stderr, osCLIIO())
}

func runAgents(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer, tio cliIO) error {
	if len(args) == 0 || (args[0] != "list" && args[0] != "revoke" && args[0] != "token") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			fmt.Fprint(stdout, agentsUsage)
			return flag.ErrHelp
		}
		return usageError{"want `broker agents list`, `broker agents revoke AGENT_ID` or `broker agents token ORG` (see broker agents --help)"}
	}
	sub := args[0]
	fs := flag.NewFlagSet("broker agents "+sub, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var af adminFlags
	af.register(fs)
	org := fs.String("org", "", "only the agents of this org (team or enterprise id)")
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	yes := fs.Bool("yes", false, "do not ask for confirmation")
	replace := fs.Bool("replace", false, "with token: mint a token that replaces the org's agents")
	pos, err := parseInterleaved(fs, args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, agentsUsage)
			return err
		}
		return usageError{fmt.Sprintf("%v (see broker agents --help)", err)}
	}
	switch {
	case sub == "list" && len(pos) > 0:
		return usageError{fmt.Sprintf("unexpected argument %q (see broker agents --help)", pos[0])}
	case sub == "revoke" && len(pos) != 1:
		return usageError{"want exactly one AGENT_ID: broker agents revoke [--yes] AGENT_ID"}
	case sub == "token" && len(pos) != 1:
		return usageError{"want exactly one ORG: broker agents token [--replace] ORG"}
	case sub != "token" && *replace:
		return usageError{"--replace is a flag of `broker agents token`"}
	}
	if sub == "token" {
		return runAgentsToken(ctx, &af, getenv, pos[0], *replace, *yes, *asJSON, stdout, stderr, tio)
	}
	b, err := af.open(ctx, getenv)
	if err != nil {
		return err
	}
	defer b.Close()
	if sub == "list" {
		agents, err := b.Agents(ctx, *org)
		if err != nil {
			return err
		}
		if *asJSON {
			return writeCLIJSON(stdout, agents)
		}
		printAgents(stdout, agents, time.Now())
		return nil
	}
	id := pos[0]
	if err := broker.ValidateAgentID(id); err != nil {
		return usageError{err.Error()}
	}
	if err := tio.confirm(stderr, *yes, fmt.Sprintf("Revoke agent %s? Its access token and inbox are deleted; its bridge must register again.", id), id); err != nil {
		return err
	}
	res, err := b.Revoke(ctx, id)
	if err != nil {
		return err
	}
	if *asJSON {
		return writeCLIJSON(stdout, res)
	}
	fmt.Fprintf(stdout, "revoked agent %s of %s (%d queued messages deleted)\n", res.AgentID, res.OrgID, res.Dropped)
	return nil
}

// runAgentsToken is `broker agents token [--replace] ORG`.
func runAgentsToken(ctx context.Context, af *adminFlags, getenv func(string) string, org string, replace, yes, asJSON bool,
	stdout, stderr io.Writer, tio cliIO) error {
	if err := protocol.ValidateID(org); err != nil {
		return usageError{fmt.Sprintf("ORG %q: %v", org, err)}
	}
	mode := state.RegistrationAdd
	if replace {
		mode = state.RegistrationReplace
		if err := tio.confirm(stderr, yes, fmt.Sprintf("Mint a token that replaces every agent of %s? The agent registering with it deletes the others (their inboxes too).", org), org); err != nil {
			return err
		}
	}
	b, err := af.open(ctx, getenv)
	if err != nil {
		return err
	}
	defer b.Close()
	t, err := b.MintToken(ctx, org, mode)
	if err != nil {
		return err
	}
	if asJSON {
		return writeCLIJSON(stdout, t)
	}
	what := "adds an agent"
	if mode == state.RegistrationReplace {
		what = "REPLACES every current agent"
	}
	fmt.Fprintf(stdout, "registration token for %s (%s; one use, expires %s):\n%s\n", t.OrgID, what, cliTime(t.ExpiresAt), t.Token)
	return nil
}

func writeCLIJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func cliTime(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format("2006-01-02 15:04Z")
}

// ago renders how long before now t was, coarsely.
func ago(t, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return cliTime(t)
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d/time.Hour))
	}
	return fmt.Sprintf("%dd ago", int(d/(24*time.Hour)))
}

func printAgents(w io.Writer, agents []broker.AgentView, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "AGENT\tORG\tREGISTERED\tLAST PULL\tREADY\tLEASED\tDEAD\tTOKEN EXPIRES\tCAPABILITIES\tIDLE")
	for _, a := range agents {
		exp := cliTime(a.TokenExpiresAt)
		if a.TokenExpired {
			exp += " (expired)"
		}
		caps := strings.Join(a.Capabilities, ",")
		if caps == "" {
			caps = "-"
		}
		idle := "-"
		switch {
		case a.FanoutPaused:
			idle = "idle (fan-out paused)"
		case a.Idle:
			idle = "idle"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\t%s\n", a.ID, a.OrgID, cliTime(a.RegisteredAt),
			ago(a.LastPull, now), a.Ready, a.Leased, a.DeadLetters, exp, caps, idle)
	}
	_ = tw.Flush()
	if len(agents) == 0 {
		fmt.Fprintln(w, "(no agents registered)")
	}
}

// parseInterleaved parses fs from args allowing flags after positional
// arguments (`broker dlq list AGENT --json`), and returns the positional
// ones. "--" ends the flags.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if len(args) > 0 && len(rest) < len(args) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}
