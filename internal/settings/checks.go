package settings

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Optional wraps check so that the empty value passes.
func Optional(check func(string) error) func(string) error {
	return func(text string) error {
		if text == "" {
			return nil
		}
		return check(text)
	}
}

// IntRange accepts a whole number from lo to hi.
func IntRange(lo, hi int) func(string) error {
	return func(text string) error {
		n, err := strconv.Atoi(text)
		if err != nil || n < lo || n > hi {
			return fmt.Errorf("is not a whole number from %d to %d", lo, hi)
		}
		return nil
	}
}

// DurationRange accepts a duration (or days, "90d") from lo to hi; the
// error ends with hint, e.g. "use e.g. 30s".
func DurationRange(lo, hi time.Duration, hint string) func(string) error {
	return func(text string) error {
		d, err := ParseDays(text)
		if err != nil || d < lo || d > hi {
			return fmt.Errorf("is not a duration from %v to %v: %s", lo, hi, hint)
		}
		return nil
	}
}

// Bool accepts true or false (and the other forms of strconv.ParseBool,
// such as 1 and 0).
func Bool(text string) error {
	if _, err := strconv.ParseBool(text); err != nil {
		return errors.New("is not true or false")
	}
	return nil
}

// OneOf accepts one of choices, ignoring case.
func OneOf(choices ...string) func(string) error {
	return func(text string) error {
		for _, c := range choices {
			if strings.EqualFold(text, c) {
				return nil
			}
		}
		return fmt.Errorf("is not one of %s", strings.Join(choices, ", "))
	}
}

// ListenAddr accepts HOST:PORT with a numeric port (empty HOST = every
// interface).
func ListenAddr(text string) error {
	if text == "" {
		return errors.New("is empty: use HOST:PORT such as :8080")
	}
	_, port, err := net.SplitHostPort(text)
	if err == nil {
		_, err = strconv.ParseUint(port, 10, 16)
	}
	if err != nil {
		return errors.New("is not a listen address: use HOST:PORT such as :8080 or 127.0.0.1:9090")
	}
	return nil
}

// HTTPURL accepts an absolute http(s) URL without user, query or fragment.
func HTTPURL(text string) error {
	u, err := url.Parse(text)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return errors.New("is not an absolute http(s) URL without query: use e.g. https://relay.example.com")
	}
	return nil
}

// Int accepts any whole number (range checks with their own messages stay
// with the caller).
func Int(text string) error {
	if _, err := strconv.Atoi(text); err != nil {
		return errors.New("is not a whole number")
	}
	return nil
}
