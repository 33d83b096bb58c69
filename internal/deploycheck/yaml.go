// Package deploycheck keeps the deployment files (compose.yaml, Dockerfile)
// and the configuration reference in docs/ in step with the code. It has no
// API of its own: its tests read ../../compose.yaml, ../../Dockerfile and
// ../../docs/operations.md and compare them with the variables and flags the
// broker and bridge sources define.
//
// To avoid a YAML dependency it carries parseYAML, a reader for the small
// YAML subset compose.yaml is written in (see parseYAML). compose.yaml must
// stay inside that subset; the test fails loudly when it does not.
package deploycheck

import (
	"errors"
	"fmt"
	"strings"
)

// yamlLine is one significant line: its indentation and its content with
// comments and trailing blanks removed.
type yamlLine struct {
	no     int
	indent int
	text   string
}

// errYAML is wrapped by every parse error.
var errYAML = errors.New("yaml")

// parseYAML parses the YAML subset used by compose.yaml into map[string]any,
// []any and string values:
//
//   - block mappings ("key: value", "key:" followed by a more indented
//     block) and block sequences ("- item", "- key: value" starting a
//     mapping), indented with spaces only;
//   - plain, 'single-quoted' and "double-quoted" scalars (all kept as
//     strings), and flow sequences of scalars ("[a, 'b', \"c\"]");
//   - comments starting with '#' at the start of a line or after a blank.
//
// Anything else (tabs, anchors and aliases, block scalars, flow mappings,
// documents markers, duplicate keys) is an error, so that a file outside the
// subset is never misread.
func parseYAML(src string) (any, error) {
	lines, err := yamlLines(src)
	if err != nil {
		return nil, err
	}
	if len(lines) == 0 {
		return map[string]any{}, nil
	}
	p := &yamlParser{lines: lines}
	v, err := p.block(lines[0].indent)
	if err != nil {
		return nil, err
	}
	if p.pos < len(p.lines) {
		l := p.lines[p.pos]
		return nil, fmt.Errorf("%w: line %d: unexpected indentation", errYAML, l.no)
	}
	return v, nil
}

func yamlLines(src string) ([]yamlLine, error) {
	var out []yamlLine
	for i, raw := range strings.Split(strings.ReplaceAll(src, "\r\n", "\n"), "\n") {
		no := i + 1
		trimmed := strings.TrimLeft(raw, " ")
		if strings.HasPrefix(trimmed, "\t") || strings.Contains(raw[:len(raw)-len(trimmed)], "\t") {
			return nil, fmt.Errorf("%w: line %d: tab in indentation", errYAML, no)
		}
		text, err := stripComment(trimmed)
		if err != nil {
			return nil, fmt.Errorf("%w: line %d: %v", errYAML, no, err)
		}
		text = strings.TrimRight(text, " \t")
		if text == "" {
			continue
		}
		if text == "---" || text == "..." || strings.HasPrefix(text, "%") {
			return nil, fmt.Errorf("%w: line %d: document markers and directives are not supported", errYAML, no)
		}
		out = append(out, yamlLine{no: no, indent: len(raw) - len(trimmed), text: text})
	}
	return out, nil
}

// stripComment removes a comment: '#' at the start or after a blank, outside
// quotes.
func stripComment(s string) (string, error) {
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote == '\'':
			if c == '\'' {
				if i+1 < len(s) && s[i+1] == '\'' {
					i++
				} else {
					quote = 0
				}
			}
		case quote == '"':
			if c == '\\' {
				i++
			} else if c == '"' {
				quote = 0
			}
		case c == '#' && (i == 0 || s[i-1] == ' ' || s[i-1] == '\t'):
			return s[:i], nil
		case (c == '\'' || c == '"') && (i == 0 || strings.ContainsRune(" [,:-", rune(s[i-1]))):
			quote = c
		}
	}
	if quote != 0 {
		return "", errors.New("unterminated quoted scalar")
	}
	return s, nil
}

type yamlParser struct {
	lines []yamlLine
	pos   int
}

// block parses the mapping or sequence whose lines start at indent.
func (p *yamlParser) block(indent int) (any, error) {
	l := p.lines[p.pos]
	if l.indent != indent {
		return nil, fmt.Errorf("%w: line %d: bad indentation", errYAML, l.no)
	}
	if l.text == "-" || strings.HasPrefix(l.text, "- ") {
		return p.sequence(indent)
	}
	return p.mapping(indent, nil)
}

func (p *yamlParser) sequence(indent int) ([]any, error) {
	out := []any{}
	for p.pos < len(p.lines) {
		l := p.lines[p.pos]
		if l.indent < indent {
			break
		}
		if l.indent > indent {
			return nil, fmt.Errorf("%w: line %d: unexpected indentation", errYAML, l.no)
		}
		if l.text != "-" && !strings.HasPrefix(l.text, "- ") {
			return nil, fmt.Errorf("%w: line %d: expected a sequence item", errYAML, l.no)
		}
		item := strings.TrimLeft(strings.TrimPrefix(l.text, "-"), " ")
		if item == "" {
			p.pos++
			if p.pos >= len(p.lines) || p.lines[p.pos].indent <= indent {
				out = append(out, "")
				continue
			}
			v, err := p.block(p.lines[p.pos].indent)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
			continue
		}
		if _, _, isKey, err := splitKey(item); err != nil {
			return nil, fmt.Errorf("%w: line %d: %v", errYAML, l.no, err)
		} else if isKey {
			// "- key: value" starts a mapping whose further keys are
			// indented to the column of key.
			inner := indent + (len(l.text) - len(item))
			p.lines[p.pos] = yamlLine{no: l.no, indent: inner, text: item}
			m, err := p.mapping(inner, nil)
			if err != nil {
				return nil, err
			}
			out = append(out, m)
			continue
		}
		v, err := parseScalar(item)
		if err != nil {
			return nil, fmt.Errorf("%w: line %d: %v", errYAML, l.no, err)
		}
		out = append(out, v)
		p.pos++
	}
	return out, nil
}

