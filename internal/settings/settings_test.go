package settings_test

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sealrelay/sealrelay/internal/settings"
)

// table is a small settings table covering every kind of setting.
func table() []*settings.Setting {
	return settings.Pointers([]settings.Setting{
		{Name: "listen", Env: "T_LISTEN", Default: ":8080", Arg: "ADDR", Usage: "where to listen", Check: settings.ListenAddr},
		{Name: "secret", Env: "T_SECRET", Secret: true, Required: true, Arg: "SECRET", Usage: "the secret", Fix: "copy it from the app page"},
		{Name: "count", Env: "T_COUNT", Default: "4", Arg: "N", Usage: "how many", Check: settings.IntRange(1, 64)},
		{Name: "wait", Env: "T_WAIT", Default: "3s", Arg: "DURATION", Usage: "how long", Check: settings.DurationRange(time.Second, 90*24*time.Hour, "use e.g. 3s")},
		{Name: "stream", Env: "T_STREAM", Default: "true", Bool: true, Usage: "serve the stream", Check: settings.Bool},
		{Name: "org-id", Aliases: []string{"workspace-id"}, Arg: "ID", Usage: "flag only"},
		{Name: "url", Env: "T_URL", Arg: "URL", Usage: "optional URL", Check: settings.Optional(settings.HTTPURL), Tags: []string{"x"}},
	})
}

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestPrecedence: command line > environment > default, for values and
// files alike; values are trimmed; an empty variable counts as unset.
func TestPrecedence(t *testing.T) {
	t.Parallel()
	flagFile, envFile := writeFile(t, " from-flag-file\n"), writeFile(t, "from-env-file\n")
	cases := []struct {
		name       string
		args       []string
		env        map[string]string
		setting    string
		want       string
		wantSource string
	}{
		{"default", nil, nil, "listen", ":8080", "default"},
		{"env over default", nil, map[string]string{"T_LISTEN": " :9000 "}, "listen", ":9000", "T_LISTEN"},
		{"empty env is unset", nil, map[string]string{"T_LISTEN": ""}, "listen", ":8080", "default"},
		{"flag over env", []string{"--listen", ":7000"}, map[string]string{"T_LISTEN": ":9000"}, "listen", ":7000", "--listen"},
		{"env value", nil, map[string]string{"T_SECRET": "s3cret-env"}, "secret", "s3cret-env", "T_SECRET"},
		{"env file", nil, map[string]string{"T_SECRET_FILE": envFile}, "secret", "from-env-file", "T_SECRET_FILE (" + envFile + ")"},
		{"flag over env file", []string{"--secret", "s3cret-flag"}, map[string]string{"T_SECRET_FILE": envFile}, "secret", "s3cret-flag", "--secret"},
		{"flag file over env value", []string{"--secret-file", flagFile}, map[string]string{"T_SECRET": "x"}, "secret", "from-flag-file", "--secret-file " + flagFile},
		{"bare switch is true", []string{"--stream=false", "--stream"}, nil, "stream", "true", "--stream"},
		{"switch off", []string{"--stream=false"}, map[string]string{"T_STREAM": "true"}, "stream", "false", "--stream"},
		{"switch from env", nil, map[string]string{"T_STREAM": "0"}, "stream", "0", "T_STREAM"},
		{"alias", []string{"--workspace-id", "T123"}, nil, "org-id", "T123", "--org-id"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := map[string]string{"T_SECRET": "s"}
			for k, v := range tc.env {
				e[k] = v
			}
			if _, ok := tc.env["T_SECRET_FILE"]; ok {
				delete(e, "T_SECRET")
			}
			l, err := settings.Load("test", table(), tc.args, env(e))
			if err != nil {
				t.Fatal(err)
			}
			if err := l.Err(); err != nil {
				t.Fatalf("problems: %v", err)
			}
			_, v := l.Get(tc.setting)
			if v.Text != tc.want || v.Source != tc.wantSource {
				t.Fatalf("%s = %q from %q, want %q from %q", tc.setting, v.Text, v.Source, tc.want, tc.wantSource)
			}
			if v.IsSet != (tc.wantSource != "default") {
				t.Errorf("IsSet = %v for source %s", v.IsSet, v.Source)
			}
		})
	}
}

// TestTypedValues: the getters convert checked values.
func TestTypedValues(t *testing.T) {
	t.Parallel()
	l, err := settings.Load("test", table(), []string{"--count", "12", "--wait", "2d", "--stream=false"}, env(map[string]string{"T_SECRET": "s"}))
	if err != nil || l.Err() != nil {
		t.Fatal(err, l.Err())
	}
	if n := l.Int("count"); n != 12 {
		t.Errorf("Int = %d", n)
	}
	if d := l.Duration("wait"); d != 48*time.Hour {
		t.Errorf("Duration = %v", d)
	}
	if l.Bool("stream") {
		t.Error("Bool = true after --stream=false")
	}
	if !l.Given("count") || l.Given("listen") {
		t.Error("Given does not follow the command line")
	}
	if !l.Setting("url").HasTag("x") || l.Setting("count").HasTag("x") {
		t.Error("HasTag")
	}
}

