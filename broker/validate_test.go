package broker

import (
	"regexp"
	"strings"
	"testing"

	"github.com/sealrelay/sealrelay/protocol"
)

// requestIDRef is the pattern validRequestID implements.
var requestIDRef = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

var idSamples = []string{
	"", "T0ABC", "E0ORG", "a", ".", "-x", "x-", "T.1:2_3-4", "_T", ":T", "T/1", "T 1", "T\n", "é", "T\x00",
	strings.Repeat("a", 64), strings.Repeat("a", 65), strings.Repeat("a", 128), strings.Repeat("a", 129),
	"req-ABC.def_123", "a\xff",
}

func TestValidIDMatchesProtocol(t *testing.T) {
	t.Parallel()
	for _, id := range idSamples {
		if got, want := validID(id), protocol.ValidateID(id) == nil; got != want {
			t.Errorf("validID(%q) = %v, protocol.ValidateID accepts: %v", id, got, want)
		}
		if got, want := validRequestID(id), requestIDRef.MatchString(id); got != want {
			t.Errorf("validRequestID(%q) = %v, pattern: %v", id, got, want)
		}
	}
}

func FuzzValidID(f *testing.F) {
	for _, id := range idSamples {
		f.Add(id)
	}
	f.Fuzz(func(t *testing.T, id string) {
		if got, want := validID(id), protocol.ValidateID(id) == nil; got != want {
			t.Fatalf("validID(%q) = %v, protocol.ValidateID accepts: %v", id, got, want)
		}
		if got, want := validRequestID(id), requestIDRef.MatchString(id); got != want {
			t.Fatalf("validRequestID(%q) = %v, pattern: %v", id, got, want)
		}
	})
}
