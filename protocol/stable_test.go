package protocol

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode/utf16"
)

func TestStableTraps(t *testing.T) {
	cases := []struct {
		name string
		in   any
		want string
	}{
		{"html characters raw", map[string]any{"t": "<a>&b"}, `{"t":"<a>&b"}`},
		{"line and paragraph separators raw", "a\u2028b\u2029c", "\"a\u2028b\u2029c\""},
		{"short escapes", "\b\f\n\r\t", `"\b\f\n\r\t"`},
		{"other controls lower-case hex", "\x00\x0b\x1f", `"\u0000\u000b\u001f"`},
		{"DEL raw", "\x7f", "\"\x7f\""},
		{"quote and backslash", `"\`, `"\"\\"`},
		{"slash raw", "a/b", `"a/b"`},
		{"integer", int64(1771465000), `1771465000`},
		{"negative zero", math.Copysign(0, -1), `0`},
		{"float", 1.5, `1.5`},
		{"large float exponent", 1e21, `1e+21`},
		{"below exponent threshold", 1e20, `100000000000000000000`},
		{"small float", 1e-7, `1e-7`},
		{"small float plain", 0.000001, `0.000001`},
		{"json number integer", json.Number("42"), `42`},
		{"json number float", json.Number("2.50"), `2.5`},
		{"json number exponent", json.Number("1E3"), `1000`},
		{"key order by UTF-16", map[string]any{"b": 1, "a": 2, "B": 3, "\U0001F600": 4, "\uFF01": 5},
			"{\"B\":3,\"a\":2,\"b\":1,\"\U0001F600\":4,\"\uFF01\":5}"},
		{"empty containers", map[string]any{"a": []any{}, "o": map[string]any{}, "s": []string{}}, `{"a":[],"o":{},"s":[]}`},
		{"null and bools", []any{nil, true, false}, `[null,true,false]`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Stable(c.in)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != c.want {
				t.Fatalf("got %q, want %q", got, c.want)
			}
		})
	}
}

// TestLessUTF16 checks the byte-order fast path against the UTF-16 definition.
func TestLessUTF16(t *testing.T) {
	keys := []string{"", "a", "B", "ab", "\u00e9", "\uE000", "\uFF01", "\uFFFF", "\U00010000", "\U0001F600", "a\U0001F600", "a\uFF01"}
	for _, x := range keys {
		for _, y := range keys {
			ux, uy := utf16.Encode([]rune(x)), utf16.Encode([]rune(y))
			want := slices.Compare(ux, uy) < 0
			if got := lessUTF16(x, y); got != want {
				t.Errorf("lessUTF16(%+q, %+q) = %v, want %v", x, y, got, want)
			}
		}
	}
}

func TestStableRejects(t *testing.T) {
	deep := any("x")
	for i := 0; i < 100; i++ {
		deep = []any{deep}
	}
	for name, in := range map[string]any{
		"invalid utf-8":    "\xff",
		"NaN":              math.NaN(),
		"infinity":         math.Inf(1),
		"unsupported type": struct{}{},
		"too deep":         deep,
		"bad number":       json.Number("1x"),
	} {
		if _, err := Stable(in); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestValidateID(t *testing.T) {
	for _, c := range []struct {
		id string
		ok bool
	}{
		{"T0123ABCD", true}, {"E01.org:x-y_z", true}, {strings.Repeat("a", 128), true},
		{"", false}, {strings.Repeat("a", 129), false}, {"-T1", false}, {"T1|2", false},
		{"T 1", false}, {"T1\n", false}, {"Tü", false},
	} {
		if err := ValidateID(c.id); (err == nil) != c.ok {
			t.Errorf("ValidateID(%q) = %v, want ok=%v", c.id, err, c.ok)
		}
	}
	if id, err := ResolveOrgID("", "T1"); err != nil || id != "T1" {
		t.Errorf("workspace_id only: %q %v", id, err)
	}
	if _, err := ResolveOrgID("T1", "T2"); err == nil {
		t.Error("differing org_id and workspace_id accepted")
	}
	if _, err := ResolveOrgID("", ""); err == nil {
		t.Error("missing id accepted")
	}
}

func TestPullLimits(t *testing.T) {
	n := func(i int) *int { return &i }
	for _, c := range []struct {
		max, wait    *int
		wantM, wantW int
		ok           bool
	}{
		{nil, nil, 10, 0, true}, {n(1), n(25), 1, 25, true}, {n(100), n(0), 100, 0, true},
		{n(0), nil, 0, 0, false}, {n(101), nil, 0, 0, false}, {nil, n(26), 0, 0, false}, {nil, n(-1), 0, 0, false},
	} {
		r := PullRequest{MaxMessages: c.max, WaitSeconds: c.wait}
		m, w, err := r.Limits()
		if (err == nil) != c.ok || (c.ok && (m != c.wantM || w != c.wantW)) {
			t.Errorf("Limits(%v,%v) = %d,%d,%v", c.max, c.wait, m, w, err)
		}
	}
	var r PullRequest
	if err := json.Unmarshal([]byte(`{"max_messages":"10"}`), &r); err == nil {
		t.Error("string max_messages decoded without error")
	}
}

// FuzzStable checks that Stable never panics and that its output is valid
// JSON that decodes to the same value as its input.
func FuzzStable(f *testing.F) {
	for _, s := range []string{`{"b":2,"a":[1,"x",null,true]}`, `"a\u2028<>&"`, `1e21`, `-0.0`, `{"\u0000":"\u001f"}`, `[[[]]]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if !json.Valid(data) {
			return
		}
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		var in any
		if err := dec.Decode(&in); err != nil {
			return
		}
		out, err := Stable(in)
		if err != nil {
			return // e.g. numbers beyond float64 range, nesting too deep
		}
		if !json.Valid(out) {
			t.Fatalf("invalid JSON output %q", out)
		}
		var a, b any
		if json.Unmarshal(data, &a) != nil || json.Unmarshal(out, &b) != nil {
			t.Fatal("decode failed")
		}
		if !reflect.DeepEqual(a, b) { // float ==, so -0 equals 0 as in JavaScript
			t.Fatalf("value changed:\n in  %q\n out %q", data, out)
		}
		again, err := Stable(b)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("not idempotent: %q vs %q (%v)", out, again, err)
		}
	})
}
