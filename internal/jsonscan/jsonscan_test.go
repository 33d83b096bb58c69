package jsonscan_test

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/sealrelay/sealrelay/internal/jsonscan"
)

// documents are JSON texts, valid and not, near the edges of the grammar.
var documents = []string{
	`{}`, `[]`, `null`, `true`, `false`, `0`, `-0`, `1.5e+3`, `-1E-2`, `""`, `"a\"\\\/\b\f\n\r\t\u00e9"`,
	` { "a" : [ 1 , { "b" : null } ] } `, "\t\r\n{}\n", `{"a":1,"a":2}`, "\"\x7f\"", "\"\xff\"",
	``, ` `, `{`, `}`, `[`, `{"a"}`, `{"a":}`, `{"a":1,}`, `[1,]`, `[,1]`, `{,}`, `{1:2}`, `{"a":1} x`,
	`01`, `1.`, `.1`, `-`, `1e`, `1e+`, `+1`, `tru`, `nul`, `truex`, `"\q"`, `"\u12"`, `"\u12g4"`,
	"\"a\x01\"", `"abc`, `"\`, `[1 2]`, `{"a" 1}`, "\v1", `NaN`, `1 2`,
	strings.Repeat("[", jsonscan.MaxDepth) + strings.Repeat("]", jsonscan.MaxDepth),
	strings.Repeat("[", jsonscan.MaxDepth+1) + strings.Repeat("]", jsonscan.MaxDepth+1),
	strings.Repeat(`{"a":`, jsonscan.MaxDepth) + "1" + strings.Repeat("}", jsonscan.MaxDepth),
	strings.Repeat(`{"a":`, jsonscan.MaxDepth+1) + "1" + strings.Repeat("}", jsonscan.MaxDepth+1),
}

// checkDocument fails unless Valid agrees with json.Valid on b, and, for
// an object, unless the keys and plain string values Object hands out
// are those json.Unmarshal decodes.
func checkDocument(t *testing.T, b []byte) {
	t.Helper()
	if got, want := jsonscan.Valid(b), json.Valid(b); got != want {
		t.Fatalf("Valid(%.100q) = %v, json.Valid %v", b, got, want)
	}
	var want map[string]json.RawMessage
	if json.Unmarshal(b, &want) != nil || want == nil {
		return
	}
	s := jsonscan.New(b)
	last := map[string]string{} // plain key -> its last plain string value ("\x00" otherwise)
	escapedKey := false         // an escaped key may overwrite a plain one
	ok := s.Object(func(key []byte, plain bool) bool {
		escapedKey = escapedKey || !plain
		if plain {
			if _, in := want[string(key)]; !in {
				t.Fatalf("plain key %q not decoded by encoding/json from %.100q", key, b)
			}
			last[string(key)] = "\x00"
		}
		if s.Peek() != '"' {
			return s.Skip()
		}
		raw, plainv, ok := s.String()
		if plain && plainv {
			last[string(key)] = string(raw)
		}
		return ok
	})
	if !ok || !s.AtEnd() {
		t.Fatalf("Object refused %.100q, which encoding/json decodes", b)
	}
	for k, v := range last {
		var w string
		if !escapedKey && v != "\x00" && (json.Unmarshal(want[k], &w) != nil || w != v) {
			t.Fatalf("key %q: plain string %q, encoding/json %q (%.100q)", k, v, w, b)
		}
	}
}

func TestValidMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	for _, d := range documents {
		checkDocument(t, []byte(d))
	}
}

func TestString(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in, raw   string
		plain, ok bool
	}{
		{`"abc"`, "abc", true, true},
		{` "a b" `, "a b", true, true},
		{`"a\nb"`, `a\nb`, false, true},
		{`"é"`, "é", false, true},
		{"\"\x7f\"", "\x7f", true, true},
		{`"\u00e9"`, `\u00e9`, false, true},
		{`"abc`, "", false, false},
		{`abc"`, "", false, false},
		{"\"a\tb\"", "", false, false},
		{`"\x"`, "", false, false},
	} {
		s := jsonscan.New([]byte(tc.in))
		raw, plain, ok := s.String()
		if string(raw) != tc.raw || plain != tc.plain || ok != tc.ok {
			t.Errorf("String(%q) = %q, %v, %v; want %q, %v, %v", tc.in, raw, plain, ok, tc.raw, tc.plain, tc.ok)
		}
	}
}

func TestInt64(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in string
		n  int64
		ok bool
	}{
		{"0", 0, true}, {"-0", 0, true}, {" 42", 42, true}, {"-1771465000", -1771465000, true},
		{"999999999999999999", 999999999999999999, true}, {"1000000000000000000", 0, false},
		{"01", 0, false}, {"1.0", 0, false}, {"1e3", 0, false}, {"1E3", 0, false}, {"-", 0, false},
		{"", 0, false}, {"x", 0, false}, {"+1", 0, false},
	} {
		s := jsonscan.New([]byte(tc.in))
		n, ok := s.Int64()
		if n != tc.n || ok != tc.ok {
			t.Errorf("Int64(%q) = %d, %v; want %d, %v", tc.in, n, ok, tc.n, tc.ok)
		}
		if ok {
			if want, err := strconv.ParseInt(strings.TrimSpace(tc.in), 10, 64); err != nil || want != n {
				t.Errorf("Int64(%q) = %d, strconv %d, %v", tc.in, n, want, err)
			}
		}
	}
}

