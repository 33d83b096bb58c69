// Package settings is the one configuration style of sealrelay's binaries:
// a declarative table of settings, each a flag --name and an environment
// variable, a secret one also a file (--name-file, ENV_FILE); one Load that
// resolves and checks every setting and collects every problem; and the
// help listing rendered from the same table.
//
// Precedence: the command line (--name or --name-file) wins over the
// environment (ENV or ENV_FILE), which wins over the default. An empty
// variable counts as unset. Giving a value and a file at the same level is a
// problem, as is an unreadable or empty file. Values are trimmed of
// surrounding white space.
//
// No maintained library was taken: the approved dependencies hold none, and
// the common ones (spf13/viper, kelseyhightower/envconfig, alecthomas/kong,
// peterbourgon/ff) either lack *_FILE secrets with the both-given check or
// report the first problem only.
package settings

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sealrelay/sealrelay/crypto"
	"github.com/sealrelay/sealrelay/internal/secretfile"
)

// Setting is one configuration value: a flag --Name and, when Env is set,
// an environment variable Env. A Secret setting can also be read from a file
// named by --Name-file or Env_FILE.
type Setting struct {
	Name    string
	Env     string
	Default string
	// Secret settings can be read from files and are never quoted in
	// problems.
	Secret bool
	// Bool settings are switches: --Name alone means true.
	Bool bool
	// Aliases are further flag names for the same setting.
	Aliases []string
	// Arg is the value's placeholder in the help listing.
	Arg   string
	Usage string
	// Required settings must resolve to a non-empty value; Fix says how to
	// supply one.
	Required bool
	Fix      string
	// Check validates a resolved value (not called for an empty Required
	// value, which is reported as missing). Its error continues the
	// sentence "<where it came from> ...", e.g. "is not a whole number
	// from 1 to 64". Use Optional to accept the empty value.
	Check func(text string) error
	// Tags group settings for callers (e.g. the settings a second command
	// reads too).
	Tags []string
}

// HasTag reports whether s carries tag.
func (s *Setting) HasTag(tag string) bool { return slices.Contains(s.Tags, tag) }

// Names renders how s can be given, for problems:
// "ENV (or --name)", "ENV (or --name / --name-file / ENV_FILE)".
func (s *Setting) Names() string {
	switch {
	case s.Env == "" && s.Secret:
		return fmt.Sprintf("--%s (or --%s-file)", s.Name, s.Name)
	case s.Env == "":
		return "--" + s.Name
	case s.Secret:
		return fmt.Sprintf("%s (or --%s / --%s-file / %s_FILE)", s.Env, s.Name, s.Name, s.Env)
	}
	return fmt.Sprintf("%s (or --%s)", s.Env, s.Name)
}

// Describe names where v came from; the text itself is quoted unless s is
// a secret or v came from a file.
func (s *Setting) Describe(v Value) string {
	if s.Secret || v.fromFile {
		return v.Source
	}
	src := v.Source
	if src == SourceDefault {
		src = "default --" + s.Name
	}
	return fmt.Sprintf("%s=%q", src, v.Text)
}

// DescribeOrNames is Names for a default value, else Describe.
func (s *Setting) DescribeOrNames(v Value) string {
	if v.Source == SourceDefault {
		return s.Names()
	}
	return s.Describe(v)
}

// SourceDefault is the Source of a value that is the setting's default.
const SourceDefault = "default"

// Value is a resolved setting.
type Value struct {
	// Text is the value, trimmed.
	Text string
	// Source says where it came from: "--x", "--x-file /p", "ENV",
	// "ENV_FILE (/p)" or SourceDefault; "" when it could not be resolved
	// (the problem is reported).
	Source string
	// IsSet is false when the default was used.
	IsSet    bool
	fromFile bool
}

// Path returns the file a value was read from ("" when it was not).
func (v Value) Path() string {
	if !v.fromFile {
		return ""
	}
	if i := strings.Index(v.Source, " ("); i >= 0 && strings.HasSuffix(v.Source, ")") {
		return v.Source[i+2 : len(v.Source)-1]
	}
	_, p, _ := strings.Cut(v.Source, " ")
	return p
}

// Error is every configuration problem found, one message each.
type Error struct{ Problems []string }

