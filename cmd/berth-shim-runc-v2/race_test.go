//go:build race

package main

// Under -race the shim binary is built with the race detector too; its
// reports reach the test through the log FIFO.
func init() { buildFlags = append(buildFlags, "-race") }
