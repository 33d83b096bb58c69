package atomicfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func TestWrite(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		existing fs.FileMode // 0: no existing file
		perm     fs.FileMode
		want     fs.FileMode
	}{
		{"new file gets perm", 0, 0o600, 0o600},
		{"new file gets other perm", 0, 0o640, 0o640},
		{"tighter existing mode kept", 0o400, 0o600, 0o400},
		{"looser existing mode limited to perm", 0o644, 0o600, 0o600},
		{"existing mode kept within perm", 0o640, 0o644, 0o640},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			path := filepath.Join(dir, "f")
			if tt.existing != 0 {
				if err := os.WriteFile(path, []byte("old"), tt.existing); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(path, tt.existing); err != nil {
					t.Fatal(err)
				}
			}
			if err := Write(path, []byte("new"), tt.perm); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(path)
			if err != nil || string(b) != "new" {
				t.Fatalf("content %q, %v", b, err)
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if got := fi.Mode().Perm(); got != tt.want {
				t.Fatalf("mode %o, want %o", got, tt.want)
			}
			entries, _ := os.ReadDir(dir)
			if len(entries) != 1 {
				t.Fatalf("temporary file left: %v", entries)
			}
		})
	}
}

func TestWriteFailureLeavesTarget(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// A missing directory: no temporary file can be created.
	err := Write(filepath.Join(dir, "missing", "f"), []byte("x"), 0o600)
	if !errors.Is(err, ErrCreateTemp) || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("error %v, want ErrCreateTemp wrapping ErrNotExist", err)
	}
	// Renaming onto a directory fails; the directory and no temporary
	// file remain.
	target := filepath.Join(dir, "d")
	if err := os.Mkdir(target, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(target, "inner"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Write(target, []byte("x"), 0o600); err == nil {
		t.Fatal("replacing a non-empty directory succeeded")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || !entries[0].IsDir() {
		t.Fatalf("after failure: %v", entries)
	}
}
