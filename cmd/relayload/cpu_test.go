package main

import (
	"strings"
	"testing"
	"time"
)

// TestParseStat reads utime+stime past command names with spaces and
// parentheses, and refuses short or garbled lines.
func TestParseStat(t *testing.T) {
	t.Parallel()
	rest := " S 1 2 3 4 5 6 7 8 9 10 150 25 0 0 20 0 1 0 100 1000 10"
	tests := []struct {
		name, line string
		want       time.Duration
		wantErr    string
	}{
		{name: "plain", line: "123 (broker)" + rest, want: 1750 * time.Millisecond},
		{name: "spaces and parens", line: "123 (a (b) c)" + rest, want: 1750 * time.Millisecond},
		{name: "no name", line: "123 broker S 1", wantErr: "no command name"},
		{name: "short", line: "123 (x) S 1 2 3", wantErr: "fields"},
		{name: "not a number", line: "123 (x) S 1 2 3 4 5 6 7 8 9 10 x 25 0", wantErr: "CPU time"},
		{name: "huge", line: "123 (x) S 1 2 3 4 5 6 7 8 9 10 4611686018427387903 25 0", wantErr: "out of range"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseStat([]byte(tc.line))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("parseStat: %v, want error %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("parseStat = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}