func (p *yamlParser) mapping(indent int, out map[string]any) (map[string]any, error) {
	if out == nil {
		out = map[string]any{}
	}
	for p.pos < len(p.lines) {
		l := p.lines[p.pos]
		if l.indent < indent {
			break
		}
		if l.indent > indent {
			return nil, fmt.Errorf("%w: line %d: unexpected indentation", errYAML, l.no)
		}
		key, rest, isKey, err := splitKey(l.text)
		if err != nil {
			return nil, fmt.Errorf("%w: line %d: %v", errYAML, l.no, err)
		}
		if !isKey {
			return nil, fmt.Errorf("%w: line %d: expected \"key: value\"", errYAML, l.no)
		}
		if _, dup := out[key]; dup {
			return nil, fmt.Errorf("%w: line %d: duplicate key %q", errYAML, l.no, key)
		}
		p.pos++
		if rest != "" {
			v, err := parseScalar(rest)
			if err != nil {
				return nil, fmt.Errorf("%w: line %d: %v", errYAML, l.no, err)
			}
			out[key] = v
			continue
		}
		if p.pos >= len(p.lines) || p.lines[p.pos].indent <= indent {
			out[key] = "" // null
			continue
		}
		v, err := p.block(p.lines[p.pos].indent)
		if err != nil {
			return nil, err
		}
		out[key] = v
	}
	return out, nil
}

// splitKey splits "key: rest" (or "key:"). isKey is false when s is not a
// mapping entry.
func splitKey(s string) (key, rest string, isKey bool, err error) {
	var k string
	var after string
	switch s[0] {
	case '"', '\'':
		end := closingQuote(s)
		if end < 0 {
			return "", "", false, errors.New("unterminated quoted key")
		}
		after = s[end+1:]
		if !strings.HasPrefix(after, ":") {
			return "", "", false, nil
		}
		k, err = unquote(s[:end+1])
		if err != nil {
			return "", "", false, err
		}
	default:
		i := strings.Index(s, ": ")
		if i < 0 {
			if !strings.HasSuffix(s, ":") {
				return "", "", false, nil
			}
			i = len(s) - 1
		}
		if strings.HasPrefix(s, "[") || strings.HasPrefix(s, "{") {
			return "", "", false, nil
		}
		k, after = s[:i], s[i:]
		if strings.ContainsAny(k, "{}[]&*!|>") {
			return "", "", false, fmt.Errorf("unsupported key %q", k)
		}
	}
	return k, strings.TrimSpace(strings.TrimPrefix(after, ":")), true, nil
}

func closingQuote(s string) int {
	q := s[0]
	for i := 1; i < len(s); i++ {
		switch {
		case q == '"' && s[i] == '\\':
			i++
		case s[i] == q:
			if q == '\'' && i+1 < len(s) && s[i+1] == '\'' {
				i++
				continue
			}
			return i
		}
	}
	return -1
}

func parseScalar(s string) (any, error) {
	switch s[0] {
	case '[':
		return parseFlowSeq(s)
	case '{':
		if s == "{}" {
			return map[string]any{}, nil
		}
		return nil, errors.New("flow mappings are not supported")
	case '&', '*', '!', '|', '>', '@', '`':
		return nil, fmt.Errorf("unsupported YAML feature at %q", s)
	case '"', '\'':
		end := closingQuote(s)
		if end != len(s)-1 {
			return nil, fmt.Errorf("bad quoted scalar %q", s)
		}
		return unquote(s)
	}
	return s, nil
}

func parseFlowSeq(s string) ([]any, error) {
	if !strings.HasSuffix(s, "]") {
		return nil, fmt.Errorf("unterminated flow sequence %q", s)
	}
	body := strings.TrimSpace(s[1 : len(s)-1])
	out := []any{}
	for body != "" {
		var item string
		switch body[0] {
		case '"', '\'':
			end := closingQuote(body)
			if end < 0 {
				return nil, fmt.Errorf("unterminated quoted scalar in %q", s)
			}
			item, body = body[:end+1], strings.TrimSpace(body[end+1:])
		case '[', '{':
			return nil, fmt.Errorf("nested flow collections are not supported: %q", s)
		default:
			i := strings.IndexByte(body, ',')
			if i < 0 {
				i = len(body)
			}
			item, body = strings.TrimSpace(body[:i]), body[i:]
			if item == "" {
				return nil, fmt.Errorf("empty item in flow sequence %q", s)
			}
		}
		v, err := parseScalar(item)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
		if body == "" {
			break
		}
		if body[0] != ',' {
			return nil, fmt.Errorf("expected ',' in %q", s)
		}
		body = strings.TrimSpace(body[1:])
	}
	return out, nil
}

func unquote(s string) (string, error) {
	inner := s[1 : len(s)-1]
	if s[0] == '\'' {
		return strings.ReplaceAll(inner, "''", "'"), nil
	}
	var b strings.Builder
	for i := 0; i < len(inner); i++ {
		c := inner[i]
		if c != '\\' {
			b.WriteByte(c)
			continue
		}
		i++
		if i >= len(inner) {
			return "", fmt.Errorf("bad escape in %s", s)
		}
		switch inner[i] {
		case '"', '\\', '/':
			b.WriteByte(inner[i])
		case 'n':
			b.WriteByte('\n')
		case 't':
			b.WriteByte('\t')
		default:
			return "", fmt.Errorf("unsupported escape \\%c in %s", inner[i], s)
		}
	}
	return b.String(), nil
}