// TestProblems: every problem is reported at once, one message each, in
// table order, and a secret's value is never quoted.
func TestProblems(t *testing.T) {
	t.Parallel()
	missing := filepath.Join(t.TempDir(), "missing")
	cases := []struct {
		name string
		args []string
		env  map[string]string
		want []string
	}{
		{"required missing", nil, nil,
			[]string{"T_SECRET (or --secret / --secret-file / T_SECRET_FILE) is required: copy it from the app page"}},
		{"flag and flag file conflict", []string{"--secret", "hunter2", "--secret-file", "/x"}, nil,
			[]string{"--secret and --secret-file are both given: keep one"}},
		{"env and env file conflict", nil, map[string]string{"T_SECRET": "hunter2", "T_SECRET_FILE": "/x"},
			[]string{"T_SECRET and T_SECRET_FILE are both set: keep one"}},
		{"unreadable file", []string{"--secret-file", missing}, nil,
			[]string{"--secret-file " + missing + ": cannot read the secret file"}},
		{"empty file", nil, map[string]string{"T_SECRET_FILE": writeFile(t, " \n")},
			[]string{"the file is empty: put the secret in it"}},
		{"every bad value at once", []string{"--listen", "8080", "--count", "0", "--wait", "forever", "--url", "ftp://x"},
			map[string]string{"T_SECRET": "hunter2", "T_STREAM": "maybe"},
			[]string{`--listen="8080" is not a listen address`, `--count="0" is not a whole number from 1 to 64`,
				`--wait="forever" is not a duration from 1s to 2160h0m0s: use e.g. 3s`, `T_STREAM="maybe" is not true or false`,
				`--url="ftp://x" is not an absolute http(s) URL`}},
		{"empty listen flag", []string{"--listen", ""}, map[string]string{"T_SECRET": "s"},
			[]string{`--listen="" is empty: use HOST:PORT`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l, err := settings.Load("test", table(), tc.args, env(tc.env))
			if err != nil {
				t.Fatal(err)
			}
			var se *settings.Error
			if err := l.Err(); !errors.As(err, &se) {
				t.Fatalf("Err = %v, want a *settings.Error", err)
			}
			if len(se.Problems) != len(tc.want) {
				t.Fatalf("%d problems, want %d:\n%v", len(se.Problems), len(tc.want), se)
			}
			for i, w := range tc.want {
				if !strings.Contains(se.Problems[i], w) {
					t.Errorf("problem %d = %q, want it to contain %q", i, se.Problems[i], w)
				}
			}
			if strings.Contains(se.Error(), "hunter2") {
				t.Errorf("a problem quotes the secret: %v", se)
			}
			if len(tc.want) > 1 && !strings.HasPrefix(se.Error(), "5 configuration problems:") {
				t.Errorf("Error() = %q", se.Error())
			}
		})
	}
}

// TestUsage: --help passes flag.ErrHelp through; an unknown flag, a bad
// switch value and a stray argument are usage errors.
func TestUsage(t *testing.T) {
	t.Parallel()
	cases := []struct {
		args []string
		help bool
	}{
		{[]string{"--help"}, true},
		{[]string{"-h"}, true},
		{[]string{"--nope"}, false},
		{[]string{"--stream=maybe"}, false},
		{[]string{"extra"}, false},
	}
	for _, tc := range cases {
		_, err := settings.Load("test", table(), tc.args, env(nil))
		var ue *settings.UsageError
		switch {
		case tc.help && !errors.Is(err, flag.ErrHelp):
			t.Errorf("%v: err = %v, want flag.ErrHelp", tc.args, err)
		case !tc.help && !errors.As(err, &ue):
			t.Errorf("%v: err = %v, want a *UsageError", tc.args, err)
		}
	}
}

// TestHelp: the listing names every flag, alias, file flag, variable,
// default and the required marker, from the table.
func TestHelp(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	settings.Help(&b, table())
	for _, want := range []string{
		"  --listen ADDR\n        env T_LISTEN; default \":8080\"\n        where to listen\n",
		"  --secret SECRET, --secret-file FILE\n        env T_SECRET, T_SECRET_FILE; required\n",
		"  --stream\n        env T_STREAM; default \"true\"\n",
		"  --org-id ID, --workspace-id\n        flag only\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("help lacks %q:\n%s", want, b.String())
		}
	}
	vars := strings.Join(settings.EnvVars(table()), ",")
	if vars != "T_LISTEN,T_SECRET,T_SECRET_FILE,T_COUNT,T_WAIT,T_STREAM,T_URL" {
		t.Errorf("EnvVars = %s", vars)
	}
}

func TestParseDays(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"90d", 90 * 24 * time.Hour, true},
		{"0d", 0, true},
		{"36h", 36 * time.Hour, true},
		{"1h30m", 90 * time.Minute, true},
		{"d", 0, false},
		{"-1d", 0, false},
		{"1.5d", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		got, err := settings.ParseDays(tt.in)
		if (err == nil) != tt.ok || (tt.ok && got != tt.want) {
			t.Errorf("ParseDays(%q) = %v, %v; want %v ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

// FuzzLoad: no environment value or argument list makes Load panic, and a
// secret given on the command line is never quoted in a problem.
func FuzzLoad(f *testing.F) {
	f.Add("8080", "x", "--count=0")
	f.Add("", "", "--stream=maybe")
	f.Fuzz(func(t *testing.T, listen, count, arg string) {
		l, err := settings.Load("test", table(), []string{arg, "--secret", "hunter2-fuzz"}, env(map[string]string{"T_LISTEN": listen, "T_COUNT": count}))
		if err != nil {
			return
		}
		if strings.Contains(listen+count+arg, "hunter2-fuzz") {
			return // the fuzzer put the secret into a value that may be quoted
		}
		if err := l.Err(); err != nil && strings.Contains(err.Error(), "hunter2-fuzz") {
			t.Fatalf("secret quoted: %v", err)
		}
	})
}