func (e *Error) Error() string {
	if len(e.Problems) == 1 {
		return e.Problems[0]
	}
	return fmt.Sprintf("%d configuration problems:\n  - %s", len(e.Problems), strings.Join(e.Problems, "\n  - "))
}

// UsageError is a command-line mistake: an unknown flag, a bad switch or a
// stray argument.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

// flagValue is a setting's flag: text kept as given.
type flagValue struct {
	text   string
	isBool bool
}

func (f *flagValue) String() string {
	if f == nil {
		return ""
	}
	return f.text
}
func (f *flagValue) Set(s string) error {
	if f.isBool {
		if _, err := strconv.ParseBool(s); err != nil {
			return errors.New("want true or false")
		}
	}
	f.text = s
	return nil
}
func (f *flagValue) IsBoolFlag() bool { return f.isBool }

// Loader resolves a table of settings from a command line and an
// environment.
type Loader struct {
	name     string
	list     []*Setting
	byName   map[string]*Setting
	fs       *flag.FlagSet
	flags    map[string]*flagValue // by flag name, aliases and -file included
	given    map[string]bool       // setting flags given, by canonical flag name
	values   map[string]Value
	problems []string
}

// New returns a Loader for list whose flag set is named name. More flags
// that are not settings can be added to FlagSet before Parse.
func New(name string, list []*Setting) *Loader {
	l := &Loader{name: name, list: list, byName: map[string]*Setting{}, flags: map[string]*flagValue{},
		given: map[string]bool{}, values: map[string]Value{}}
	l.fs = flag.NewFlagSet(name, flag.ContinueOnError)
	l.fs.SetOutput(io.Discard)
	l.fs.Usage = func() {}
	for _, s := range list {
		if l.byName[s.Name] != nil {
			panic("settings: " + s.Name + " listed twice")
		}
		l.byName[s.Name] = s
		v := &flagValue{isBool: s.Bool}
		l.flags[s.Name] = v
		l.fs.Var(v, s.Name, s.Usage)
		for _, a := range s.Aliases {
			l.flags[a] = v
			l.fs.Var(v, a, "alias of --"+s.Name)
		}
		if s.Secret {
			fv := &flagValue{}
			l.flags[s.Name+"-file"] = fv
			l.fs.Var(fv, s.Name+"-file", "file holding the "+s.Name)
		}
	}
	return l
}

// Load is New followed by Parse.
func Load(name string, list []*Setting, args []string, getenv func(string) string) (*Loader, error) {
	l := New(name, list)
	if err := l.Parse(args, getenv); err != nil {
		return nil, err
	}
	return l, nil
}

// FlagSet is the loader's flag set.
func (l *Loader) FlagSet() *flag.FlagSet { return l.fs }

// Parse parses args (no positional argument allowed) and resolves every
// setting through getenv, checking each; the problems found are kept for
// Err. flag.ErrHelp is returned as is, other command-line mistakes as a
// *UsageError.
func (l *Loader) Parse(args []string, getenv func(string) string) error {
	if err := l.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &UsageError{fmt.Sprintf("%v (see --help)", err)}
	}
	if l.fs.NArg() > 0 {
		return &UsageError{fmt.Sprintf("unexpected argument %q (see --help)", l.fs.Arg(0))}
	}
	alias := map[string]string{}
	for _, s := range l.list {
		for _, a := range s.Aliases {
			alias[a] = s.Name
		}
	}
	l.fs.Visit(func(f *flag.Flag) {
		name := f.Name
		if c, ok := alias[name]; ok {
			name = c
		}
		l.given[name] = true
	})
	for _, s := range l.list {
		v := l.resolve(s, getenv)
		l.values[s.Name] = v
		switch {
		case v.Source == "":
		case s.Required && v.Text == "":
			if s.Fix != "" {
				l.Problem("%s is required: %s", s.Names(), s.Fix)
			} else {
				l.Problem("%s is required", s.Names())
			}
		case s.Check != nil:
			if err := s.Check(v.Text); err != nil {
				l.Problem("%s %v", s.Describe(v), err)
			}
		}
	}
	return nil
}

