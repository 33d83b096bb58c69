package settings

import (
	"fmt"
	"io"
	"strings"
)

// Help writes the listing of list: for each setting its flags, its
// variables, whether it is required or its default, and its usage text.
func Help(w io.Writer, list []*Setting) {
	for _, s := range list {
		line := "  --" + s.Name
		if !s.Bool {
			line += " " + s.Arg
		}
		for _, a := range s.Aliases {
			line += ", --" + a
		}
		var env []string
		if s.Env != "" {
			env = append(env, "env "+s.Env)
		}
		if s.Secret {
			line += fmt.Sprintf(", --%s-file FILE", s.Name)
			if s.Env != "" {
				env[0] += ", " + s.Env + "_FILE"
			}
		}
		switch {
		case s.Required:
			env = append(env, "required")
		case s.Default != "":
			env = append(env, fmt.Sprintf("default %q", s.Default))
		}
		fmt.Fprintln(w, line)
		if len(env) > 0 {
			fmt.Fprintf(w, "        %s\n", strings.Join(env, "; "))
		}
		for _, l := range wrapText(s.Usage, 70) {
			fmt.Fprintf(w, "        %s\n", l)
		}
	}
}

// wrapText splits text into lines of at most width bytes at spaces.
func wrapText(text string, width int) []string {
	var lines []string
	cur := ""
	for _, word := range strings.Fields(text) {
		if cur != "" && len(cur)+1+len(word) > width {
			lines = append(lines, cur)
			cur = ""
		}
		if cur != "" {
			cur += " "
		}
		cur += word
	}
	if cur != "" {
		lines = append(lines, cur)
	}
	return lines
}

// EnvVars returns every environment variable list reads, the _FILE
// variants of secrets included, in table order.
func EnvVars(list []*Setting) []string {
	var out []string
	for _, s := range list {
		if s.Env == "" {
			continue
		}
		out = append(out, s.Env)
		if s.Secret {
			out = append(out, s.Env+"_FILE")
		}
	}
	return out
}

// Pointers returns pointers to the elements of table, in order (tables are
// declared as []Setting literals).
func Pointers(table []Setting) []*Setting {
	out := make([]*Setting, len(table))
	for i := range table {
		out[i] = &table[i]
	}
	return out
}
