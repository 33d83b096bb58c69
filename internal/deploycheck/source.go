package deploycheck

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// envVarPattern matches a whole string literal naming a sealrelay variable.
var envVarPattern = regexp.MustCompile(`^SEALRELAY_[A-Z0-9_]+$`)

// flagFuncs are the flag.FlagSet methods that define a flag, mapped to the
// index of the argument holding the flag's name.
var flagFuncs = map[string]int{
	"String": 0, "Bool": 0, "Int": 0, "Int64": 0, "Uint": 0, "Uint64": 0,
	"Float64": 0, "Duration": 0, "Func": 0, "BoolFunc": 0,
	"StringVar": 1, "BoolVar": 1, "IntVar": 1, "Int64Var": 1, "UintVar": 1,
	"Uint64Var": 1, "Float64Var": 1, "DurationVar": 1, "TextVar": 1, "Var": 1,
}

// sourceConfig is what the Go sources of a command define: the SEALRELAY_*
// variables they name in string literals and the flags they register.
type sourceConfig struct {
	EnvVars map[string]bool
	Flags   map[string]bool
}

// readSourceConfig scans the non-test Go files of dirs (relative to the
// repository root) for SEALRELAY_* string literals, flag definitions and
// settings tables ([]settings.Setting literals: --name, its aliases and
// --name-file, ENV and ENV_FILE).
func readSourceConfig(root string, dirs ...string) (*sourceConfig, error) {
	sc := &sourceConfig{EnvVars: map[string]bool{}, Flags: map[string]bool{}}
	fset := token.NewFileSet()
	files := 0
	for _, d := range dirs {
		matches, err := filepath.Glob(filepath.Join(root, d, "*.go"))
		if err != nil {
			return nil, err
		}
		for _, path := range matches {
			if strings.HasSuffix(path, "_test.go") {
				continue
			}
			src, err := os.ReadFile(path)
			if err != nil {
				return nil, err
			}
			f, err := parser.ParseFile(fset, path, src, parser.SkipObjectResolution)
			if err != nil {
				return nil, fmt.Errorf("parse %s: %w", path, err)
			}
			files++
			ast.Inspect(f, func(n ast.Node) bool {
				switch n := n.(type) {
				case *ast.BasicLit:
					if s, ok := stringLit(n); ok && envVarPattern.MatchString(s) {
						sc.EnvVars[s] = true
					}
				case *ast.CompositeLit:
					if !isSettingsTable(n.Type) {
						return true
					}
					for _, elt := range n.Elts {
						st, err := readSettingElement(path, elt)
						if err != nil {
							continue // readBrokerSettings reports malformed tables
						}
						sc.Flags[st.Name] = true
						for _, a := range st.Aliases {
							sc.Flags[a] = true
						}
						if st.Secret {
							sc.Flags[st.Name+"-file"] = true
						}
						if st.Env != "" && envVarPattern.MatchString(st.Env) {
							sc.EnvVars[st.Env] = true
							if st.Secret {
								sc.EnvVars[st.Env+"_FILE"] = true
							}
						}
					}
				case *ast.CallExpr:
					sel, ok := n.Fun.(*ast.SelectorExpr)
					if !ok {
						return true
					}
					idx, ok := flagFuncs[sel.Sel.Name]
					if !ok || len(n.Args) <= idx {
						return true
					}
					if lit, ok := n.Args[idx].(*ast.BasicLit); ok {
						if s, ok := stringLit(lit); ok && s != "" {
							sc.Flags[s] = true
						}
					}
				}
				return true
			})
		}
	}
	if files == 0 {
		return nil, fmt.Errorf("no Go files in %v under %s", dirs, root)
	}
	return sc, nil
}

