package deploycheck

import (
	"errors"
	"fmt"
	"reflect"
	"testing"

	"go.yaml.in/yaml/v3"
)

// errYAML is wrapped by every parseYAML error.
var errYAML = errors.New("yaml")

// parseYAML reads a YAML document with go.yaml.in/yaml/v3 into
// map[string]any, []any and string values: every scalar is kept as the text
// it was written as (compose treats "1" and 1 alike; the checks compare
// text), a null is "", aliases are resolved, and a duplicate mapping key is
// an error.
func parseYAML(src string) (any, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		return nil, fmt.Errorf("%w: %v", errYAML, err)
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return map[string]any{}, nil
	}
	return yamlValue(doc.Content[0])
}

func yamlValue(n *yaml.Node) (any, error) {
	switch n.Kind {
	case yaml.AliasNode:
		return yamlValue(n.Alias)
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "", nil
		}
		return n.Value, nil
	case yaml.SequenceNode:
		out := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			v, err := yamlValue(c)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	case yaml.MappingNode:
		out := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if k.Kind != yaml.ScalarNode {
				return nil, fmt.Errorf("%w: line %d: mapping key is not a scalar", errYAML, k.Line)
			}
			if _, dup := out[k.Value]; dup {
				return nil, fmt.Errorf("%w: line %d: duplicate key %q", errYAML, k.Line, k.Value)
			}
			v, err := yamlValue(n.Content[i+1])
			if err != nil {
				return nil, err
			}
			out[k.Value] = v
		}
		return out, nil
	default:
		return nil, fmt.Errorf("%w: line %d: unsupported node kind %v", errYAML, n.Line, n.Kind)
	}
}

func TestParseYAML(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		src     string
		want    any
		wantErr bool
	}{
		{name: "empty", src: "# only a comment\n\n", want: map[string]any{}},
		{
			name: "nested mapping, comments, scalars kept as text",
			src:  "a: 1 # one\nb:\n  c: \"x # not a comment\"\n  d: 'it''s'\n  e: true\n",
			want: map[string]any{"a": "1", "b": map[string]any{"c": "x # not a comment", "d": "it's", "e": "true"}},
		},
		{
			name: "sequences",
			src:  "s:\n  - a\n  - \"b:c\"\n  - k: v\n    k2: v2\nf: [\"CMD\", redis-cli, 'ping', \"\"]\n",
			want: map[string]any{
				"s": []any{"a", "b:c", map[string]any{"k": "v", "k2": "v2"}},
				"f": []any{"CMD", "redis-cli", "ping", ""},
			},
		},
		{
			name: "null values and plain scalars with colons",
			src:  "v:\n  x:\n  y: redis://redis:6379/0\n  z: \"127.0.0.1:8080:8080\"\n",
			want: map[string]any{"v": map[string]any{"x": "", "y": "redis://redis:6379/0", "z": "127.0.0.1:8080:8080"}},
		},
		{name: "alias resolved", src: "a: &x 1\nb: *x\n", want: map[string]any{"a": "1", "b": "1"}},
		{name: "top-level sequence", src: "- a\n- b\n", want: []any{"a", "b"}},
		{name: "duplicate key", src: "a: 1\na: 2\n", wantErr: true},
		{name: "tab indentation", src: "a:\n\tb: 1\n", wantErr: true},
		{name: "unterminated quote", src: "a: \"x\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseYAML(tt.src)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("parseYAML accepted %q as %#v", tt.src, got)
				}
				if !errors.Is(err, errYAML) {
					t.Fatalf("error %v does not wrap errYAML", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseYAML: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %#v\nwant %#v", got, tt.want)
			}
		})
	}
}
