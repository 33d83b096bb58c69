// Package brokerint holds the bridge's integration tests against the real
// broker package (on the local Redis, with the fake Slack). It has no
// non-test code; it is a separate package so that the bridge's own tests do
// not depend on the broker building.
package brokerint
