package bridge

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/sealrelay/sealrelay/internal/atomicfile"
)

// Variable names of the configuration file. They are the Baudbot bridge's
// names, so either bridge can read the other's file.
const (
	EnvBrokerURL            = "SLACK_BROKER_URL"
	EnvOrgID                = "SLACK_BROKER_ORG_ID"
	EnvWorkspaceID          = "SLACK_BROKER_WORKSPACE_ID"
	EnvServerPrivateKey     = "SLACK_BROKER_SERVER_PRIVATE_KEY"
	EnvServerPublicKey      = "SLACK_BROKER_SERVER_PUBLIC_KEY"
	EnvServerSigningKey     = "SLACK_BROKER_SERVER_SIGNING_PRIVATE_KEY"
	EnvServerSigningPubKey  = "SLACK_BROKER_SERVER_SIGNING_PUBLIC_KEY"
	EnvBrokerPublicKey      = "SLACK_BROKER_PUBLIC_KEY"
	EnvBrokerSigningPubKey  = "SLACK_BROKER_SIGNING_PUBLIC_KEY"
	EnvAccessToken          = "SLACK_BROKER_ACCESS_TOKEN"
	EnvAccessTokenExpiresAt = "SLACK_BROKER_ACCESS_TOKEN_EXPIRES_AT"
)

// sealrelay's own variables (a Baudbot bridge ignores them).
const (
	// EnvAccessTokenIssuedAt is when the broker issued the access token
	// (RFC 3339); with the expiry it gives the lifetime `bridge run`
	// renews at a third of.
	EnvAccessTokenIssuedAt = "SLACK_BROKER_ACCESS_TOKEN_ISSUED_AT"
	// EnvPreviousServerPrivateKey is the box private key `bridge
	// rotate-keys` replaced, kept to open messages sealed to it before.
	EnvPreviousServerPrivateKey = "SLACK_BROKER_PREVIOUS_SERVER_PRIVATE_KEY"
	// EnvPreviousServerKeyRetiredAt is when that key was replaced.
	EnvPreviousServerKeyRetiredAt = "SLACK_BROKER_PREVIOUS_SERVER_KEY_RETIRED_AT"
	// EnvPendingServerPrivateKey and EnvPendingServerSigningKey hold the
	// keys of a `bridge rotate-keys` whose broker call has not been
	// confirmed yet; running it again finishes the rotation.
	EnvPendingServerPrivateKey = "SLACK_BROKER_PENDING_SERVER_PRIVATE_KEY"
	EnvPendingServerSigningKey = "SLACK_BROKER_PENDING_SERVER_SIGNING_PRIVATE_KEY"
)

// secretKeys are cleared by unregister.
var secretKeys = []string{
	EnvServerPrivateKey, EnvServerPublicKey, EnvServerSigningKey, EnvServerSigningPubKey,
	EnvBrokerPublicKey, EnvBrokerSigningPubKey, EnvAccessToken, EnvAccessTokenExpiresAt,
	EnvAccessTokenIssuedAt, EnvPreviousServerPrivateKey, EnvPreviousServerKeyRetiredAt,
	EnvPendingServerPrivateKey, EnvPendingServerSigningKey,
}

// MaxEnvFileSize bounds the configuration file read by ReadEnvFile.
const MaxEnvFileSize = 1 << 20

// EnvFile is a parsed dotenv-style file that remembers every line, so that it
// can be written back with only some variables changed. It understands
// KEY=VALUE, "export KEY=VALUE", single- and double-quoted values, comments
// and blank lines; lines it does not understand are kept verbatim.
type EnvFile struct {
	lines []envLine
}

type envLine struct {
	raw   string // verbatim text, used when key == "" or the value is unchanged
	key   string
	value string
}

// ErrEnvSyntax is wrapped by ParseEnvFile errors.
var ErrEnvSyntax = errors.New("env file syntax")

// ParseEnvFile parses data. It fails only on an unterminated quoted value or
// an invalid variable name in an assignment; any other line is kept as-is.
func ParseEnvFile(data []byte) (*EnvFile, error) {
	f := &EnvFile{}
	text := strings.ReplaceAll(string(data), "\r\n", "\n")
	text = strings.TrimSuffix(text, "\n")
	if text == "" {
		return f, nil
	}
	for i, raw := range strings.Split(text, "\n") {
		line := strings.TrimSpace(raw)
		if line == "" || strings.HasPrefix(line, "#") {
			f.lines = append(f.lines, envLine{raw: raw})
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			f.lines = append(f.lines, envLine{raw: raw})
			continue
		}
		k = strings.TrimSpace(k)
		if !validEnvName(k) {
			return nil, fmt.Errorf("%w: line %d: invalid variable name", ErrEnvSyntax, i+1)
		}
		val, err := parseEnvValue(strings.TrimSpace(v))
		if err != nil {
			return nil, fmt.Errorf("%w: line %d (%s): %v", ErrEnvSyntax, i+1, k, err)
		}
		f.lines = append(f.lines, envLine{raw: raw, key: k, value: val})
	}
	return f, nil
}