// resolve finds the value of s: flag, then environment, then default.
func (l *Loader) resolve(s *Setting, getenv func(string) string) Value {
	flagSet, fileSet := l.given[s.Name], l.given[s.Name+"-file"]
	switch {
	case flagSet && fileSet:
		l.Problem("--%s and --%s-file are both given: keep one", s.Name, s.Name)
		return Value{}
	case flagSet:
		return Value{Text: strings.TrimSpace(l.flags[s.Name].text), Source: "--" + s.Name, IsSet: true}
	case fileSet:
		p := l.flags[s.Name+"-file"].text
		return l.fromFile(s, p, fmt.Sprintf("--%s-file %s", s.Name, p))
	}
	if s.Env == "" {
		return Value{Text: s.Default, Source: SourceDefault}
	}
	envVal, envFile := getenv(s.Env), ""
	if s.Secret {
		envFile = getenv(s.Env + "_FILE")
	}
	switch {
	case envVal != "" && envFile != "":
		l.Problem("%s and %s_FILE are both set: keep one", s.Env, s.Env)
		return Value{}
	case envVal != "":
		return Value{Text: strings.TrimSpace(envVal), Source: s.Env, IsSet: true}
	case envFile != "":
		return l.fromFile(s, envFile, fmt.Sprintf("%s_FILE (%s)", s.Env, envFile))
	}
	return Value{Text: s.Default, Source: SourceDefault}
}

func (l *Loader) fromFile(s *Setting, path, source string) Value {
	text, err := ReadSecretFile(path)
	if err != nil {
		l.Problem("%s: cannot read the %s file: %v", source, s.Name, err)
		return Value{}
	}
	if text == "" {
		l.Problem("%s: the file is empty: put the %s in it", source, s.Name)
		return Value{}
	}
	return Value{Text: text, Source: source, IsSet: true, fromFile: true}
}

// Setting returns the setting called name; it panics for a name not in the
// table (a programming error).
func (l *Loader) Setting(name string) *Setting {
	s := l.byName[name]
	if s == nil {
		panic("settings: unknown setting " + name)
	}
	return s
}

// Get returns the setting called name and its resolved value.
func (l *Loader) Get(name string) (*Setting, Value) {
	s := l.Setting(name)
	return s, l.values[name]
}

// Text returns the resolved text of the setting called name.
func (l *Loader) Text(name string) string {
	_, v := l.Get(name)
	return v.Text
}

// Given reports whether the flag called name (a setting's --name or
// --name-file) was given on the command line.
func (l *Loader) Given(flagName string) bool { return l.given[flagName] }

// Int returns the setting as an int (0 when it is not one: give it a
// Check such as IntRange).
func (l *Loader) Int(name string) int {
	n, _ := strconv.Atoi(l.Text(name))
	return n
}

// Float returns the setting as a float64 (0 when it is not one).
func (l *Loader) Float(name string) float64 {
	f, _ := strconv.ParseFloat(l.Text(name), 64)
	return f
}

// Duration returns the setting as a duration, days ("90d") allowed (0 when
// it is not one: give it a Check such as DurationRange).
func (l *Loader) Duration(name string) time.Duration {
	d, _ := ParseDays(l.Text(name))
	return d
}

// Bool returns the setting as a bool (false when empty or not one).
func (l *Loader) Bool(name string) bool {
	b, _ := strconv.ParseBool(l.Text(name))
	return b
}

// Problem records one configuration problem.
func (l *Loader) Problem(format string, args ...any) {
	l.problems = append(l.problems, fmt.Sprintf(format, args...))
}

// Problems returns how many problems were recorded so far.
func (l *Loader) Problems() int { return len(l.problems) }

// Err returns every recorded problem as one *Error, or nil.
func (l *Loader) Err() error {
	if len(l.problems) == 0 {
		return nil
	}
	return &Error{Problems: slices.Clone(l.problems)}
}

// ReadSecretFile reads a secret file, trimming surrounding white space
// (internal/secretfile); an empty file is "" without error, for the caller
// to explain.
func ReadSecretFile(path string) (string, error) {
	b, err := secretfile.Read(path)
	if errors.Is(err, secretfile.ErrEmpty) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	defer crypto.Wipe(b)
	return string(b), nil
}

// ParseDays parses a Go duration, also accepting a whole number of days
// ("90d").
func ParseDays(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n < 0 || n > 100000 {
			return 0, fmt.Errorf("bad number of days %q", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	return time.ParseDuration(s)
}
