package broker

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"

	"github.com/sealrelay/sealrelay/protocol"
)

// MaxPolicyFileSize caps a call policy file.
const MaxPolicyFileSize = 1 << 20

// PolicyDefaultToken in a methods list stands for DefaultCallMethods.
const PolicyDefaultToken = "@default"

// PolicyAnyChannel in a channels list allows every channel.
const PolicyAnyChannel = "*"

// DefaultCallMethods is what /api/call allows when the policy file does not
// say otherwise: messaging, reading conversations and users, modals and App
// Home, assistant threads, the external file upload flow and auth.test.
// Entries ending in "." are prefixes. Nothing that administers the
// workspace (admin.*, apps.*, auth.revoke, oauth.*, users.admin.*, ...)
// is in it.
var DefaultCallMethods = []string{
	"chat.", "reactions.", "pins.", "views.", "assistant.threads.",
	"conversations.history", "conversations.replies", "conversations.info",
	"conversations.members", "conversations.list", "conversations.open",
	"users.info", "users.list", "users.conversations", "users.lookupByEmail",
	"bots.info", "team.info", "emoji.list",
	"files.getUploadURLExternal", "files.completeUploadExternal", "files.info",
	"auth.test",
}

// CallPolicy says which Slack methods and channels each agent may use
// through /api/call. The most specific rule wins, without merging: the
// agent's own rule, else its org's rule, else the file's default, else the
// built-in default (DefaultCallMethods, any channel). The zero value and
// nil are the built-in default. Load one with LoadCallPolicy or
// ParseCallPolicy.
type CallPolicy struct {
	def    *policyRule
	orgs   map[string]*policyRule
	agents map[string]*policyRule
}

// policyRule is one compiled entry.
type policyRule struct {
	exact    map[string]bool
	prefixes []string
	channels map[string]bool // nil = any channel
}

// policyFile is the on-disk format (JSON, unknown fields rejected).
type policyFile struct {
	Default *json.RawMessage  `json:"default"`
	Rules   []json.RawMessage `json:"rules"`
}

// policyEntry is one rule of the file.
type policyEntry struct {
	OrgID    string   `json:"org_id"`
	AgentID  string   `json:"agent_id"`
	Methods  []string `json:"methods"`
	Channels []string `json:"channels"`
}

var (
	methodPrefixPattern = regexp.MustCompile(`^[a-z][A-Za-z0-9]*(\.[A-Za-z][A-Za-z0-9]*)*\.$`)
	channelIDPattern    = regexp.MustCompile(`^[A-Z0-9]{2,64}$`)
	agentIDPattern      = regexp.MustCompile(`^ag-[0-9a-f]{24}$`)
)

var defaultRule = mustRule(policyEntry{Methods: []string{PolicyDefaultToken}})

func mustRule(e policyEntry) *policyRule {
	r, err := compileRule(e, false)
	if err != nil {
		panic(err)
	}
	return r
}

// LoadCallPolicy reads and validates the policy file at path. Errors name
// the file, the entry and the field.
func LoadCallPolicy(path string) (*CallPolicy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("call policy: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxPolicyFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("call policy %s: %w", path, err)
	}
	if len(data) > MaxPolicyFileSize {
		return nil, fmt.Errorf("call policy %s: larger than %d bytes", path, MaxPolicyFileSize)
	}
	return ParseCallPolicy(path, data)
}

// ParseCallPolicy validates a policy document; name (usually the file
// path) prefixes every error.
func ParseCallPolicy(name string, data []byte) (*CallPolicy, error) {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("call policy %s: "+format, append([]any{name}, args...)...)
	}
	var pf policyFile
	if err := strictJSON(data, &pf); err != nil {
		return nil, fail("%v", err)
	}
	p := &CallPolicy{orgs: map[string]*policyRule{}, agents: map[string]*policyRule{}}
	if pf.Default != nil {
		var e policyEntry
		if err := strictJSON(*pf.Default, &e); err != nil {
			return nil, fail("default: %v", err)
		}
		if e.OrgID != "" || e.AgentID != "" {
			return nil, fail("default: org_id and agent_id belong in rules, not in default")
		}
		r, err := compileRule(e, true)
		if err != nil {
			return nil, fail("default: %v", err)
		}
		p.def = r
	}
	for i, raw := range pf.Rules {
		var e policyEntry
		if err := strictJSON(raw, &e); err != nil {
			return nil, fail("rules[%d]: %v", i, err)
		}
		where := fmt.Sprintf("rules[%d]", i)
		switch {
		case e.OrgID != "" && e.AgentID != "":
			return nil, fail("%s: set org_id or agent_id, not both", where)
		case e.OrgID != "":
			where += fmt.Sprintf(" (org_id %q)", e.OrgID)
			if protocol.ValidateID(e.OrgID) != nil {
				return nil, fail("%s: org_id: not an org id (a Slack team or enterprise id such as T0123ABCD)", where)
			}
			if p.orgs[e.OrgID] != nil {
				return nil, fail("%s: org_id: a rule for this org appears earlier", where)
			}
		case e.AgentID != "":
			where += fmt.Sprintf(" (agent_id %q)", e.AgentID)
			if !agentIDPattern.MatchString(e.AgentID) {
				return nil, fail("%s: agent_id: not a broker agent id such as ag-0123456789abcdef01234567", where)
			}
			if p.agents[e.AgentID] != nil {
				return nil, fail("%s: agent_id: a rule for this agent appears earlier", where)
			}
		default:
			return nil, fail("%s: org_id or agent_id is required", where)
		}
		r, err := compileRule(e, true)
		if err != nil {
			return nil, fail("%s: %v", where, err)
		}
		if e.OrgID != "" {
			p.orgs[e.OrgID] = r
		} else {
			p.agents[e.AgentID] = r
		}
	}
	return p, nil
}

