package boltstore

import "testing"

// FuzzParseID: parseID accepts only canonical decimal sequence numbers.
func FuzzParseID(f *testing.F) {
	for _, s := range []string{"1", "0", "007", "18446744073709551615", "18446744073709551616", "-1", "+1", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		seq, ok := parseID(s)
		if !ok {
			return
		}
		if seq == 0 || string(seqKeyString(seq)) != s {
			t.Fatalf("parseID(%q) = %d, not canonical", s, seq)
		}
	})
}

func seqKeyString(seq uint64) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + seq%10)
		seq /= 10
		if seq == 0 {
			return string(b[i:])
		}
	}
}
