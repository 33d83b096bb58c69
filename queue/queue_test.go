package queue

import (
	"errors"
	"strings"
	"testing"
)

func TestParseReceipt(t *testing.T) {
	cases := []struct {
		in     string
		id     string
		n      int
		wantOK bool
	}{
		{"17", "17", 0, true},
		{"17#1", "17", 1, true},
		{"17#10", "17", 10, true},
		{"m-1#3", "m-1", 3, true},
		{"", "", 0, false},
		{"#", "", 0, false},
		{"#2", "", 0, false},
		{"17#", "", 0, false},
		{"17#0", "", 0, false},
		{"17#-1", "", 0, false},
		{"17#x", "", 0, false},
		{"17#1#2", "", 0, false},
	}
	for _, tc := range cases {
		id, n, ok := ParseReceipt(tc.in)
		if id != tc.id || n != tc.n || ok != tc.wantOK {
			t.Errorf("ParseReceipt(%q) = %q, %d, %v; want %q, %d, %v", tc.in, id, n, ok, tc.id, tc.n, tc.wantOK)
		}
	}
}

func TestValidateInbox(t *testing.T) {
	cases := []struct {
		name string
		ok   bool
	}{
		{"T0123ABCD", true},
		{"agent-1.team_a:x", true},
		{strings.Repeat("a", 200), true},
		{strings.Repeat("a", 201), false},
		{"", false},
		{"-leading", false},
		{"a{b}", false},
		{"a b", false},
		{"a*", false},
		{"ä", false},
	}
	for _, tc := range cases {
		err := ValidateInbox(tc.name)
		if (err == nil) != tc.ok {
			t.Errorf("ValidateInbox(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidInbox) {
			t.Errorf("ValidateInbox(%q) error %v is not ErrInvalidInbox", tc.name, err)
		}
	}
}

func FuzzParseReceipt(f *testing.F) {
	for _, s := range []string{"17", "17#1", "", "#", "a#b", "1#99999999999999999999", "1#+1", "x#1#2", "0#0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, n, ok := ParseReceipt(s)
		if !ok {
			if id != "" || n != 0 {
				t.Fatalf("ParseReceipt(%q) failed but returned %q, %d", s, id, n)
			}
			return
		}
		if id == "" || strings.Contains(id, "#") || n < 0 {
			t.Fatalf("ParseReceipt(%q) = %q, %d", s, id, n)
		}
		if n == 0 && id != s {
			t.Fatalf("bare receipt %q parsed to id %q", s, id)
		}
		if n > 0 {
			id2, n2, ok2 := ParseReceipt(FormatReceipt(id, n))
			if !ok2 || id2 != id || n2 != n {
				t.Fatalf("round trip of %q: %q, %d, %v", s, id2, n2, ok2)
			}
		}
	})
}
