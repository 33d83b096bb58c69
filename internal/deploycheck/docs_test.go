package deploycheck

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// repoTestNames returns every Test/Fuzz/Benchmark function and every
// literal t.Run subtest name in the repository's _test.go files and
// conformance suite packages (*test/).
func repoTestNames(t *testing.T) (funcs, subtests map[string]bool) {
	t.Helper()
	funcs, subtests = map[string]bool{}, map[string]bool{}
	funcRe := regexp.MustCompile(`(?m)^func ((?:Test|Fuzz|Benchmark)\w*)\(`)
	runRe := regexp.MustCompile(`t\.Run\("([^"]+)"`)
	err := filepath.WalkDir(repoRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		// Test files, and the exported conformance suites (state/statetest,
		// queue/queuetest), whose subtests are run by the engines' tests.
		suite := strings.HasSuffix(filepath.Base(filepath.Dir(path)), "test") && strings.HasSuffix(path, ".go")
		if d.IsDir() || !(strings.HasSuffix(path, "_test.go") || suite) {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range funcRe.FindAllStringSubmatch(string(b), -1) {
			funcs[m[1]] = true
		}
		for _, m := range runRe.FindAllStringSubmatch(string(b), -1) {
			subtests[m[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(funcs) < 20 {
		t.Fatalf("found only %d test functions; has the scanner broken?", len(funcs))
	}
	return funcs, subtests
}

// TestSecurityDocNamesRealTests keeps the "defence → test" table of
// docs/security.md honest: every test it names must exist.
func TestSecurityDocNamesRealTests(t *testing.T) {
	t.Parallel()
	doc := readRepoFile(t, "docs/security.md")
	funcs, subtests := repoTestNames(t)
	nameRe := regexp.MustCompile("`((?:Test|Fuzz|Benchmark)\\w+|State/\\w+)`")
	found := 0
	for _, m := range nameRe.FindAllStringSubmatch(doc, -1) {
		found++
		name := m[1]
		if sub, ok := strings.CutPrefix(name, "State/"); ok {
			if !subtests[sub] {
				t.Errorf("docs/security.md names subtest %s, which does not exist", name)
			}
			continue
		}
		if !funcs[name] {
			t.Errorf("docs/security.md names %s, which does not exist", name)
		}
	}
	if found < 20 {
		t.Fatalf("docs/security.md names only %d tests", found)
	}
}

var (
	docMetricRe       = regexp.MustCompile(`sealrelay_(?:broker|bridge)_[a-z0-9_]*[a-z0-9]`)
	brokerMetricRe    = regexp.MustCompile(`"(sealrelay_broker_[a-z0-9_]+)"`)
	bridgeMetricRe    = regexp.MustCompile(`Name: "([a-z0-9_]+)"`)
	histogramSuffixes = []string{"_bucket", "_count", "_sum"}
)

// codeMetrics returns the metric names the broker and bridge define.
func codeMetrics(t *testing.T) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	brokerFiles, err := filepath.Glob(filepath.Join(repoRoot, "broker", "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range brokerFiles {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range brokerMetricRe.FindAllStringSubmatch(string(b), -1) {
			out[m[1]] = true
		}
	}
	b := readRepoFile(t, "bridge/metrics.go")
	if !strings.Contains(b, `ns = "sealrelay_bridge"`) {
		t.Fatal("bridge/metrics.go no longer uses namespace sealrelay_bridge; update this test")
	}
	for _, m := range bridgeMetricRe.FindAllStringSubmatch(b, -1) {
		out["sealrelay_bridge_"+m[1]] = true
	}
	if len(out) < 10 {
		t.Fatalf("found only %d metrics in the code; has the scanner broken?", len(out))
	}
	return out
}

// TestOperationsDocMetrics checks the monitoring section both ways: every
// metric the code defines is documented, and every metric the docs name
// exists.
func TestOperationsDocMetrics(t *testing.T) {
	t.Parallel()
	code := codeMetrics(t)
	for _, doc := range []string{"docs/operations.md", "docs/architecture.md", "docs/security.md"} {
		for _, m := range docMetricRe.FindAllString(readRepoFile(t, doc), -1) {
			base := m
			for _, suf := range histogramSuffixes {
				if s, ok := strings.CutSuffix(m, suf); ok && code[s] {
					base = s
				}
			}
			if !code[base] {
				t.Errorf("%s names metric %s, which the code does not define", doc, m)
			}
		}
	}
	ops := readRepoFile(t, "docs/operations.md")
	for _, m := range sortedKeys(code) {
		if !strings.Contains(ops, m) {
			t.Errorf("docs/operations.md does not document metric %s", m)
		}
	}
}

// TestOperationsDocCoversBridgeFile checks that every variable of the
// bridge's configuration file (the Baudbot-compatible SLACK_BROKER_* names)
// is described in docs/operations.md.
func TestOperationsDocCoversBridgeFile(t *testing.T) {
	t.Parallel()
	src := readRepoFile(t, "bridge/envfile.go")
	names := regexp.MustCompile(`"(SLACK_BROKER_[A-Z_]+)"`).FindAllStringSubmatch(src, -1)
	if len(names) < 10 {
		t.Fatalf("found only %d SLACK_BROKER_* names in bridge/envfile.go; has the scanner broken?", len(names))
	}
	doc := readRepoFile(t, "docs/operations.md")
	for _, m := range names {
		if !strings.Contains(doc, "`"+m[1]+"`") {
			t.Errorf("docs/operations.md does not describe bridge file variable %s", m[1])
		}
	}
}

// TestOperationsDocCoversSandboxFlags keeps the sandbox's flag table in
// docs/operations.md complete.
func TestOperationsDocCoversSandboxFlags(t *testing.T) {
	t.Parallel()
	sc, err := readSourceConfig(repoRoot, "cmd/sandbox")
	if err != nil {
		t.Fatal(err)
	}
	if len(sc.Flags) == 0 {
		t.Fatal("found no flag in cmd/sandbox; has the scanner broken?")
	}
	doc := readRepoFile(t, "docs/operations.md")
	for _, f := range sortedKeys(sc.Flags) {
		if !strings.Contains(doc, "`--"+f+"`") {
			t.Errorf("docs/operations.md does not document sandbox flag --%s", f)
		}
	}
}