func validEnvName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		switch {
		case c == '_', c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

func parseEnvValue(v string) (string, error) {
	if v == "" {
		return "", nil
	}
	switch v[0] {
	case '\'':
		end := strings.IndexByte(v[1:], '\'')
		if end < 0 {
			return "", errors.New("unterminated single quote")
		}
		if rest := strings.TrimSpace(v[end+2:]); rest != "" && !strings.HasPrefix(rest, "#") {
			return "", errors.New("text after closing quote")
		}
		return v[1 : end+1], nil
	case '"':
		var b strings.Builder
		for i := 1; i < len(v); i++ {
			c := v[i]
			switch c {
			case '\\':
				if i+1 >= len(v) {
					return "", errors.New("unterminated double quote")
				}
				i++
				switch v[i] {
				case 'n':
					b.WriteByte('\n')
				case 'r':
					b.WriteByte('\r')
				case 't':
					b.WriteByte('\t')
				default:
					b.WriteByte(v[i])
				}
			case '"':
				if rest := strings.TrimSpace(v[i+1:]); rest != "" && !strings.HasPrefix(rest, "#") {
					return "", errors.New("text after closing quote")
				}
				return b.String(), nil
			default:
				b.WriteByte(c)
			}
		}
		return "", errors.New("unterminated double quote")
	}
	// Unquoted: an inline comment starts at " #".
	if i := strings.Index(v, " #"); i >= 0 {
		v = v[:i]
	}
	return strings.TrimSpace(v), nil
}

// Get returns the last value assigned to key.
func (f *EnvFile) Get(key string) (string, bool) {
	for i := len(f.lines) - 1; i >= 0; i-- {
		if f.lines[i].key == key {
			return f.lines[i].value, true
		}
	}
	return "", false
}

// Set assigns key, replacing its existing line(s) in place or appending a
// new line.
func (f *EnvFile) Set(key, value string) {
	found := false
	out := f.lines[:0]
	for _, l := range f.lines {
		if l.key == key {
			if found {
				continue
			}
			found = true
			l = envLine{key: key, value: value, raw: key + "=" + quoteEnvValue(value)}
		}
		out = append(out, l)
	}
	f.lines = out
	if !found {
		f.lines = append(f.lines, envLine{key: key, value: value, raw: key + "=" + quoteEnvValue(value)})
	}
}

// Delete removes every assignment of key.
func (f *EnvFile) Delete(key string) {
	out := f.lines[:0]
	for _, l := range f.lines {
		if l.key != key {
			out = append(out, l)
		}
	}
	f.lines = out
}

// Keys returns the assigned variable names in file order (duplicates once).
func (f *EnvFile) Keys() []string {
	seen := map[string]bool{}
	var ks []string
	for _, l := range f.lines {
		if l.key != "" && !seen[l.key] {
			seen[l.key] = true
			ks = append(ks, l.key)
		}
	}
	return ks
}

// Bytes renders the file.
func (f *EnvFile) Bytes() []byte {
	var b bytes.Buffer
	for _, l := range f.lines {
		b.WriteString(l.raw)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

func quoteEnvValue(v string) string {
	plain := true
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.IndexByte("+/=:._,-@", c) >= 0) {
			plain = false
			break
		}
	}
	if plain {
		return v
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(v); i++ {
		switch c := v[i]; c {
		case '"', '\\', '$', '`':
			b.WriteByte('\\')
			b.WriteByte(c)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// ReadEnvFile reads and parses path. A missing file yields an empty EnvFile
// and an error satisfying errors.Is(err, os.ErrNotExist).
func ReadEnvFile(path string) (*EnvFile, error) {
	fh, err := os.Open(path)
	if err != nil {
		return &EnvFile{}, fmt.Errorf("read config %s: %w", path, err)
	}
	defer fh.Close()
	data, err := readLimited(fh, MaxEnvFileSize)
	if err != nil {
		return nil, fmt.Errorf("read config %s: %w", path, err)
	}
	f, err := ParseEnvFile(data)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return f, nil
}

// WriteEnvFile writes f to path atomically (temporary file and rename) with
// mode 0600, creating the directory with mode 0700 when needed.
func WriteEnvFile(path string, f *EnvFile) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create config directory: %w", err)
	}
	if err := atomicfile.Write(path, f.Bytes(), 0o600); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	return nil
}
