// Package secretfile reads small secret files (the *_FILE settings, key
// files, token files): size-limited, trimmed, and with the read buffer
// wiped.
package secretfile

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/sealrelay/sealrelay/crypto"
)

// MaxSize is the largest secret file Read accepts, in bytes.
const MaxSize = 64 << 10

// Errors wrapped by Read; test them with errors.Is.
var (
	// ErrEmpty means the file holds only white space.
	ErrEmpty = errors.New("empty")
	// ErrTooLarge means the file is larger than MaxSize.
	ErrTooLarge = fmt.Errorf("larger than %d bytes", MaxSize)
)

// Read returns the content of the secret file at path without surrounding
// white space; the caller wipes it (crypto.Wipe) when done. Errors name
// the path, never the content: the os error, "<path> is larger than 65536
// bytes" (ErrTooLarge) or "<path> is empty" (ErrEmpty).
func Read(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	defer crypto.Wipe(b)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) > MaxSize {
		return nil, fmt.Errorf("%s is %w", path, ErrTooLarge)
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return nil, fmt.Errorf("%s is %w", path, ErrEmpty)
	}
	return []byte(t), nil
}
