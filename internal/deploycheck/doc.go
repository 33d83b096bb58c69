// Package deploycheck keeps the deployment files (compose.yaml, Dockerfile)
// and the configuration reference in docs/ in step with the code. It has no
// API of its own: its tests read ../../compose.yaml, ../../Dockerfile and
// ../../docs/operations.md and compare them with the variables and flags the
// broker and bridge sources define. YAML is read with go.yaml.in/yaml/v3.
package deploycheck