// strictJSON decodes one JSON value into v, rejecting unknown fields and
// trailing data.
func strictJSON(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return fmt.Errorf("invalid JSON at offset %d: %v", se.Offset, err)
		}
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return errors.New("invalid JSON: unexpected end of input")
		}
		return fmt.Errorf("%s", strings.TrimPrefix(err.Error(), "json: "))
	}
	if dec.More() {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}

func compileRule(e policyEntry, requireMethods bool) (*policyRule, error) {
	if e.Methods == nil && requireMethods {
		return nil, errors.New(`methods: required (use ["@default"] for the built-in list)`)
	}
	r := &policyRule{exact: map[string]bool{}}
	var add func(i int, m string, fromDefault bool) error
	add = func(i int, m string, fromDefault bool) error {
		switch {
		case m == PolicyDefaultToken && !fromDefault:
			for _, d := range DefaultCallMethods {
				if err := add(i, d, true); err != nil {
					return err
				}
			}
		case strings.HasSuffix(m, "."):
			if !methodPrefixPattern.MatchString(m) || len(m) > protocol.MaxMethodLength {
				return fmt.Errorf("methods[%d] %q: not a method prefix such as \"chat.\"", i, m)
			}
			r.prefixes = append(r.prefixes, m)
		default:
			if protocol.ValidateMethod(m) != nil {
				return fmt.Errorf(`methods[%d] %q: want an exact method (chat.postMessage), a prefix ending in "." (chat.) or "@default"`, i, m)
			}
			r.exact[m] = true
		}
		return nil
	}
	for i, m := range e.Methods {
		if err := add(i, m, false); err != nil {
			return nil, err
		}
	}
	sort.Strings(r.prefixes)
	if e.Channels == nil {
		return r, nil
	}
	if len(e.Channels) == 0 {
		return nil, errors.New(`channels: empty list allows no channel; omit it or use ["*"] for any channel`)
	}
	r.channels = map[string]bool{}
	for i, c := range e.Channels {
		if c == PolicyAnyChannel {
			if len(e.Channels) != 1 {
				return nil, fmt.Errorf(`channels[%d]: "*" must be the only entry`, i)
			}
			r.channels = nil
			return r, nil
		}
		if !channelIDPattern.MatchString(c) {
			return nil, fmt.Errorf("channels[%d] %q: not a channel id such as C0123ABCD", i, c)
		}
		r.channels[c] = true
	}
	return r, nil
}

// rule returns the rule that applies to the agent.
func (p *CallPolicy) rule(agentID, orgID string) *policyRule {
	if p == nil {
		return defaultRule
	}
	if r := p.agents[agentID]; r != nil {
		return r
	}
	if r := p.orgs[orgID]; r != nil {
		return r
	}
	if p.def != nil {
		return p.def
	}
	return defaultRule
}

// AllowsMethod reports whether the agent may call method at all.
func (p *CallPolicy) AllowsMethod(agentID, orgID, method string) bool {
	r := p.rule(agentID, orgID)
	if r.exact[method] {
		return true
	}
	for _, pre := range r.prefixes {
		if strings.HasPrefix(method, pre) {
			return true
		}
	}
	return false
}

// AllowsChannels reports whether the agent may name every channel in
// channels. ok=false from the argument parser (a channel argument that is
// not a string) is refused unless the rule allows any channel.
func (p *CallPolicy) AllowsChannels(agentID, orgID string, channels []string, parsed bool) bool {
	r := p.rule(agentID, orgID)
	if r.channels == nil {
		return true
	}
	if !parsed {
		return false
	}
	for _, c := range channels {
		if !r.channels[c] {
			return false
		}
	}
	return true
}
