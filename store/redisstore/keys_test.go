package redisstore

import (
	"os"
	"slices"
	"strings"
	"testing"
)

// documentedKeys returns the first column of the key table under
// "### Broker, Redis mode" in docs/architecture.md: key patterns, with
// "channel " dropped from pub/sub channels and "`x`, `…:ids`" expanded to
// x and x:ids.
func documentedKeys(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../../docs/architecture.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n### Broker, Redis mode\n")
	if !ok {
		t.Fatal(`docs/architecture.md has no "### Broker, Redis mode" section`)
	}
	section, _, _ = strings.Cut(section, "\n### ")
	var keys []string
	for _, line := range strings.Split(section, "\n") {
		if !strings.HasPrefix(line, "| ") || strings.HasPrefix(line, "| key ") {
			continue
		}
		cell := strings.TrimSpace(strings.Split(line, "|")[1])
		cell = strings.TrimPrefix(cell, "channel ")
		var prev string
		for _, part := range strings.Split(cell, ", ") {
			k := strings.Trim(part, "`")
			if rest, ok := strings.CutPrefix(k, "…"); ok {
				k = prev + rest
			}
			keys = append(keys, k)
			prev = k
		}
	}
	return keys
}

// renderedKeys renders every key and channel pattern keys.go builds, with
// the default prefix and the placeholders the documentation uses.
func renderedKeys() []string {
	const prefix = "sealrelay:"
	s := newStateKeys(prefix + stateNamespace)
	q := inboxKeys{prefix + inboxNamespace}
	keys := []string{
		s.inst("<org>"), s.insts(), s.regToken("<hash>"), s.mintGrant("<hash>"), s.agent("<id>"),
		s.orgAgents("<org>"), s.agentKey("<hex>"), s.accessToken("<hash>"),
		s.oauthState("<hash>"), s.event("<event_id>"), s.nonce("<agent>", "<nonce>"),
		s.hold("<id>"), s.usedSig("<hash>"), s.bucket("<key>"), s.lastPull("<agent>"),
		auditKeyChains(prefix), auditKeyRecords(prefix, "<chain>"), auditKeyCheckpoints(prefix, "<chain>"),
	}
	keys = append(keys, s.drops("<agent>")...)
	keys = append(keys, q.inbox("<agent>")...)
	return append(keys, q.registry(), q.sweepLock(), q.wake(), s.heldChannels()+"<replica id>")
}

// TestKeyLayoutDocumented: the key table of docs/architecture.md lists
// exactly the keys keys.go builds.
func TestKeyLayoutDocumented(t *testing.T) {
	t.Parallel()
	doc, code := documentedKeys(t), renderedKeys()
	slices.Sort(doc)
	slices.Sort(code)
	for _, k := range code {
		if _, found := slices.BinarySearch(doc, k); !found {
			t.Errorf("keys.go builds %s, which docs/architecture.md does not list", k)
		}
	}
	for _, k := range doc {
		if _, found := slices.BinarySearch(code, k); !found {
			t.Errorf("docs/architecture.md lists %s, which keys.go does not build", k)
		}
	}
	if len(doc) != len(slices.Compact(slices.Clone(doc))) {
		t.Errorf("docs/architecture.md lists a key twice: %v", doc)
	}
}