func stringLit(l *ast.BasicLit) (string, bool) {
	if l.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(l.Value)
	return s, err == nil
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// brokerSetting is one entry of a command's settings table.
type brokerSetting struct {
	Name, Env string
	Secret    bool
	Aliases   []string
}

// isSettingsTable reports whether the type of a composite literal is
// []settings.Setting (internal/settings).
func isSettingsTable(t ast.Expr) bool {
	at, ok := t.(*ast.ArrayType)
	if !ok || at.Len != nil {
		return false
	}
	sel, ok := at.Elt.(*ast.SelectorExpr)
	if !ok || sel.Sel.Name != "Setting" {
		return false
	}
	pkg, ok := sel.X.(*ast.Ident)
	return ok && pkg.Name == "settings"
}

// readBrokerSettings reads the settings tables (composite literals of type
// []settings.Setting, internal/settings) from the sources in dir, taking the
// Name, Env and Secret fields of each element. Every setting is a flag
// --Name and (when Env is set) a variable Env; a Secret one also --Name-file
// and Env_FILE.
func readBrokerSettings(root, dir string) ([]brokerSetting, error) {
	matches, err := filepath.Glob(filepath.Join(root, dir, "*.go"))
	if err != nil {
		return nil, err
	}
	fset := token.NewFileSet()
	var out []brokerSetting
	found := false
	for _, path := range matches {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", path, err)
		}
		var perr error
		ast.Inspect(f, func(n ast.Node) bool {
			cl, ok := n.(*ast.CompositeLit)
			if !ok || perr != nil || !isSettingsTable(cl.Type) {
				return perr == nil
			}
			found = true
			for _, elt := range cl.Elts {
				s, err := readSettingElement(path, elt)
				if err != nil {
					perr = err
					return false
				}
				out = append(out, s)
			}
			return false
		})
		if perr != nil {
			return nil, perr
		}
	}
	if !found {
		return nil, fmt.Errorf("no []settings.Setting{...} table in %s", filepath.Join(root, dir))
	}
	return out, nil
}

// readSettingElement reads one element of a settings table.
func readSettingElement(path string, elt ast.Expr) (brokerSetting, error) {
	var s brokerSetting
	el, ok := elt.(*ast.CompositeLit)
	if !ok {
		return s, fmt.Errorf("%s: a settings element is not a composite literal", path)
	}
	for _, kv := range el.Elts {
		kv, ok := kv.(*ast.KeyValueExpr)
		if !ok {
			return s, fmt.Errorf("%s: settings elements must use field names", path)
		}
		key, _ := kv.Key.(*ast.Ident)
		if key == nil {
			continue
		}
		switch key.Name {
		case "Name", "Env":
			lit, ok := kv.Value.(*ast.BasicLit)
			str, ok2 := "", false
			if ok {
				str, ok2 = stringLit(lit)
			}
			if !ok2 {
				return s, fmt.Errorf("%s: setting %s must be a string literal", path, key.Name)
			}
			if key.Name == "Name" {
				s.Name = str
			} else {
				s.Env = str
			}
		case "Secret":
			id, ok := kv.Value.(*ast.Ident)
			s.Secret = ok && id.Name == "true"
		case "Aliases":
			if cl, ok := kv.Value.(*ast.CompositeLit); ok {
				for _, e := range cl.Elts {
					if lit, ok := e.(*ast.BasicLit); ok {
						if a, ok := stringLit(lit); ok {
							s.Aliases = append(s.Aliases, a)
						}
					}
				}
			}
		}
	}
	if s.Name == "" {
		return s, fmt.Errorf("%s: a setting lacks Name", path)
	}
	return s, nil
}

// brokerEnvVars returns every variable the broker's settings table defines,
// with the _FILE variants of secrets.
func brokerEnvVars(settings []brokerSetting) map[string]bool {
	out := map[string]bool{}
	for _, s := range settings {
		if s.Env == "" {
			continue
		}
		out[s.Env] = true
		if s.Secret {
			out[s.Env+"_FILE"] = true
		}
	}
	return out
}
