package secretfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRead(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		content *string // nil: no file
		want    string
		wantErr error
	}{
		{"trimmed", ptr("  s3cret\n"), "s3cret", nil},
		{"inner space kept", ptr("a b\tc\n"), "a b\tc", nil},
		{"exactly MaxSize", ptr(strings.Repeat("k", MaxSize)), strings.Repeat("k", MaxSize), nil},
		{"too large", ptr(strings.Repeat("k", MaxSize+1)), "", ErrTooLarge},
		{"empty", ptr(""), "", ErrEmpty},
		{"white space only", ptr(" \n\t\n"), "", ErrEmpty},
		{"missing", nil, "", fs.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "secret")
			if tt.content != nil {
				if err := os.WriteFile(path, []byte(*tt.content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			got, err := Read(path)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("error %v, want %v", err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), path) {
					t.Fatalf("error %q does not name the file", err)
				}
				if strings.Contains(err.Error(), "kkkk") {
					t.Fatal("error carries the content")
				}
				return
			}
			if err != nil || string(got) != tt.want {
				t.Fatalf("Read = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func ptr(s string) *string { return &s }
