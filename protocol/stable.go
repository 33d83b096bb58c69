package protocol

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// ErrUnstable is returned by Stable for values JavaScript's JSON.stringify
// cannot reproduce: invalid UTF-8, NaN or infinite numbers, unsupported
// types.
var ErrUnstable = errors.New("protocol: value has no canonical form")

// Stable returns the canonical JSON of v: object keys sorted by UTF-16 code
// units, no whitespace, strings and numbers escaped exactly as JavaScript's
// JSON.stringify does. v may be built from map[string]any, []any, []string,
// string, bool, nil, json.Number, float64 and Go integer types — the values
// encoding/json produces when decoding with UseNumber, plus what the signing
// helpers build.
func Stable(v any) ([]byte, error) {
	var b strings.Builder
	if err := writeStable(&b, v, 0); err != nil {
		return nil, err
	}
	return []byte(b.String()), nil
}

const maxStableDepth = 64

func writeStable(b *strings.Builder, v any, depth int) error {
	if depth > maxStableDepth {
		return fmt.Errorf("%w: nested deeper than %d", ErrUnstable, maxStableDepth)
	}
	switch x := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		if x {
			b.WriteString("true")
		} else {
			b.WriteString("false")
		}
	case string:
		return writeString(b, x)
	case json.Number:
		return writeNumber(b, x)
	case float64:
		return writeFloat(b, x)
	case int:
		b.WriteString(strconv.FormatInt(int64(x), 10))
	case int64:
		b.WriteString(strconv.FormatInt(x, 10))
	case int32:
		b.WriteString(strconv.FormatInt(int64(x), 10))
	case uint32:
		b.WriteString(strconv.FormatUint(uint64(x), 10))
	case uint64:
		b.WriteString(strconv.FormatUint(x, 10))
	case []string:
		b.WriteByte('[')
		for i, s := range x {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := writeString(b, s); err != nil {
				return err
			}
		}
		b.WriteByte(']')
	case []any:
		b.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := writeStable(b, e, depth+1); err != nil {
				return err
			}
		}
		b.WriteByte(']')
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool { return lessUTF16(keys[i], keys[j]) })
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := writeString(b, k); err != nil {
				return err
			}
			b.WriteByte(':')
			if err := writeStable(b, x[k], depth+1); err != nil {
				return err
			}
		}
		b.WriteByte('}')
	default:
		return fmt.Errorf("%w: unsupported type %s", ErrUnstable, reflect.TypeOf(v))
	}
	return nil
}

// lessUTF16 orders strings by UTF-16 code units, as JavaScript's default sort
// does. UTF-8 byte order is code point order, which differs from UTF-16 order
// only when a character above U+FFFF (a 4-byte UTF-8 sequence, lead byte
// ≥ 0xF0) meets one in U+E000–U+FFFF; every other pair, including all the
// ASCII keys signed on the hot path, compares as plain strings.
func lessUTF16(a, b string) bool {
	if !hasAstral(a) && !hasAstral(b) {
		return a < b
	}
	ua, ub := utf16.Encode([]rune(a)), utf16.Encode([]rune(b))
	for i := 0; i < len(ua) && i < len(ub); i++ {
		if ua[i] != ub[i] {
			return ua[i] < ub[i]
		}
	}
	return len(ua) < len(ub)
}

func hasAstral(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0xF0 {
			return true
		}
	}
	return false
}

const hexDigits = "0123456789abcdef"

// writeString escapes s as JSON.stringify does: only '"', '\\' and control
// characters below U+0020 are escaped; '<', '>', '&', U+007F, U+2028 and
// U+2029 are written raw.
func writeString(b *strings.Builder, s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: string is not valid UTF-8", ErrUnstable)
	}
	b.WriteByte('"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b.WriteString(s[start:i])
		switch c {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\b':
			b.WriteString(`\b`)
		case '\f':
			b.WriteString(`\f`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			b.WriteString(`\u00`)
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&0xf])
		}
		start = i + 1
	}
	b.WriteString(s[start:])
	b.WriteByte('"')
	return nil
}

func writeNumber(b *strings.Builder, n json.Number) error {
	s := string(n)
	if i, err := strconv.ParseInt(s, 10, 64); err == nil && i < 1<<53 && i > -(1<<53) {
		b.WriteString(strconv.FormatInt(i, 10))
		return nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return fmt.Errorf("%w: number %q", ErrUnstable, s)
	}
	return writeFloat(b, f)
}

// writeFloat formats f as ECMAScript's Number::toString (shortest round-trip
// digits, exponent form outside 1e-7 < |f| < 1e21).
func writeFloat(b *strings.Builder, f float64) error {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return fmt.Errorf("%w: NaN or infinite number", ErrUnstable)
	}
	if f == 0 {
		b.WriteByte('0') // JSON.stringify(-0) is "0"
		return nil
	}
	if f < 0 {
		b.WriteByte('-')
		f = -f
	}
	// Shortest digits and decimal exponent: d.ddddde±x.
	e := strconv.FormatFloat(f, 'e', -1, 64)
	mant, expStr, _ := strings.Cut(e, "e")
	digits := strings.Replace(mant, ".", "", 1)
	exp, _ := strconv.Atoi(expStr)
	k := len(digits)
	n := exp + 1 // position of the decimal point relative to the digits
	switch {
	case k <= n && n <= 21:
		b.WriteString(digits)
		b.WriteString(strings.Repeat("0", n-k))
	case 0 < n && n <= 21:
		b.WriteString(digits[:n])
		b.WriteByte('.')
		b.WriteString(digits[n:])
	case -6 < n && n <= 0:
		b.WriteString("0.")
		b.WriteString(strings.Repeat("0", -n))
		b.WriteString(digits)
	default:
		b.WriteByte(digits[0])
		if k > 1 {
			b.WriteByte('.')
			b.WriteString(digits[1:])
		}
		b.WriteByte('e')
		if n-1 >= 0 {
			b.WriteByte('+')
		}
		b.WriteString(strconv.Itoa(n - 1))
	}
	return nil
}
