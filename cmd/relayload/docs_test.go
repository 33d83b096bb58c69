package main

import (
	"flag"
	"io"
	"os"
	"strings"
	"testing"
)

// TestOperationsDocCoversFlags keeps the relayload flag table in
// docs/operations.md ("Sizing a deployment") complete.
func TestOperationsDocCoversFlags(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), "## Sizing a deployment") {
		t.Fatal(`docs/operations.md has no "Sizing a deployment" section`)
	}
	var o options
	var sse string
	n := 0
	newFlagSet(&o, &sse, io.Discard).VisitAll(func(f *flag.Flag) {
		n++
		if !strings.Contains(string(doc), "`--"+f.Name+"`") {
			t.Errorf("docs/operations.md does not document relayload flag --%s", f.Name)
		}
	})
	if n == 0 {
		t.Fatal("no flags defined")
	}
}
