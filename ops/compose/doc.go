// Package compose holds what compose.yaml mounts into its NATS servers
// (nats-cluster.conf) and the test that loads compose.yaml as current
// Compose does. Bringing the stack up for real is make compose-test
// (ops/compose-test.sh). It has no Go code of its own.
package compose
