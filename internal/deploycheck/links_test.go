package deploycheck

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

// githubSlug returns the anchor GitHub generates for a Markdown heading:
// lower case, punctuation removed (letters, digits, spaces, '-' and '_'
// kept), spaces turned into '-'.
func githubSlug(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
		switch {
		case unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteRune('-')
		}
	}
	return b.String()
}

var (
	headingRe = regexp.MustCompile("(?m)^#{1,6} +(.+?) *$")
	linkRe    = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	fenceRe   = regexp.MustCompile("(?s)```.*?```")
)

// anchors returns the heading anchors of a Markdown document.
func anchors(doc string) map[string]bool {
	out := map[string]bool{}
	seen := map[string]int{}
	for _, m := range headingRe.FindAllStringSubmatch(fenceRe.ReplaceAllString(doc, ""), -1) {
		s := githubSlug(m[1])
		if n := seen[s]; n > 0 {
			out[s+"-"+strconv.Itoa(n)] = true
		} else {
			out[s] = true
		}
		seen[s]++
	}
	return out
}

func TestGithubSlug(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"Broker, Redis mode":                      "broker-redis-mode",
		"Trying it first: the sandbox":            "trying-it-first-the-sandbox",
		"What a copy of Redis or a backup yields": "what-a-copy-of-redis-or-a-backup-yields",
		"`bridge run`":                            "bridge-run",
		"4.2 `POST /api/register`":                "42-post-apiregister",
		"Data path: agent → Slack":                "data-path-agent--slack",
	}
	for in, want := range tests {
		if got := githubSlug(in); got != want {
			t.Errorf("githubSlug(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestDocsLinks checks every relative link in docs/*.md: the target file
// exists, and an #anchor names a heading of the target document.
func TestDocsLinks(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob(filepath.Join(repoRoot, "docs", "*.md"))
	if err != nil || len(files) < 5 {
		t.Fatalf("docs: %v (%d files)", err, len(files))
	}
	docs := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		docs[f] = string(b)
	}
	checked := 0
	for f, doc := range docs {
		for _, m := range linkRe.FindAllStringSubmatch(fenceRe.ReplaceAllString(doc, ""), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			path, anchor, _ := strings.Cut(target, "#")
			dest := f
			if path != "" {
				dest = filepath.Join(filepath.Dir(f), path)
			}
			checked++
			if _, err := os.Stat(dest); err != nil {
				t.Errorf("%s links to %s, which does not exist", filepath.Base(f), target)
				continue
			}
			if anchor == "" {
				continue
			}
			d, ok := docs[dest]
			if !ok {
				b, err := os.ReadFile(dest)
				if err != nil {
					t.Errorf("%s: %v", target, err)
					continue
				}
				d = string(b)
			}
			if !anchors(d)[anchor] {
				t.Errorf("%s links to %s: no heading with anchor #%s", filepath.Base(f), target, anchor)
			}
		}
	}
	if checked < 10 {
		t.Fatalf("checked only %d links", checked)
	}
}
