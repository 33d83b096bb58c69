//go:build !unix

package main

// lockDir is a no-op where flock is not available; do not run two
// `broker keys rotate` at once there.
func lockDir(string) (func(), error) { return func() {}, nil }
