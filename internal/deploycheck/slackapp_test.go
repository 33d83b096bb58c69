package deploycheck

import (
	"slices"
	"strings"
	"testing"

	"github.com/sealrelay/sealrelay/broker"
	"github.com/sealrelay/sealrelay/protocol"
)

// TestSlackAppManifest keeps the manifest in docs/slack-app.md in step with
// the broker: its bot scopes are the broker's default scopes, its URLs are
// the broker's routes, and it subscribes to the events the broker handles.
func TestSlackAppManifest(t *testing.T) {
	t.Parallel()
	doc := readRepoFile(t, "docs/slack-app.md")
	start := strings.Index(doc, "```yaml\n")
	if start < 0 {
		t.Fatal("docs/slack-app.md has no ```yaml manifest block")
	}
	rest := doc[start+len("```yaml\n"):]
	end := strings.Index(rest, "```")
	if end < 0 {
		t.Fatal("unterminated manifest block")
	}
	v, err := parseYAML(rest[:end])
	if err != nil {
		t.Fatalf("manifest: %v", err)
	}
	c := &compose{t: t, root: v.(map[string]any)}
	oauth := c.m(c.root["oauth_config"], "oauth_config")
	scopes := c.list(c.m(oauth["scopes"], "oauth_config.scopes")["bot"], "oauth_config.scopes.bot")
	want := slices.Clone(broker.DefaultBotScopes)
	slices.Sort(want)
	got := slices.Clone(scopes)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("manifest bot scopes %v, broker default scopes %v", got, want)
	}
	redirects := c.list(oauth["redirect_urls"], "oauth_config.redirect_urls")
	if len(redirects) != 1 || !strings.HasSuffix(redirects[0], "/slack/oauth/callback") || !strings.HasPrefix(redirects[0], "https://") {
		t.Errorf("redirect_urls %v, want https://<host>/slack/oauth/callback", redirects)
	}
	settings := c.m(c.root["settings"], "settings")
	ev := c.m(settings["event_subscriptions"], "settings.event_subscriptions")
	if u, _ := ev["request_url"].(string); !strings.HasSuffix(u, "/slack/events") {
		t.Errorf("event request_url %q, want .../slack/events", u)
	}
	events := c.list(ev["bot_events"], "settings.event_subscriptions.bot_events")
	for _, e := range []string{"app_mention", "message.im", protocol.TypeAppUninstalled, protocol.TypeTokensRevoked} {
		if !slices.Contains(events, e) {
			t.Errorf("manifest does not subscribe to %s", e)
		}
	}
	inter := c.m(settings["interactivity"], "settings.interactivity")
	if u, _ := inter["request_url"].(string); !strings.HasSuffix(u, "/slack/interactivity") {
		t.Errorf("interactivity request_url %q, want .../slack/interactivity", u)
	}
	features := c.m(c.root["features"], "features")
	if features["slash_commands"] != nil {
		cmds, ok := features["slash_commands"].([]any)
		if !ok || len(cmds) == 0 {
			t.Fatal("features.slash_commands is not a list")
		}
		for i, x := range cmds {
			u, _ := c.m(x, "features.slash_commands[]")["url"].(string)
			if !strings.HasSuffix(u, "/slack/commands") {
				t.Errorf("slash command %d url %q, want .../slack/commands", i, u)
			}
		}
	}
}