func TestObjectArrayAndSince(t *testing.T) {
	t.Parallel()
	s := jsonscan.New([]byte(` {"a": [1, "x", {"b": true}], "B": null, "c": false} `))
	var keys []string
	var rawA string
	var elems int
	ok := s.Object(func(key []byte, plain bool) bool {
		keys = append(keys, string(key))
		switch {
		case jsonscan.KeyIs(key, plain, "a"):
			s.Peek()
			start := s.Pos()
			r := s.Array(func() bool { elems++; return s.Skip() })
			rawA = string(s.Since(start))
			return r
		case jsonscan.KeyIs(key, plain, "b"):
			return s.Null()
		}
		v, ok := s.Bool()
		return ok && !v
	})
	if !ok || !s.AtEnd() || strings.Join(keys, ",") != "a,B,c" || elems != 3 || rawA != `[1, "x", {"b": true}]` {
		t.Fatalf("Object = %v, keys %v, elems %d, raw a %q", ok, keys, elems, rawA)
	}
}

func TestKeyIs(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		key   string
		plain bool
		want  bool
	}{
		{"type", true, true}, {"TYPE", true, true}, {"Type", true, true}, {"typ", true, false}, {"types", true, false},
		{`\u0074ype`, false, true}, {`\u0074yp`, false, false}, {"ſype", false, false}, {`t\q`, false, false},
	} {
		if got := jsonscan.KeyIs([]byte(tc.key), tc.plain, "type"); got != tc.want {
			t.Errorf("KeyIs(%q, %v, type) = %v, want %v", tc.key, tc.plain, got, tc.want)
		}
	}
	// encoding/json agrees on each.
	for _, k := range []string{"TYPE", `\u0074ype`, "ſype"} {
		var v struct{ Type string }
		if err := json.Unmarshal([]byte(`{"`+k+`":"x"}`), &v); err != nil {
			t.Fatal(err)
		}
		if got := jsonscan.KeyIs([]byte(k), k == "TYPE", "type"); got != (v.Type == "x") {
			t.Errorf("KeyIs(%q) = %v, encoding/json matched %v", k, got, v.Type == "x")
		}
	}
}

func FuzzValid(f *testing.F) {
	for _, d := range documents {
		f.Add([]byte(d))
	}
	f.Fuzz(func(t *testing.T, b []byte) { checkDocument(t, b) })
}

// TestOrNull checks Raw and the *OrNull readers: what they store, that
// null leaves the destination as it was, and that anything they are not
// sure of reports false.
func TestOrNull(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in       string
		str      string // "keep": unchanged
		strOK    bool
		b        bool
		bOK      bool
		n        int64
		nOK      bool
		raw      string
		rawValid bool
	}{
		{in: ` null `, str: "keep", strOK: true, b: true, bOK: true, n: 7, nOK: true, raw: "null", rawValid: true},
		{in: `"abc"`, str: "abc", strOK: true, b: true, n: 7, raw: `"abc"`, rawValid: true},
		{in: `"a\"b"`, str: "keep", b: true, n: 7, raw: `"a\"b"`, rawValid: true},
		{in: `false`, str: "keep", b: false, bOK: true, n: 7, raw: "false", rawValid: true},
		{in: `-12`, str: "keep", b: true, n: -12, nOK: true, raw: "-12", rawValid: true},
		{in: `1.5`, str: "keep", b: true, n: 7, raw: "1.5", rawValid: true},
		{in: ` {"a": [1, 2]} `, str: "keep", b: true, n: 7, raw: `{"a": [1, 2]}`, rawValid: true},
		{in: `{"a": }`, str: "keep", b: true, n: 7},
		{in: `nul`, str: "keep", b: true, n: 7},
	} {
		str, b, n := "keep", true, int64(7)
		s := jsonscan.New([]byte(tc.in))
		if ok := s.StringOrNull(&str); ok != tc.strOK || str != tc.str {
			t.Errorf("StringOrNull(%s) = %q, %v; want %q, %v", tc.in, str, ok, tc.str, tc.strOK)
		}
		s = jsonscan.New([]byte(tc.in))
		if ok := s.BoolOrNull(&b); ok != tc.bOK || b != tc.b {
			t.Errorf("BoolOrNull(%s) = %v, %v; want %v, %v", tc.in, b, ok, tc.b, tc.bOK)
		}
		s = jsonscan.New([]byte(tc.in))
		if ok := s.Int64OrNull(&n); ok != tc.nOK || n != tc.n {
			t.Errorf("Int64OrNull(%s) = %d, %v; want %d, %v", tc.in, n, ok, tc.n, tc.nOK)
		}
		s = jsonscan.New([]byte(tc.in))
		if raw, ok := s.Raw(); ok != tc.rawValid || string(raw) != tc.raw {
			t.Errorf("Raw(%s) = %q, %v; want %q, %v", tc.in, raw, ok, tc.raw, tc.rawValid)
		}
	}
}
