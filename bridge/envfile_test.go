package bridge_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/sealrelay/sealrelay/bridge"
)

func TestParseEnvFile(t *testing.T) {
	cases := []struct {
		name string
		in   string
		want map[string]string
		err  bool
	}{
		{"plain", "A=1\nB=two\n", map[string]string{"A": "1", "B": "two"}, false},
		{"export and spaces", "export A = x \n  B=y", map[string]string{"A": "x", "B": "y"}, false},
		{"double quotes with escapes", `A="a \"q\" \\ \n b"`, map[string]string{"A": "a \"q\" \\ \n b"}, false},
		{"single quotes are literal", `A='a \n $b'`, map[string]string{"A": `a \n $b`}, false},
		{"inline comment", "A=1 # note\nB=\"x\" # note", map[string]string{"A": "1", "B": "x"}, false},
		{"hash inside value", "A=a#b", map[string]string{"A": "a#b"}, false},
		{"comments and blanks", "# c\n\n   \nA=1\n", map[string]string{"A": "1"}, false},
		{"crlf", "A=1\r\nB=2\r\n", map[string]string{"A": "1", "B": "2"}, false},
		{"last assignment wins", "A=1\nA=2\n", map[string]string{"A": "2"}, false},
		{"base64 value with =", "K=YWJj+/de==\n", map[string]string{"K": "YWJj+/de=="}, false},
		{"line without = is kept", "just words\nA=1", map[string]string{"A": "1"}, false},
		{"empty value", "A=\n", map[string]string{"A": ""}, false},
		{"unterminated double quote", "A=\"x\n", nil, true},
		{"unterminated single quote", "A='x\n", nil, true},
		{"text after quote", "A=\"x\" y\n", nil, true},
		{"bad name", "1A=x\n", nil, true},
		{"bad name chars", "A-B=x\n", nil, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, err := bridge.ParseEnvFile([]byte(tc.in))
			if tc.err {
				if err == nil || !errors.Is(err, bridge.ErrEnvSyntax) {
					t.Fatalf("want a syntax error, got %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tc.want {
				if got, ok := f.Get(k); !ok || got != v {
					t.Errorf("%s = %q (%v), want %q", k, got, ok, v)
				}
			}
			if len(f.Keys()) != len(tc.want) {
				t.Errorf("keys %v, want %d", f.Keys(), len(tc.want))
			}
		})
	}
}

func TestEnvFileSetKeepsOtherLines(t *testing.T) {
	in := "# header\nexport KEEP='x y'\nA=old\nweird line\nA=older-dup\n"
	f, err := bridge.ParseEnvFile([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	f.Set("A", "new value with \"quotes\" and $dollar")
	f.Set("B", "plain")
	f.Delete("NOPE")
	out := string(f.Bytes())
	for _, want := range []string{"# header\n", "export KEEP='x y'\n", "weird line\n", "B=plain\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Count(out, "A=") != 1 || strings.Contains(out, "old") {
		t.Errorf("A not replaced once:\n%s", out)
	}
	back, err := bridge.ParseEnvFile([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := back.Get("A"); v != "new value with \"quotes\" and $dollar" {
		t.Errorf("A read back as %q", v)
	}
	if v, _ := back.Get("KEEP"); v != "x y" {
		t.Errorf("KEEP read back as %q", v)
	}
}
